"""`pocketquant sweep`'s driver: plan the sweep, run it on Ray, pull the experiments back.

1. Expand the `-S` overrides into points (DVC's own sweep expansion) and compose each one.
2. Find the stages all points share; one *upstream* task runs them and pushes their outputs.
3. One task per point (in its own clone, anywhere in the cluster) restores the shared stages from
   the remote, runs and pushes the rest stage by stage, records the experiment with `dvc exp run`
   and pushes it with `dvc exp push`.
4. The driver `dvc exp pull`s each finished experiment, so `dvc exp show` lists it.

A task whose worker dies is retried (config.retries) in a fresh clone; a stage that fails is
reported with its last error line and not retried. Every task's output goes to
.dvc/tmp/sweeps/<sweep>/<task>.log, the live state to status.json, the outcome to record.json
(per task and attempt: where it ran, which stages ran there, which were restored).
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from pocketquant.atomic import atomic_path
from pocketquant.errors import ConfigError

from .cluster import Cluster, Lost, connected
from .config import SweepConfig
from .pipeline import load_pipeline
from .points import SweepPoint, expand
from .progress import DONE, FAILED, RETRYING, RUNNING, Attempt, Progress, Row
from .source import Source, existing_experiments, inspect_source
from .task import EXPERIMENT, UPSTREAM, Carry, TaskResult, TaskSpec

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
POLL_SECONDS = 0.5


@dataclass
class SweepOutcome:
    sweep: str
    record_dir: Path
    rows: list[Row]
    stage_runs: dict[str, int]  # how often each stage's command ran, over all tasks and attempts

    @property
    def experiments(self) -> list[Row]:
        return [r for r in self.rows if r.kind == EXPERIMENT]

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.experiments if r.state != DONE]


def run_sweep(path: Path, set_params: list[str], config: SweepConfig, console: Console) -> SweepOutcome:
    source = inspect_source(path, config)
    points = expand(set_params, source.root, source.hydra)
    pipeline = load_pipeline(source.root / "dvc.yaml")
    shared = pipeline.shared_stages(points) if config.upstream else []

    prefix = config.name or f"sweep-{secrets.token_hex(3)}"
    if not _NAME.match(prefix):
        raise ConfigError(f"--name {prefix!r}: use letters, digits, '.', '_' and '-' (a git ref name)")
    names = [f"{prefix}-{p.index}" for p in points]
    taken = existing_experiments(source, names)
    if taken:
        raise ConfigError(
            f"git remote '{source.git_remote}' already has experiment(s) {', '.join(taken)}: "
            "pick another --name"
        )

    record_dir = source.root / ".dvc" / "tmp" / "sweeps" / prefix
    record_dir.mkdir(parents=True, exist_ok=True)
    upstream_name = f"{prefix}-upstream"
    rows = [Row(name, p.label, EXPERIMENT) for name, p in zip(names, points, strict=True)]
    if shared:
        rows.insert(0, Row(upstream_name, f"shared stages: {' '.join(shared)}", UPSTREAM))

    def spec(
        name: str, kind: str, point: SweepPoint, stages: list[str], carry: Carry | None = None
    ) -> TaskSpec:
        uncached = [out for stage in stages for out in pipeline.stage(stage).uncached_outs]
        return TaskSpec(
            sweep=prefix,
            name=name,
            kind=kind,
            stages=tuple(stages),
            files=point.files,
            set_params=tuple(point.set_params),
            git_url=source.git_url,
            rev=source.rev,
            dvc_remote=source.dvc_remote,
            dvc_remote_options=source.dvc_remote_options,
            work_dir=config.work_dir,
            shared_cache=config.shared_cache,
            identity=source.identity,
            keep_clone=config.keep_clones,
            threads=max(1, int(config.cpus_per_task)),
            carry=carry,
            carry_files=tuple(uncached) if kind == UPSTREAM else (),
        )

    console.print(
        f"sweep {prefix}: {len(points)} experiment(s) of {source.rev[:7]}"
        + (f", shared stages first: {', '.join(shared)}" if shared else "")
        + f"; git remote {source.git_url}, DVC remote '{source.dvc_remote}'; logs in {record_dir}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    progress = Progress(rows, record_dir / "status.json", console)
    try:
        with connected(config), progress:
            runner = _Runner(Cluster(config.cpus_per_task), progress, record_dir, config.retries)
            carry: Carry | None = None
            if shared:
                results = runner.run([spec(upstream_name, UPSTREAM, points[0], shared)], on_success=None)
                upstream = results.get(upstream_name)
                if upstream is None or not upstream.ok:
                    why = progress.rows[upstream_name].error
                    for name in names:
                        progress.set_state(name, FAILED, f"shared stages failed: {why}")
                    return _finish(source, prefix, record_dir, progress, config)
                carry = upstream.carry
            experiments = [
                spec(n, EXPERIMENT, p, pipeline.names, carry) for n, p in zip(names, points, strict=True)
            ]
            runner.run(experiments, on_success=lambda s, _r: _pull_experiment(source, config, s.name))
        return _finish(source, prefix, record_dir, progress, config)
    except BaseException:  # interrupted or broken: still say what got done
        _finish(source, prefix, record_dir, progress, config)
        raise


class _Runner:
    """Runs a batch of tasks to the end: progress, logs, retries of lost workers."""

    def __init__(self, cluster: Cluster, progress: Progress, record_dir: Path, retries: int) -> None:
        self.cluster, self.progress, self.record_dir, self.retries = cluster, progress, record_dir, retries
        self._seen: dict[str, dict[str, Any]] = {}

    def run(
        self, specs: list[TaskSpec], on_success: Callable[[TaskSpec, TaskResult], str] | None
    ) -> dict[str, TaskResult]:
        pending = {self.cluster.submit(s): s for s in specs}
        results: dict[str, TaskResult] = {}
        try:
            while pending:
                ready = self.cluster.wait(list(pending), timeout=POLL_SECONDS)
                self._poll(pending.values())
                for ref in ready:
                    spec = pending.pop(ref)
                    outcome = self.cluster.result(ref)
                    if isinstance(outcome, Lost):
                        retry = self._lost(spec, outcome)
                        if retry is not None:
                            pending[self.cluster.submit(retry)] = retry
                        continue
                    results[spec.name] = outcome
                    self._done(spec, outcome, on_success)
        except KeyboardInterrupt:
            self.cluster.cancel(list(pending))
            for spec in pending.values():
                self.progress.set_state(spec.name, FAILED, "interrupted")
            raise
        return results

    def _poll(self, running: Any) -> None:
        try:
            events = self.cluster.events()
        except Exception:  # noqa: BLE001 - progress is best effort; results still arrive
            return
        for spec in running:
            event = events.get(spec.name)
            if event and event.get("attempt") == spec.attempt and event != self._seen.get(spec.name):
                self._seen[spec.name] = dict(event)
                self.progress.apply(spec.name, event)

    def _lost(self, spec: TaskSpec, lost: Lost) -> TaskSpec | None:
        row = self.progress.rows[spec.name]
        host = row.attempts[-1].host if row.attempts and row.attempts[-1].attempt == spec.attempt else ""
        attempt = Attempt(attempt=spec.attempt, host=host, ok=False, error=lost.reason)
        self._log(spec, f"(no output: {lost.reason})\n")
        if lost.retryable and spec.attempt <= self.retries:
            self.progress.finish(spec.name, attempt, RETRYING, lost.reason)
            return replace(spec, attempt=spec.attempt + 1)
        self.progress.finish(spec.name, attempt, FAILED, lost.reason)
        return None

    def _done(
        self, spec: TaskSpec, result: TaskResult, on_success: Callable[[TaskSpec, TaskResult], str] | None
    ) -> None:
        self._log(spec, result.log)
        attempt = Attempt(
            attempt=spec.attempt,
            host=result.host,
            ok=result.ok,
            error=result.error,
            ran=result.ran,
            restored=result.restored,
            unchanged=result.unchanged,
            seconds=round(result.seconds, 1),
        )
        if not result.ok:
            self.progress.finish(spec.name, attempt, FAILED, result.error)
            return
        if on_success is not None:
            self.progress.set_state(spec.name, RUNNING, phase="dvc exp pull (driver)")
            error = on_success(spec, result)
            if error:
                attempt.ok, attempt.error = False, error
                self.progress.finish(spec.name, attempt, FAILED, error)
                return
        self.progress.finish(spec.name, attempt, DONE)

    def _log(self, spec: TaskSpec, text: str) -> None:
        path = self.record_dir / f"{spec.name}.{spec.attempt}.log"
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")


def _pull_experiment(source: Source, config: SweepConfig, name: str) -> str:
    """`dvc exp pull` one experiment into the driver's repository; '' or the last error line."""
    args = [sys.executable, "-m", "dvc", "exp", "pull", "-r", source.dvc_remote]
    if not config.pull_outputs:
        args.append("--no-cache")
    p = subprocess.run(
        [*args, source.git_remote, name], cwd=source.root, capture_output=True, text=True, check=False
    )
    if p.returncode == 0:
        return ""
    lines = [line for line in (p.stdout + p.stderr).splitlines() if line.strip()]
    return f"dvc exp pull: {lines[-1].strip() if lines else p.returncode}"


def _finish(
    source: Source, prefix: str, record_dir: Path, progress: Progress, config: SweepConfig
) -> SweepOutcome:
    rows = list(progress.rows.values())
    runs = Counter(stage for row in rows for attempt in row.attempts for stage in attempt.ran)
    outcome = SweepOutcome(prefix, record_dir, rows, dict(runs))
    record = {
        "sweep": prefix,
        "rev": source.rev,
        "git_url": source.git_url,
        "dvc_remote": source.dvc_remote,
        "config": asdict(config),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "stage_runs": outcome.stage_runs,
        "tasks": progress.to_json(),
    }
    with atomic_path(record_dir / "record.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return outcome
