"""Fixtures shared by several test areas. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def wikitext2_path() -> Path:
    """WikiText-2 raw test split from ../shared (present in CI); tests that need it skip without it."""
    path = SHARED_DATA / "wikitext-2-raw" / "wiki.test.raw"
    if not path.exists():
        pytest.skip(f"{path} not present (../shared is only on developer and CI machines)")
    return path
