"""Ray glue: connect to (or start) a cluster, run tasks on it, collect their progress events.

Ray is only imported here. A local cluster is started small (no dashboard, a small object store,
logs of the workers not forwarded: every task's output comes back in its result). Tasks are not
retried by Ray (max_retries=0): the driver decides, because only a lost worker is worth a retry,
not a stage that fails. Progress events go to a small actor pinned to the driver's node, so that a
worker node dying takes no progress of the others with it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pocketquant.errors import ConfigError

from .config import SweepConfig
from .task import TaskResult, TaskSpec, run_task


@contextmanager
def connected(config: SweepConfig) -> Iterator[str]:
    """ray.init for the sweep; yields the address connected to (or "local"); shuts down after."""
    import ray

    if config.address:
        _probe(config.address)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reporting, no prompt
    common: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if config.address:
            ray.init(address=config.address, **common)
        else:
            ray.init(
                address="local",
                num_cpus=config.local_cpus or os.cpu_count() or 1,
                object_store_memory=config.object_store_mb << 20,
                include_dashboard=False,
                **common,
            )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {config.address}" if config.address else "a local Ray cluster"
        raise ConfigError(f"cannot connect to {where}: {one_line(exc)}") from exc
    try:
        yield config.address or "local"
    finally:
        ray.shutdown()


def _probe(address: str) -> None:
    """Fail fast when nothing listens at HOST:PORT (ray.init would retry for many minutes)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not port.isdigit():
        return  # "auto", "ray://...": Ray resolves and reports those itself
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=10).close()
    except OSError as exc:
        raise ConfigError(
            f"nothing answers at Ray address {address} ({exc.strerror or exc}); "
            "is `ray start --head` running there?"
        ) from exc


class ProgressBoard:
    """Latest progress event per task (merged), per attempt; lives in a Ray actor."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}

    def update(self, name: str, attempt: int, event: dict[str, Any]) -> None:
        current = self.events.get(name)
        if current is None or current.get("attempt", 0) < attempt:
            current = self.events[name] = {"attempt": attempt}
        elif current["attempt"] > attempt:
            return  # a late event of an attempt that was already replaced
        current.update(event)
        current["attempt"] = attempt

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return self.events


def _execute(spec: TaskSpec, board: Any) -> TaskResult:
    """The body of every Ray task: run_task with its events sent to the board (fire and forget)."""

    import ray

    node = ray.get_runtime_context().get_node_id()

    def report(event: dict[str, Any]) -> None:
        board.update.remote(spec.name, spec.attempt, {**event, "node": node})

    return run_task(spec, report)


class Cluster:
    """Submits tasks and polls progress; the driver owns retries and ordering."""

    def __init__(self, cpus_per_task: float) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        self._ray = ray
        self.board = ray.remote(num_cpus=0)(ProgressBoard).options(scheduling_strategy=here).remote()
        self._task = ray.remote(_execute)
        self._cpus = cpus_per_task

    def submit(self, spec: TaskSpec) -> Any:
        options = {"num_cpus": self._cpus, "max_retries": 0, "name": f"pocketquant-sweep:{spec.name}"}
        return self._task.options(**options).remote(spec, self.board)

    def wait(self, refs: list[Any], timeout: float) -> list[Any]:
        if not refs:
            return []
        ready, _ = self._ray.wait(refs, num_returns=1, timeout=timeout)
        return ready

    def result(self, ref: Any) -> TaskResult | Lost:
        """The task's result, or why there is none: its worker or node died (worth a retry), or
        the task itself raised (e.g. pocketquant is not importable on that node; not worth one)."""
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            return Lost(reason=one_line(cause), retryable=False)
        except self._ray.exceptions.RayError as exc:
            return Lost(reason=one_line(exc), retryable=True)

    def events(self) -> dict[str, dict[str, Any]]:
        return self._ray.get(self.board.snapshot.remote(), timeout=30)

    def cancel(self, refs: list[Any]) -> None:
        for ref in refs:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001, S110 - already finished or gone: nothing to cancel
                pass


@dataclass(frozen=True)
class Lost:
    """A task that returned no result."""

    reason: str
    retryable: bool


def one_line(exc: BaseException) -> str:
    """'NodeDiedError: Task failed because the node it was running on is dead or unavailable.'"""
    text = " ".join(str(exc).split())
    first = text.split(". ")[0].rstrip(".")
    return f"{type(exc).__name__}: {first}." if first else type(exc).__name__
