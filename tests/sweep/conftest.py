"""Fixtures of the sweep tests: a bare git remote of this repository and a driver clone of it with a
local DVC remote, as a team would have them (the shared remote is a directory here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from pipeline.dvcrepo import REPO, dvc, git


@dataclass
class Team:
    root: Path
    origin: Path  # the shared bare git remote
    driver: Path  # the clone `pocketquant sweep` runs in
    remote: Path  # the shared DVC remote (a directory)


def make_team(root: Path) -> Team:
    team = Team(root, root / "origin.git", root / "driver", root / "dvc-remote")
    git(root, "clone", "--quiet", "--bare", str(REPO), str(team.origin))
    git(root, "clone", "--quiet", str(team.origin), str(team.driver))
    git(team.driver, "config", "user.email", "tests@pocketquant.invalid")
    git(team.driver, "config", "user.name", "pocketquant tests")
    dvc(team.driver, "remote", "modify", "--local", "local", "url", str(team.remote))
    dvc(team.driver, "cache", "dir", "--local", str(root / "driver-cache"))
    return team


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Team:
    return make_team(tmp_path_factory.mktemp("team"))
