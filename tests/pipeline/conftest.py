"""Fixtures of the pipeline tests: the committed eval=smoke baseline run that test_pipeline.py and
test_reproducible.py share (one full `dvc repro` for both), and a real OpenSSH server on 127.0.0.1
for the SSH remote test."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .dvcrepo import REPO, Result, clone, compose_params, dvc, git

SSHD = Path("/usr/sbin/sshd")


@dataclass
class Baseline:
    root: Path
    repo: Path  # a clone of this checkout that ran `dvc repro` (eval=smoke) and committed the results
    cache: Path  # its DVC cache
    remote: Path  # its default (local directory) remote, empty until a test pushes
    trace: Path  # params keys each stage script read in that run (pocketquant.params_trace)
    run: Result  # that `dvc repro`
    tag: str = "baseline"  # the commit with dvc.lock, metrics and reports of the run


@pytest.fixture(scope="session")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    """What a user (or the lead) does: clone, `dvc repro`, commit dvc.lock and the results."""
    root = tmp_path_factory.mktemp("pipeline")
    repo = clone(REPO, root / "repo", root / "cache", root / "remote")
    # Tests evaluate with eval=smoke: make it the clone's default so that `dvc repro` and every
    # `dvc exp run` composition (which starts from conf/) agree on it.
    config = repo / "conf" / "config.yaml"
    text = config.read_text(encoding="utf-8")
    assert "  - eval: default\n" in text
    config.write_text(text.replace("  - eval: default\n", "  - eval: smoke\n"), encoding="utf-8")
    compose_params(repo)
    git(repo, "commit", "--quiet", "-am", "tests: evaluate with eval=smoke")
    trace = root / "params-trace"
    run = dvc(repo, "repro", timeout=1500, POCKETQUANT_PARAMS_TRACE=str(trace))
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "baseline: q4_k_m")
    git(repo, "tag", "baseline")
    return Baseline(root, repo, root / "cache", root / "remote", trace, run)


@dataclass
class SSHServer:
    port: int
    user: str
    client_key: Path
    home: Path  # a HOME whose .ssh/known_hosts trusts this server's host key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """/usr/sbin/sshd -D on a free port: key authentication only, host and user keys made here."""
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server not installed (scripts/setup.sh installs openssh-server)")
    d = tmp_path_factory.mktemp("sshd")
    keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
    subprocess.run([*keygen, "-f", str(d / "host_key")], check=True)
    subprocess.run([*keygen, "-f", str(d / "client_key")], check=True)
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPubkeyAuthentication yes\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        "UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    home = d / "home"
    (home / ".ssh").mkdir(parents=True)
    host_pub = (d / "host_key.pub").read_text().split()
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    log = open(d / "sshd.log", "wb")  # noqa: SIM115 - kept open for the server's lifetime
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {(d / 'sshd.log').read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("sshd did not start listening")
                time.sleep(0.2)
        yield SSHServer(port=port, user=getpass.getuser(), client_key=d / "client_key", home=home)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
