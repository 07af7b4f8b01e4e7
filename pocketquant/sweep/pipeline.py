"""The DVC pipeline as a sweep needs it: stage order, what each stage reads, which stages all points share.

A stage is *shared* by a sweep when every point gives it the same parameter values (the keys its
`params:` lists plus the `${...}` its command interpolates) and every stage upstream of it is shared
too: its outputs are then the same for all points, so one task computes them once and every
experiment restores them from the DVC remote. A stage marked `meta: {same_output_for_any_params:
true}` in dvc.yaml (check_params: it only validates params.yaml and writes a constant marker) is
shared whatever its params, when its upstream is: every point's own `dvc exp run` re-runs it for
its own params (seconds), and the marker it writes is the same bytes, so nothing downstream moves.
Read from dvc.yaml, without running DVC.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from pocketquant.errors import ConfigError

from .points import PARAMS_FILE, SweepPoint

_INTERPOLATION = re.compile(r"\$\{\s*([^}\s]+)\s*\}")
_MISSING = object()


@dataclass(frozen=True)
class Stage:
    name: str
    params: tuple[tuple[str, str | None], ...]  # (params file, key); key None = the whole file
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    uncached_outs: tuple[str, ...]  # `cache: false` outputs (kept in git, not on the DVC remote)
    params_independent: bool = False  # meta.same_output_for_any_params: outputs never depend on params


@dataclass(frozen=True)
class Pipeline:
    stages: tuple[Stage, ...]  # topological order: every stage after the stages it depends on

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def upstream(self, name: str) -> set[str]:
        """The stages whose outputs `name` depends on directly."""
        me = self.stage(name)
        return {
            other.name
            for other in self.stages
            if other.name != name and any(_overlaps(d, o) for d in me.deps for o in other.outs)
        }

    def shared_stages(self, points: Sequence[SweepPoint]) -> list[str]:
        """Stages every point computes identically (in pipeline order); none for a single point."""
        if len(points) < 2:
            return []
        shared: list[str] = []
        for stage in self.stages:
            signatures = [_signature(stage, point) for point in points]
            same = stage.params_independent or all(s == signatures[0] for s in signatures)
            if same and self.upstream(stage.name) <= set(shared):
                shared.append(stage.name)
        return shared


def load_pipeline(dvc_yaml: Path) -> Pipeline:
    try:
        doc = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{dvc_yaml}: cannot read the pipeline: {exc}") from exc
    raw = doc.get("stages") or {}
    if not raw:
        raise ConfigError(f"{dvc_yaml}: no stages")
    stages = [_parse_stage(dvc_yaml, name, spec or {}) for name, spec in raw.items()]
    return Pipeline(tuple(_topological(stages, dvc_yaml)))


def _parse_stage(dvc_yaml: Path, name: str, spec: dict[str, Any]) -> Stage:
    if "foreach" in spec or "matrix" in spec:
        raise ConfigError(
            f"{dvc_yaml}: stage '{name}' uses foreach/matrix, which pocketquant sweep does not plan"
        )
    params: list[tuple[str, str | None]] = []
    for entry in spec.get("params") or []:
        if isinstance(entry, str):
            params.append((PARAMS_FILE, entry))
        else:  # {file: [keys]} or {file: None} (every key of the file)
            for path, keys in entry.items():
                params += [(path, key) for key in keys] if keys else [(path, None)]
    cmd = spec.get("cmd") or ""
    cmd_text = " ".join(cmd) if isinstance(cmd, list) else str(cmd)
    params += [(PARAMS_FILE, key) for key in _INTERPOLATION.findall(cmd_text)]
    outs, uncached = [], []
    for kind in ("outs", "metrics", "plots"):
        for out in spec.get(kind) or []:
            path, opts = (out, {}) if isinstance(out, str) else next(iter(out.items()))
            outs.append(path)
            if (opts or {}).get("cache", True) is False:
                uncached.append(path)
    meta = spec.get("meta") or {}
    independent = bool(isinstance(meta, dict) and meta.get("same_output_for_any_params"))
    return Stage(
        name, tuple(params), tuple(spec.get("deps") or []), tuple(outs), tuple(uncached), independent
    )


def _topological(stages: list[Stage], dvc_yaml: Path) -> list[Stage]:
    """Kahn's algorithm, keeping dvc.yaml's order among stages that are ready together."""
    pipeline = Pipeline(tuple(stages))
    pending = {s.name: pipeline.upstream(s.name) for s in stages}
    order: list[Stage] = []
    while pending:
        ready = [s for s in stages if s.name in pending and not pending[s.name]]
        if not ready:
            raise ConfigError(f"{dvc_yaml}: stages {sorted(pending)} depend on each other in a cycle")
        for stage in ready:
            order.append(stage)
            del pending[stage.name]
        for deps in pending.values():
            deps.difference_update(s.name for s in ready)
    return order


def _overlaps(dep: str, out: str) -> bool:
    """A dependency on an output, on a file inside an output dir, or on a dir holding an output."""
    d, o = PurePosixPath(dep), PurePosixPath(out)
    return d == o or o in d.parents or d in o.parents


def _signature(stage: Stage, point: SweepPoint) -> list[Any]:
    return [_lookup(point.params(path), key) for path, key in stage.params]


def _lookup(params: dict[str, Any], key: str | None) -> Any:
    if key is None:
        return params
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node
