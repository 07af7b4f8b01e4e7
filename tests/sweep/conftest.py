"""Fixtures of the sweep tests: a bare git remote of this repository and a driver clone of it with a
local DVC remote, as a team would have them (pocketquant.testing.sweep_lab builds them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketquant.testing.sweep_lab import Team, make_team

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Team:
    return make_team(tmp_path_factory.mktemp("team"), REPO)
