"""Settings of `pocketquant sweep`: built-in defaults, conf/sweep.yaml over them, flags over both.

conf/sweep.yaml is not part of the pipeline's Hydra configuration (config.yaml does not list it,
and params.yaml never contains it): where experiments run does not change their results.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from pocketquant.errors import ConfigError
from pocketquant.inputs import read_input_text

CONFIG_FILE = Path("conf") / "sweep.yaml"


@dataclass(frozen=True)
class SweepConfig:
    address: str | None = None  # Ray cluster: "auto", "HOST:6379", "ray://..."; None: a new local one
    cpus_per_task: float = 1.0  # Ray CPUs each experiment reserves (also its OMP_NUM_THREADS)
    local_cpus: int | None = None  # CPUs of the local cluster (None: all of this machine's)
    object_store_mb: int = 100  # object store of the local cluster (tasks exchange only small records)
    git_remote: str = "origin"  # git remote (name in this repo) that tasks clone from and push experiments to
    dvc_remote: str | None = None  # DVC remote (name in this repo) all tasks share; None: the default
    work_dir: str = "~/.cache/pocketquant/sweep"  # on each worker node: clones/ and the node's DVC cache
    shared_cache: bool = True  # one DVC cache per node (work_dir/cache); False: one per clone
    retries: int = 1  # re-runs of an experiment whose worker died (a failing stage is not retried)
    upstream: bool = True  # run the stages all experiments share once, first, and let them restore them
    pull_outputs: bool = False  # `dvc exp pull` the experiments' DVC outputs too, not only their git refs
    keep_clones: bool = False  # keep each task's clone on the worker (for debugging)
    name: str | None = None  # experiment name prefix (NAME-1, NAME-2, ...); None: sweep-<random>

    def with_overrides(self, values: dict[str, Any], source: str) -> SweepConfig:
        """This config with the given keys replaced (None values are ignored: flag not given)."""
        known = {f.name: f for f in fields(self)}
        unknown = set(values) - set(known)
        if unknown:
            raise ConfigError(f"{source}: unknown sweep setting(s): {', '.join(sorted(unknown))}")
        changes = {k: _typed(source, k, v, getattr(self, k)) for k, v in values.items() if v is not None}
        return replace(self, **changes).check(source)

    def check(self, source: str) -> SweepConfig:
        if self.cpus_per_task <= 0:
            raise ConfigError(f"{source}: cpus_per_task must be > 0, not {self.cpus_per_task}")
        if self.retries < 0:
            raise ConfigError(f"{source}: retries must be >= 0, not {self.retries}")
        if self.object_store_mb < 75:
            raise ConfigError(
                f"{source}: object_store_mb must be >= 75 (Ray's minimum), not {self.object_store_mb}"
            )
        if self.local_cpus is not None and self.local_cpus < 1:
            raise ConfigError(f"{source}: local_cpus must be >= 1, not {self.local_cpus}")
        return self


def load_config(repo: Path, path: Path | None = None) -> SweepConfig:
    """The built-in defaults with `path` (default: the repo's conf/sweep.yaml, when present) over them."""
    file = path if path is not None else repo / CONFIG_FILE
    if path is None and not file.exists():
        return SweepConfig()
    text = read_input_text(file, "sweep settings", error=ConfigError)  # a FIFO is refused, not read
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: cannot read sweep settings: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of sweep settings")
    return SweepConfig().with_overrides(data, str(file))


def _typed(source: str, key: str, value: Any, default: Any) -> Any:
    """`value` as the setting's type (a YAML 2 for a float setting is fine; a string for a number is not)."""
    numeric = {"cpus_per_task": float, "local_cpus": int, "object_store_mb": int, "retries": int}
    flags = {"shared_cache", "upstream", "pull_outputs", "keep_clones"}
    ok = (
        isinstance(value, (int, float)) and not isinstance(value, bool)
        if key in numeric
        else isinstance(value, bool)
        if key in flags
        else isinstance(value, str)
    )
    if not ok:
        raise ConfigError(f"{source}: {key}: {value!r} is not a valid value (default {default!r})")
    return numeric[key](value) if key in numeric else value
