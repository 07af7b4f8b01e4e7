"""A team's setup on one machine, for sweep tests and benchmarks: a bare git remote, a driver clone
with a local-directory DVC remote, and a real multi-node Ray cluster (a head that runs no tasks and
N worker nodes, each its own raylet, as `ray start --head` + `ray start --address` would give)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Team:
    root: Path
    origin: Path  # the shared bare git remote
    driver: Path  # the clone `pocketquant sweep` runs in
    remote: Path  # the shared DVC remote (a directory)


def tool_env(**extra: str) -> dict[str, str]:
    """This interpreter's bin first on PATH (stages call `python`), offline, no analytics or prompts."""
    env = dict(os.environ)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        GIT_TERMINAL_PROMPT="0",
        PYTHONUNBUFFERED="1",
        RAY_USAGE_STATS_ENABLED="0",
    )
    env.update(extra)
    return env


def _run(cwd: Path, *cmd: str) -> None:
    subprocess.run(cmd, cwd=cwd, env=tool_env(), check=True, capture_output=True, text=True)


def make_team(root: Path, source: Path) -> Team:
    """origin.git (bare, from `source`'s HEAD), driver/ (its clone; DVC cache and remote in root)."""
    team = Team(root, root / "origin.git", root / "driver", root / "dvc-remote")
    _run(root, "git", "clone", "--quiet", "--bare", str(source), str(team.origin))
    _run(root, "git", "clone", "--quiet", str(team.origin), str(team.driver))
    _run(team.driver, "git", "config", "user.email", "tests@pocketquant.invalid")
    _run(team.driver, "git", "config", "user.name", "pocketquant tests")
    dvc = (sys.executable, "-m", "dvc")
    _run(team.driver, *dvc, "remote", "modify", "--local", "local", "url", str(team.remote))
    _run(team.driver, *dvc, "cache", "dir", "--local", str(root / "driver-cache"))
    return team


@contextmanager
def ray_cluster(workers: int, *, cpus_per_worker: int = 1, object_store_mb: int = 80) -> Iterator[Any]:
    """A ray.cluster_utils.Cluster (head with 0 CPUs, `workers` nodes), shut down on exit whatever
    happens. Nodes inherit this process's environment at start: set it before."""
    from ray.cluster_utils import Cluster

    store = object_store_mb << 20
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "object_store_memory": store},
    )
    try:
        for _ in range(workers):
            cluster.add_node(num_cpus=cpus_per_worker, object_store_memory=store)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def kill_node(cluster: Any, node_id: str) -> None:
    """A worker machine dies: its raylet, its Ray workers and all they started, SIGKILLed."""
    import psutil

    (node,) = [n for n in cluster.worker_nodes if n.node_id == node_id]
    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    for proc in raylet.children(recursive=True):
        proc.kill()
    cluster.remove_node(node, allow_graceful=False)


def sweep_command(cluster: Any | None, work_dir: Path, *args: str) -> list[str]:
    """`pocketquant sweep` on `cluster` (None: a local cluster of the driver's own), every task with
    its own DVC cache unless `args` say otherwise (then all it did not compute comes from the DVC
    remote). The console script: `python -m` in a clone would import the clone's copy."""
    script = Path(sys.executable).parent / "pocketquant"
    address = ["--address", cluster.address] if cluster is not None else []
    return [str(script), "sweep", *address, "--work-dir", str(work_dir), "--no-shared-cache", *args]
