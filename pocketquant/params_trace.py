"""Record which params.yaml keys a stage script reads (tests check them against dvc.yaml).

A stage must read only the params keys its dvc.yaml entry lists: a key it reads but does not list
changes its output without DVC re-running it. With POCKETQUANT_PARAMS_TRACE=DIR in the environment,
`traced(params)` returns the params as a mapping that records every key path read from it (a
leaf value, or every key when a mapping is iterated) and writes them with the script's argv to
DIR/<pid>.json when the script exits. Without the variable it returns the params unchanged.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path
from typing import Any

ENV = "POCKETQUANT_PARAMS_TRACE"


class _Reads:
    def __init__(self) -> None:
        self.paths: set[str] = set()


class TracedDict(dict):
    """A dict whose reads are recorded as dotted key paths (nested mappings are traced too)."""

    def __init__(self, data: dict, reads: _Reads, prefix: str = "") -> None:
        super().__init__(data)
        self._reads, self._prefix = reads, prefix

    def _path(self, key: object) -> str:
        return f"{self._prefix}{key}"

    def _wrap(self, key: object, value: Any) -> Any:
        if isinstance(value, dict):
            if not value:
                self._reads.paths.add(self._path(key))
            return TracedDict(value, self._reads, f"{self._path(key)}.")
        self._reads.paths.add(self._path(key))
        return value

    def __getitem__(self, key: object) -> Any:
        return self._wrap(key, super().__getitem__(key))

    def get(self, key: object, default: Any = None) -> Any:
        if key in self:
            return self[key]
        self._reads.paths.add(self._path(key))
        return default

    def items(self):  # noqa: ANN201 (dict view)
        return [(k, self[k]) for k in super().keys()]

    def values(self):  # noqa: ANN201
        return [self[k] for k in super().keys()]


def traced(params: dict[str, Any]) -> dict[str, Any]:
    """`params` itself, or (with POCKETQUANT_PARAMS_TRACE set) a recording view of it."""
    out_dir = os.environ.get(ENV)
    if not out_dir:
        return params
    reads = _Reads()

    def dump() -> None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        record = {"argv": sys.argv, "reads": sorted(reads.paths)}
        (Path(out_dir) / f"{os.getpid()}.json").write_text(json.dumps(record), encoding="utf-8")

    atexit.register(dump)
    return TracedDict(params, reads)


def covered_by(path: str, listed: list[str]) -> bool:
    """Is key path `path` (a.b.c) one of the listed params keys or inside one of them?"""
    return any(path == key or path.startswith(key + ".") for key in listed)
