"""Does this Python environment hold exactly what requirements.lock pins?

    python -m pocketquant.envlock requirements.lock                  # report, exit 2 on drift
    python -m pocketquant.envlock requirements.lock --remove-extra   # and uninstall what the lock lacks

scripts/setup.sh installs the lock with `pip install --require-hashes` (every file hash-checked) and
then runs this, so a venv that once had something else installed ends up exactly at the lock. The
tests use `lock_drift` to show that an environment is "built from the lock".
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# This project itself (installed editable from the work tree), never a pin of the lock.
SELF = "pocketquant"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def canonical(name: str) -> str:
    """PEP 503 name normalisation (Foo_Bar.baz -> foo-bar-baz)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str | os.PathLike[str]) -> dict[str, str]:
    """{canonical name: pinned version} of a pip-compile lock file (`name==version \\` lines)."""
    pins: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        m = _PIN.match(line)
        if m:
            pins[canonical(m.group(1))] = m.group(2)
    if not pins:
        raise ValueError(f"{path}: no `name==version` pins found (not a pip-compile lock?)")
    return pins


def installed() -> dict[str, str]:
    """{canonical name: version} of every distribution this interpreter sees."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist.version)
    return found


@dataclass
class Drift:
    missing: list[str] = field(default_factory=list)  # pinned, not installed
    wrong: list[str] = field(default_factory=list)  # "name: installed X, lock Y"
    extra: list[str] = field(default_factory=list)  # installed, not in the lock

    def __bool__(self) -> bool:
        return bool(self.missing or self.wrong or self.extra)

    def describe(self, lock: str | os.PathLike[str]) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing: {', '.join(self.missing)}")
        if self.wrong:
            parts.append(f"other versions: {'; '.join(self.wrong)}")
        if self.extra:
            parts.append(f"not in the lock: {', '.join(self.extra)}")
        return f"this environment differs from {lock}: " + " | ".join(parts)


def lock_drift(lock: str | os.PathLike[str], have: dict[str, str] | None = None) -> Drift:
    """How the current environment (or `have`) differs from the lock's pins."""
    pins = read_lock(lock)
    have = installed() if have is None else have
    drift = Drift()
    for name, version in sorted(pins.items()):
        if name not in have:
            drift.missing.append(f"{name}=={version}")
        elif have[name] != version:
            drift.wrong.append(f"{name}: installed {have[name]}, lock {version}")
    drift.extra = sorted(n for n in have if n not in pins and n != SELF)
    return drift


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("lock", nargs="?", default="requirements.lock", help="pip-compile lock file")
    ap.add_argument(
        "--remove-extra", action="store_true", help="uninstall distributions the lock does not pin"
    )
    args = ap.parse_args(argv)
    try:
        drift = lock_drift(args.lock)
    except (OSError, ValueError) as exc:
        print(f"envlock: error: {exc}", file=sys.stderr)
        return 2
    if drift.extra and args.remove_extra:
        print(f"envlock: removing what {args.lock} does not pin: {', '.join(drift.extra)}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", *drift.extra], check=True)
        drift.extra = []
    if drift:
        print(f"envlock: error: {drift.describe(args.lock)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
