"""Drive real `dvc` and `git` in a temporary clone of this repository (helpers for the pipeline tests)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from pocketquant.testing.sweep_lab import tool_env

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
STAGES = tuple(yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"])


@dataclass
class Result:
    args: list[str]
    returncode: int
    out: str  # stdout and stderr together
    seconds: float

    @property
    def ran(self) -> set[str]:
        """Stages whose command ran (not skipped as unchanged, not restored from the run-cache)."""
        return set(re.findall(r"Running stage '([\w@.-]+)'", self.out))

    def check(self) -> Result:
        assert self.returncode == 0, f"{' '.join(self.args)} failed ({self.returncode}):\n{self.out[-6000:]}"
        return self


def run(cwd: Path, *args: str, timeout: float = 900, check: bool = True, **extra_env: str) -> Result:
    t0 = time.perf_counter()
    p = subprocess.run(
        list(args),
        cwd=cwd,
        env=tool_env(**extra_env),  # stages find this interpreter's `python`; offline
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    r = Result(list(args), p.returncode, p.stdout, time.perf_counter() - t0)
    return r.check() if check else r


def dvc(cwd: Path, *args: str, **kw: object) -> Result:
    return run(cwd, sys.executable, "-m", "dvc", *args, **kw)  # type: ignore[arg-type]


def git(cwd: Path, *args: str, **kw: object) -> Result:
    return run(cwd, "git", *args, **kw)  # type: ignore[arg-type]


def compose_params(repo: Path, *overrides: str) -> None:
    """Rewrite params.yaml from conf/ with overrides, exactly as `dvc exp run -S` would."""
    run(repo, sys.executable, "stages/compose_params.py", *overrides)


def clone(src: Path, dst: Path, cache: Path, remote: Path) -> Path:
    """A git clone of `src` at HEAD whose DVC cache and default remote are the given directories."""
    git(dst.parent, "clone", "--quiet", str(src), dst.name)
    git(dst, "config", "user.email", "tests@pocketquant.invalid")
    git(dst, "config", "user.name", "pocketquant tests")
    dvc(dst, "cache", "dir", "--local", str(cache))
    dvc(dst, "remote", "modify", "--local", "local", "url", str(remote))
    return dst


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def cached_outputs(repo: Path) -> list[Path]:
    """Every file of every cached output that dvc.lock records."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))
    files: list[Path] = []
    stages = yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    uncached = {
        next(iter(o))
        for s in stages.values()
        for kind in ("outs", "metrics", "plots")
        for o in s.get(kind, [])
        if isinstance(o, dict) and next(iter(o.values())).get("cache") is False
    }
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] in uncached:
                continue
            p = repo / out["path"]
            files += sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    return files


def leftovers(directory: Path) -> list[Path]:
    """Temporary files of interrupted atomic writes (pocketquant.atomic names them .NAME.*.tmp)."""
    return sorted(directory.rglob(".*.tmp")) if directory.exists() else []


def exp_show(repo: Path) -> list[dict]:
    """The experiments `dvc exp show --json` lists: name, params.yaml values, metrics by file, error."""
    out = dvc(repo, "exp", "show", "--json", "--no-fetch").out
    baselines = json.loads(out[out.index("[") :])
    found = []
    for baseline in baselines:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                found.append(
                    {
                        "name": rev.get("name") or exp.get("name"),
                        "params": ((data.get("params") or {}).get("params.yaml") or {}).get("data", {}),
                        "metrics": {k: v.get("data", {}) for k, v in (data.get("metrics") or {}).items()},
                        "error": rev.get("error"),
                    }
                )
    return found
