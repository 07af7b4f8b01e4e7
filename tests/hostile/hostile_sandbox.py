"""The sandbox a hostile-input case runs in: a fresh directory with copies of the pristine inputs,
helpers for the environments that fail (a full disk, a read-only directory, a FIFO), a runner for
the CLI and the stage scripts, and a snapshot of every file so a test sees anything left behind."""

from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
STAGES = REPO / "stages"


@dataclass
class Result:
    status: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        """Lines `pocketquant: error: ...`, `pocketquant CMD: error: ...` (argparse) or `stage X: error:`."""
        pattern = r"(pocketquant( \w+)?|stage \w+): error: "
        return [line for line in self.err.splitlines() if re.match(pattern, line)]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its kind, size, mode and mtime (what a leftover would change)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            kind = "dir" if p.is_dir() and not p.is_symlink() else "link" if p.is_symlink() else "file"
            size = st.st_size if kind == "file" else 0
            out[str(p.relative_to(root))] = (kind, size, st.st_mode, st.st_mtime_ns if kind == "file" else 0)
    return out


class Sandbox:
    def __init__(self, root: Path, pristine: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
        self.root = root
        self.root.mkdir()
        self.pristine = pristine
        self.monkeypatch = monkeypatch
        self.capsys = capsys
        self.mounts: list[Path] = []
        # verify's work directory and any other temp file of ours lands here, where it is watched
        self.tmp = root / "tmp"
        self.tmp.mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(self.tmp))
        monkeypatch.setenv("TMPDIR", str(self.tmp))

    # -- inputs ------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.root / name

    def gguf(self, name: str = "in.gguf") -> Path:
        dst = self.root / name
        shutil.copyfile(self.pristine.gguf, dst)
        return dst

    def package(self, name: str = "pkg.zip") -> Path:
        dst = self.root / name
        shutil.copyfile(self.pristine.package, dst)
        return dst

    def hf(self, name: str = "hf") -> Path:
        dst = self.root / name
        shutil.copytree(self.pristine.hf, dst)
        return dst

    def write(self, name: str, data: bytes | str) -> Path:
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        return p

    def fifo(self, name: str) -> Path:
        p = self.root / name
        os.mkfifo(p)
        return p

    def params(self, **groups: Any) -> Path:
        """params.yaml in the sandbox (the stage scripts read it from the working directory)."""
        with open(REPO / "params.yaml", encoding="utf-8") as f:
            params = yaml.safe_load(f)
        for k, v in groups.items():
            if v is ...:
                params.pop(k, None)
            else:
                params[k] = {**params.get(k, {}), **v} if isinstance(v, dict) else v
        return self.write("params.yaml", yaml.safe_dump(params))

    # -- environments that fail --------------------------------------------------------------
    def _mount(self, name: str, options: str) -> Path:
        p = self.root / name
        p.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(p)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip() or 'not root'})")
        self.mounts.append(p)
        return p

    def full_disk(self, name: str = "full") -> Path:
        """A directory on a 64 KiB file system: every output of these tests is larger."""
        return self._mount(name, "size=64k")

    def readonly_dir(self, name: str = "ro") -> Path:
        """A directory nobody can write in (a read-only mount: root ignores permission bits)."""
        if os.geteuid() != 0:
            p = self.root / name
            p.mkdir()
            p.chmod(0o555)
            return p
        return self._mount(name, "ro,size=64k")

    def unmount_all(self) -> None:
        for p in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(p)], check=False)
        self.mounts.clear()
        for p in self.root.rglob("*"):
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)

    # -- running -----------------------------------------------------------------------------
    def run(self, argv: list[str], *, subprocess_run: bool = False, timeout: float = 120) -> Result:
        """`pocketquant ARGV` (or `python stages/X.py ...` when argv[0] is a stage script), in the
        sandbox as working directory."""
        self.monkeypatch.chdir(self.root)
        argv = [str(a) for a in argv]
        stage = argv[0].startswith("stages/")
        if subprocess_run:
            cmd = [sys.executable, str(REPO / argv[0]), *argv[1:]] if stage else [
                sys.executable, "-m", "pocketquant.cli", *argv
            ]  # fmt: skip
            env = {**os.environ, "TMPDIR": str(self.tmp), "PYTHONPATH": str(REPO)}
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root, env=env)
            return Result(p.returncode, p.stdout, p.stderr)
        self.capsys.readouterr()
        if stage:
            status = self._run_stage(argv)
        else:
            from pocketquant.cli import main

            try:
                status = main(argv)
            except SystemExit as exc:  # argparse's usage errors: status 2 and one error line too
                status = exc.code if isinstance(exc.code, int) else 1
        out, err = self.capsys.readouterr()
        return Result(status, out, err)

    def _run_stage(self, argv: list[str]) -> int:
        self.monkeypatch.syspath_prepend(str(STAGES))
        self.monkeypatch.setattr(sys, "argv", [str(REPO / argv[0]), *argv[1:]])
        try:
            runpy.run_path(str(REPO / argv[0]), run_name="__main__")
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
        return 0
