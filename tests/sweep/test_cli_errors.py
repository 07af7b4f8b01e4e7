"""`pocketquant sweep` refuses what workers could not run, before starting anything: one line
naming the problem (and the command that fixes it), exit status 2, no Ray, no record."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from pipeline.dvcrepo import VENV_BIN, git, run

from pocketquant.testing.sweep_lab import Team

pytest.importorskip("dvc")


def sweep(team: Team, *args: str) -> tuple[int, str]:
    # The console script, as a user runs it (`python -m` in the clone would import the clone's copy).
    r = run(team.driver, str(VENV_BIN / "pocketquant"), "sweep", *args, check=False, timeout=300)
    return r.returncode, r.out


def started(team: Team) -> bool:
    return (team.driver / ".dvc" / "tmp" / "sweeps").exists()


def test_unknown_option_lists_the_choices(team: Team) -> None:
    code, out = sweep(team, "-S", "quant=q4_k_m,bogus", "-S", "eval=smoke")
    assert code == 2, out
    assert "pocketquant: error:" in out and "Could not find 'quant/bogus'" in out and "q8_0" in out
    assert "Traceback" not in out and not started(team)


def test_uncommitted_changes_are_refused(team: Team) -> None:
    params = team.driver / "params.yaml"
    original = params.read_text(encoding="utf-8")
    params.write_text(original.replace("chunks: 4", "chunks: 5"), encoding="utf-8")
    try:
        code, out = sweep(team, "-S", "quant=q8_0")
    finally:
        params.write_text(original, encoding="utf-8")
    assert code == 2, out
    assert "uncommitted changes (params.yaml)" in out and "commit and push" in out
    assert not started(team)


def test_a_commit_the_git_remote_lacks_is_refused_with_the_push_command(team: Team) -> None:
    git(team.driver, "commit", "--quiet", "--allow-empty", "-m", "not pushed")
    try:
        code, out = sweep(team, "-S", "quant=q8_0")
    finally:
        git(team.driver, "reset", "--quiet", "--hard", "HEAD~1")
    assert code == 2, out
    assert "is not on git remote 'origin'" in out and "git push origin" in out
    assert not started(team)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--git-remote", "nowhere"], "no git remote 'nowhere'"),
        (["--dvc-remote", "nowhere"], "no DVC remote 'nowhere' (configured: local)"),
        (["--name", "bad name"], "--name 'bad name'"),
        (["--retries", "-1"], "retries must be >= 0"),
    ],
)
def test_bad_settings_exit_2(team: Team, args: list[str], message: str) -> None:
    code, out = sweep(team, "-S", "quant=q8_0", *args)
    assert code == 2 and message in out, out
    assert not started(team)


def test_an_address_where_no_cluster_listens_fails_fast(team: Team) -> None:
    with socket.socket() as s:  # a port nothing listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    code, out = sweep(team, "--address", f"127.0.0.1:{port}", "-S", "quant=q8_0", "--name", "nowhere")
    assert code == 2 and f"nothing answers at Ray address 127.0.0.1:{port}" in out, out
    assert time.monotonic() - t0 < 60
    assert (team.driver / ".dvc" / "tmp" / "sweeps" / "nowhere" / "record.json").exists()


def test_a_settings_file_that_is_not_yaml_names_itself(team: Team, tmp_path: Path) -> None:
    bad = tmp_path / "sweep.yaml"
    bad.write_text("retries: [1\n", encoding="utf-8")
    code, out = sweep(team, "--config", str(bad), "-S", "quant=q8_0")
    assert code == 2 and str(bad) in out, out
