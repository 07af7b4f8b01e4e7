"""The driver's repository as the workers will see it: the committed revision, the git remote they
clone from and push to, the DVC remote they share, the Hydra settings that compose params.

Workers clone the git remote, so the sweep runs what is committed *and pushed*: a dirty working
tree or a commit the remote does not have is refused up front, with the command that fixes it.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketquant.errors import ConfigError

from .config import SweepConfig

_URL = re.compile(r"^[\w+.-]+://|^[\w.-]+@[\w.-]+:")  # scheme://... or user@host:path (scp syntax)


@dataclass(frozen=True)
class Source:
    root: Path
    rev: str
    git_remote: str
    git_url: str
    dvc_remote: str
    dvc_remote_options: dict[str, Any]
    hydra: dict[str, Any]
    identity: tuple[str, str]


def git(root: Path, *args: str, check: bool = True) -> str:
    p = subprocess.run(
        ["git", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        check=False,
    )
    if check and p.returncode != 0:
        message = (p.stderr or p.stdout).strip().splitlines()
        raise ConfigError(f"{root}: git {' '.join(args)}: {message[-1] if message else p.returncode}")
    return p.stdout.rstrip()  # porcelain output starts with significant spaces


def inspect_source(path: Path, config: SweepConfig) -> Source:
    root = Path(git(path, "rev-parse", "--show-toplevel"))
    if not (root / "dvc.yaml").exists():
        raise ConfigError(f"{root}: no dvc.yaml (run pocketquant sweep in the pipeline's repository)")
    dirty = git(root, "status", "--porcelain", "--untracked-files=no").splitlines()
    if dirty:
        files = ", ".join(line[3:] for line in dirty[:5]) + (" ..." if len(dirty) > 5 else "")
        raise ConfigError(
            f"{root}: uncommitted changes ({files}); the sweep runs the committed revision on other "
            "machines: commit and push them first"
        )
    rev = git(root, "rev-parse", "HEAD")
    url = _git_url(root, config.git_remote)
    git(root, "fetch", "--quiet", config.git_remote)
    if not git(root, "branch", "-r", "--contains", rev, "--list", f"{config.git_remote}/*"):
        branch = git(root, "rev-parse", "--abbrev-ref", "HEAD")
        raise ConfigError(
            f"commit {rev[:7]} is not on git remote '{config.git_remote}' ({url}); workers clone it from "
            f"there: git push {config.git_remote} {branch if branch != 'HEAD' else 'HEAD:refs/heads/NAME'}"
        )
    name, options, hydra = _dvc_settings(root, config.dvc_remote)
    identity = (
        git(root, "config", "user.name", check=False) or "pocketquant sweep",
        git(root, "config", "user.email", check=False) or "sweep@pocketquant.invalid",
    )
    return Source(root, rev, config.git_remote, url, name, options, hydra, identity)


def existing_experiments(source: Source, names: list[str]) -> list[str]:
    """Those of `names` the git remote already has as experiments of this commit (DVC keeps them
    under refs/exps/<sha[:2]>/<sha[2:]>/<name>; `dvc exp push` would refuse to overwrite them)."""
    prefix = f"refs/exps/{source.rev[:2]}/{source.rev[2:]}/"
    refs = git(source.root, "ls-remote", source.git_remote, f"{prefix}*").splitlines()
    taken = {line.split()[-1][len(prefix) :] for line in refs if line.split()[-1].startswith(prefix)}
    return [n for n in names if n in taken]


def _git_url(root: Path, remote: str) -> str:
    url = git(root, "remote", "get-url", remote, check=False)
    if not url:
        raise ConfigError(
            f"{root}: no git remote '{remote}' (git remote -v lists them; --git-remote picks one)"
        )
    if not _URL.match(url) and not os.path.isabs(url):
        url = str((root / url).resolve())  # a relative path means the same thing on every node only absolute
    return url


def _dvc_settings(root: Path, wanted: str | None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        conf = repo.config
        name = wanted or conf["core"].get("remote")
        if not name:
            raise ConfigError(f"{root}: no default DVC remote (dvc remote add -d NAME URL, or --dvc-remote)")
        if name not in conf["remote"]:
            known = ", ".join(sorted(conf["remote"])) or "none"
            raise ConfigError(f"{root}: no DVC remote '{name}' (configured: {known})")
        return name, dict(conf["remote"][name]), dict(conf.get("hydra", {}))
