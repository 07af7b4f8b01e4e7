"""Sweep points: `-S` overrides expanded exactly as `dvc exp run --queue` expands them, and composed.

`dvc exp run -S 'quant=q4_k_m,q8_0,nf4' -S eval=smoke --queue` turns comma sweeps into one
experiment per combination with Hydra's BasicSweeper (`dvc.utils.hydra.get_hydra_sweeps`). We call
the same DVC functions, so a sweep means the same here as there, and compose each point's params
files the way DVC's queue does (Hydra composition of conf/ into params.yaml when `hydra.enabled`,
plain overrides of the file otherwise), so the composed values are what `dvc exp run` will write.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pocketquant.errors import ConfigError

PARAMS_FILE = "params.yaml"  # DVC's default params file (ParamsDependency.DEFAULT_PARAMS_FILE)


@dataclass(frozen=True)
class SweepPoint:
    """One experiment of the sweep."""

    index: int  # 1-based, in DVC's order
    overrides: dict[str, tuple[str, ...]]  # params file -> Hydra overrides, as DVC groups them
    files: dict[str, str]  # params file -> its composed text (what `dvc exp run` writes there)

    @property
    def set_params(self) -> list[str]:
        """The point as `dvc exp run -S` arguments."""
        args = []
        for path, overrides in self.overrides.items():
            args += [o if path == PARAMS_FILE else f"{path}:{o}" for o in overrides]
        return args

    @property
    def label(self) -> str:
        return " ".join(self.set_params) or "(defaults)"

    def params(self, path: str = PARAMS_FILE) -> dict[str, Any]:
        if path not in self.files:
            return {}
        return yaml.safe_load(self.files[path]) or {}


def expand(set_params: list[str], repo: Path, hydra: dict[str, Any]) -> list[SweepPoint]:
    """The sweep points of `-S` arguments (comma sweeps expanded), each composed against `repo`."""
    from dvc.exceptions import DvcException
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import get_hydra_sweeps, to_hydra_overrides
    from hydra.errors import HydraException

    try:
        path_overrides = to_path_overrides(set_params)
        if hydra.get("enabled") and PARAMS_FILE not in path_overrides:
            path_overrides[PARAMS_FILE] = []  # DVC composes params.yaml even without -S for it
        is_sweep = any(
            o.is_sweep_override() for ovr in path_overrides.values() for o in to_hydra_overrides(ovr)
        )
        combos = get_hydra_sweeps(path_overrides) if is_sweep else [path_overrides]
    except (HydraException, DvcException) as exc:
        raise ConfigError(f"-S {' -S '.join(set_params)}: {_message(exc)}") from exc
    return [
        SweepPoint(
            index=i,
            overrides={path: tuple(o) for path, o in combo.items()},
            files=compose(repo, {path: list(o) for path, o in combo.items()}, hydra),
        )
        for i, combo in enumerate(combos, start=1)
    ]


def compose(repo: Path, path_overrides: dict[str, list[str]], hydra: dict[str, Any]) -> dict[str, str]:
    """Each params file of one point, written as DVC's queue writes it (in a scratch copy)."""
    from dvc.exceptions import DvcException
    from dvc.utils.hydra import apply_overrides, compose_and_dump
    from hydra.errors import HydraException

    repo = repo.resolve()  # Hydra wants an absolute config dir
    texts = {}
    with tempfile.TemporaryDirectory(prefix="pq-sweep-compose-") as scratch:
        for path, overrides in path_overrides.items():
            out = Path(scratch) / path
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                if hydra.get("enabled") and path == PARAMS_FILE:
                    module = hydra.get("config_module")
                    config_dir = None if module else os.path.join(repo, hydra.get("config_dir", "conf"))
                    compose_and_dump(
                        out,
                        config_dir,
                        module,
                        hydra.get("config_name", "config"),
                        os.path.join(repo, hydra.get("plugins_path", "")),
                        overrides,
                    )
                else:
                    if not (repo / path).exists():
                        raise ConfigError(f"{repo / path}: params file of -S {overrides} does not exist")
                    shutil.copyfile(repo / path, out)
                    apply_overrides(out, overrides)
            except (HydraException, DvcException) as exc:
                raise ConfigError(f"{path}: -S {' '.join(overrides)}: {_message(exc)}") from exc
            texts[path] = out.read_text(encoding="utf-8")
    return texts


def _message(exc: BaseException) -> str:
    """An exception and its causes on one line (DVC wraps Hydra's errors)."""
    parts = []
    while exc is not None:
        text = " ".join(str(exc).split())
        parts.append(text.split(" Config search path:")[0])  # Hydra's search path says nothing new
        exc = exc.__cause__
    return ": ".join(p for p in parts if p)
