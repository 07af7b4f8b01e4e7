"""Walk THE TABLE (hostile_table.py) through the commands: every row ends with its exit status,
one error line matching what it says (no traceback), and nothing left behind."""

from __future__ import annotations

import re

import pytest
from hostile_sandbox import snapshot
from hostile_table import TABLE, Row


@pytest.mark.parametrize("row", TABLE, ids=[r.id for r in TABLE])
def test_hostile_input(row: Row, sandbox, request):
    if row.xfail:
        request.applymarker(pytest.mark.xfail(reason=row.xfail, strict=True))
    argv = row.make(sandbox)
    before = snapshot(sandbox.root)
    result = sandbox.run(argv, subprocess_run=row.subprocess)
    shown = f"status {result.status}\nstdout: {result.out[-2000:]}\nstderr: {result.err[-3000:]}"

    assert "Traceback" not in result.err, shown
    assert result.status == row.status, shown
    if row.status == 2:
        assert len(result.error_lines) == 1, shown
        line = result.error_lines[0]
        for pattern in row.says:
            assert re.search(pattern, line), f"{pattern!r} not in {line!r}"
    else:
        for pattern in row.says:
            assert re.search(pattern, result.out), f"{pattern!r} not in stdout\n{shown}"

    after = snapshot(sandbox.root)
    created = sorted(set(after) - set(before) - set(row.outputs))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k] and k not in row.outputs)
    gone = sorted(set(before) - set(after))
    if row.id == "quantize-stale-temp-swept":
        assert len(gone) == 1 and ".pocketquant-" in gone[0], gone  # the dead run's temp only
        gone = []
    assert (created, changed, gone) == ([], [], []), "left behind / changed / removed"


def test_every_command_and_stage_has_rows():
    """The table covers every CLI command and every stage script that runs through common.run."""
    from hostile_sandbox import STAGES

    from pocketquant.cli import COMMAND_MODULES

    commands = {m.rsplit(".", 1)[1] for m in COMMAND_MODULES}
    stages = {p.stem for p in STAGES.glob("*.py") if "run(" in p.read_text() and p.stem != "common"}
    covered = {r.id.split("-")[0] for r in TABLE}
    covered |= {r.id.split("-")[1] for r in TABLE if r.id.startswith("stage-")}
    assert commands <= covered, commands - covered
    assert stages <= covered, stages - covered


def test_readme_guarantees_are_backed_by_rows(repo_root):
    """Every bullet of README's bad-input list names table rows (or test files) that back it,
    every named row group exists and passes today, and every row backs some bullet."""
    text = (repo_root / "README.md").read_text(encoding="utf-8")
    section = text.split("### Bad input", 1)[1].split("\n## ", 1)[0]
    bullets = [b for b in section.split("\n- ")[1:]]
    assert len(bullets) >= 6
    named: set[str] = set()
    for bullet in bullets:
        tags = re.findall(r"<!-- table: ([^>]*?) -->", bullet)
        assert tags, f"README bullet without table rows: {bullet[:80]!r}"
        named |= {t for group in tags for t in group.split()}
        for test_file in re.findall(r"<!-- test: ([^ >]+) -->", bullet):
            assert (repo_root / "tests" / "hostile" / test_file).is_file(), test_file
    passing = {r.readme for r in TABLE if not r.xfail}
    assert named <= passing, f"README names rows that do not exist or await the converter: {named - passing}"
    assert passing - {"converter"} <= named, f"rows backing no README line: {passing - named}"


def test_debug_shows_the_traceback(sandbox):
    """--debug (before or after the command name) or POCKETQUANT_DEBUG=1 adds the traceback; the
    status and the error line stay the same."""
    from hostile_table import path, quantize

    argv = quantize(path("nope.gguf"))(sandbox)
    plain = sandbox.run(argv)
    before = sandbox.run(["--debug", *argv])
    after = sandbox.run([*argv, "--debug"])
    sandbox.monkeypatch.setenv("POCKETQUANT_DEBUG", "1")
    env = sandbox.run(argv)
    assert "Traceback" not in plain.err
    for r in (plain, before, after, env):
        assert r.status == 2 and r.error_lines == plain.error_lines, r.err
    for r in (before, after, env):
        assert "Traceback (most recent call last)" in r.err and "GGUFFormatError" in r.err
