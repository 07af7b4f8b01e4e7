"""requirements.lock: every dependency of pyproject pinned with hashes, torch = the local CPU wheel,
and this environment is exactly the lock (scripts/setup.sh makes it so)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from pocketquant.envlock import canonical, lock_drift, read_lock

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"


def test_every_pin_has_a_hash() -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text())
    pins = [b for b in blocks if re.match(r"[A-Za-z0-9][\w.-]*==", b)]
    assert len(pins) == len(read_lock(LOCK)) > 100
    assert all("--hash=sha256:" in b for b in pins), [b.split()[0] for b in pins if "--hash" not in b]


def test_every_declared_dependency_is_locked() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    pins = read_lock(LOCK)
    names = {canonical(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0]) for d in declared}
    assert names - set(pins) == set()
    assert {"ray", "llama-cpp-python", "torch", "pip", "setuptools", "cython"} <= set(pins)
    assert pins["torch"].endswith("+cpu") and pins["llama-cpp-python"] == "0.3.36"


def test_torch_hash_is_the_local_cpu_wheel() -> None:
    wheels = sorted(Path("/opt/wheels").glob("torch-2.13.0+cpu-*.whl"))
    if not wheels:
        pytest.skip("no local torch wheel in /opt/wheels on this machine")
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    block = LOCK.read_text().split("\ntorch==", 1)[1].split("# via", 1)[0]
    assert re.findall(r"sha256:([0-9a-f]{64})", block) == [digest]


def test_lock_drift_names_what_differs() -> None:
    pins = read_lock(LOCK)
    have = dict(pins) | {"extra-thing": "1.0", "pocketquant": "0.1.0"}
    have["numpy"] = "0.0.1"
    del have["ray"]
    d = lock_drift(LOCK, have)
    assert d.missing == [f"ray=={pins['ray']}"]
    assert d.wrong == [f"numpy: installed 0.0.1, lock {pins['numpy']}"] and d.extra == ["extra-thing"]
    assert not lock_drift(LOCK, dict(pins))


def test_this_environment_is_the_lock() -> None:
    drift = lock_drift(LOCK)
    assert not drift.missing and not drift.wrong, drift.describe(LOCK)
