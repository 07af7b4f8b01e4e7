"""Refuse a bad pipeline configuration before DVC touches any output.

DVC deletes a stage's outputs just before it runs the stage's command, so a stage cannot refuse
its own params without losing them (`dvc exp run -S model=local` without `model.path` used to
delete artifacts/base/hf and then fail). The `check_params` stage runs first (every other stage
descends from it) and calls `check_params`: every key of params.yaml must exist in the chosen
option of conf/ (no unknown key, no missing one), and the model source must be complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from pocketquant.errors import ConfigError

# options whose required key the user must set on the command line
REQUIRED_BY_OPTION = {("model", "local"): "path", ("model", "hub"): "hf_id"}


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def schema(conf_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """{group: {option: keys tree}} for each config group, and {"": top-level non-group keys}."""
    conf_dir = Path(conf_dir)
    config = _load(conf_dir / "config.yaml")
    groups = {}
    for entry in config.get("defaults", []):
        if isinstance(entry, dict):
            (group,) = entry
            groups[group] = {p.stem: _load(p) for p in sorted((conf_dir / group).glob("*.yaml"))}
    top = {k: v for k, v in config.items() if k not in ("defaults", "hydra")}
    return {"groups": groups, "top": top}


def _compare(where: str, got: Any, want: Any, problems: list[str]) -> None:
    if not isinstance(want, dict):
        return
    if not isinstance(got, dict):
        problems.append(f"{where} must be a mapping (keys: {', '.join(sorted(want))})")
        return
    for key in sorted(set(got) - set(want)):
        problems.append(f"unknown key {where}.{key} (known: {', '.join(sorted(want))})")
    for key in sorted(set(want) - set(got)):
        problems.append(f"missing key {where}.{key}")
    for key in sorted(set(got) & set(want)):
        _compare(f"{where}.{key}", got[key], want[key], problems)


def check_params(
    params: dict[str, Any], conf_dir: str | os.PathLike[str], source: str = "params.yaml"
) -> None:
    """ConfigError naming the first problem key of `params` (as composed from conf_dir)."""
    s = schema(conf_dir)
    groups, top = s["groups"], s["top"]
    problems: list[str] = []
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: not a mapping")
    for key in sorted(set(params) - set(groups) - set(top)):
        problems.append(f"unknown key {key} (known: {', '.join(sorted({*groups, *top}))})")
    for group, options in groups.items():
        got = params.get(group)
        if got is None:
            problems.append(f"missing key {group}")
            continue
        name = got.get("name") if isinstance(got, dict) else None
        # the option's own file decides its keys; a renamed option is checked against the union
        want = options.get(name) or {k: v for o in options.values() for k, v in o.items()}
        _compare(group, got, want, problems)
        required = REQUIRED_BY_OPTION.get((group, name))
        if required and isinstance(got, dict) and not got.get(required):
            problems.append(
                f"{group}={name} needs {group}.{required}: "
                f"dvc exp run -S {group}={name} -S {group}.{required}=..."
            )
    for key, want in top.items():
        if key in params:
            _compare(key, params[key], want, problems)
    if problems:
        raise ConfigError(f"{source}: {'; '.join(problems)}")
    from pocketquant.models import ModelSource

    m = params["model"]
    ModelSource.from_config(name=m["name"], path=m["path"], hf_id=m["hf_id"], revision=m["revision"])
