"""One sweep task, as it runs on a worker: a clone at the sweep's commit, its stages, its pushes.

Two kinds of task:
- *upstream*: reproduces the stages every experiment shares (acquire, convert, ...), pushes each
  with its run-cache entry, and hands the experiments its dvc.lock entries and the `cache: false`
  outputs of those stages (a `Carry`), so that they restore exactly these outputs.
- *experiment*: writes its composed params files and the carry, reproduces every stage
  (restoring what the remote has, pushing what it computes, stage by stage: see stagewise.py),
  records the experiment with `dvc exp run -S ...` and pushes it with `dvc exp push`.

This module runs in plain Python (no Ray imports): cluster.py wraps `run_task` in a Ray task, and
tests can call it directly. Progress goes out through `report(event)`; the outcome comes back as a
`TaskResult` (a failing stage is a result with ok=False, not an exception).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .stagewise import MARK

UPSTREAM = "upstream"
EXPERIMENT = "experiment"
LOG_LIMIT = 400_000  # characters of output kept per task (the end, where errors are)

Report = Callable[[dict[str, Any]], None]
# `python -m` in the clone would import the clone's own pocketquant/ (the cwd comes first on
# sys.path); the task must run the pocketquant installed on the worker, like the stage commands do.
_INSTALLED = ("-P",) if sys.version_info >= (3, 11) else ("-I",)

# Runs a command with the parent-death signal set, so a worker killed mid-stage does not leave
# its `dvc` (and the clone it writes) running as an orphan. Linux only; elsewhere a plain exec.
_PDEATHSIG_SHIM = (
    "import ctypes,os,signal,sys\n"
    "parent = os.getppid()\n"
    "try: ctypes.CDLL(None).prctl(1, signal.SIGKILL)\n"  # PR_SET_PDEATHSIG
    "except Exception: pass\n"
    "if os.getppid() != parent: sys.exit(137)\n"  # the worker died before prctl took effect
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)


@dataclass(frozen=True)
class Carry:
    """What the upstream task hands every experiment: the shared stages' dvc.lock entries (whose
    cached outputs it pushed) and their `cache: false` outputs (small files kept in git). With both,
    DVC finds those stages unchanged or restores them from the remote, exactly as the upstream
    computed them. The run-cache alone could not: DVC never run-caches a stage that has a
    `cache: false` output other than metrics or plots (evaluate_base's generations), and it may
    hold several results for the same inputs, from different machines."""

    lock: dict[str, Any]
    files: dict[str, bytes]  # path -> contents


@dataclass(frozen=True)
class TaskSpec:
    sweep: str  # the sweep's id (names its clones)
    name: str  # the experiment's name, or "<sweep>-upstream"
    kind: str  # UPSTREAM or EXPERIMENT
    stages: tuple[str, ...]  # in pipeline order
    files: dict[str, str]  # params file -> composed text
    set_params: tuple[str, ...]  # the point's `dvc exp run -S` arguments
    git_url: str
    rev: str  # the commit every task clones
    dvc_remote: str
    dvc_remote_options: dict[str, Any]  # url and options, as the driver's DVC config has them
    work_dir: str  # on the worker: clones/ and the node's shared DVC cache
    shared_cache: bool = True
    identity: tuple[str, str] = ("pocketquant sweep", "sweep@pocketquant.invalid")
    attempt: int = 1
    keep_clone: bool = False
    threads: int = 0  # OMP_NUM_THREADS for the stages (0: leave unset)
    carry: Carry | None = None  # for an experiment: the upstream task's results
    carry_files: tuple[str, ...] = ()  # for the upstream task: the `cache: false` outputs to hand on


@dataclass
class TaskResult:
    name: str
    ok: bool
    error: str = ""  # the last error line when not ok
    ran: list[str] = field(default_factory=list)  # stages whose command ran here
    restored: list[str] = field(default_factory=list)  # stages checked out from the run-cache/remote
    unchanged: list[str] = field(default_factory=list)  # stages DVC found up to date in the clone
    log: str = ""
    seconds: float = 0.0
    host: str = ""
    carry: Carry | None = None
    clone: str = ""


class TaskFailed(Exception):
    """A command of the task failed; the message is its last error line."""


class OutputWatcher:
    """Follows the output of `dvc` and of stagewise.py: the current stage, the stages that ran and
    those restored from the cache, the last error line, and (bounded) the log."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.stage = ""
        self.ran: list[str] = []
        self.unchanged: list[str] = []
        self._restored: list[str] = []
        self.errors: list[str] = []
        self.tail: list[str] = []
        self._size = 0

    def feed(self, line: str) -> None:
        line = line.rstrip("\n")
        self._keep(line)
        text = line.strip()
        quoted = text.split("'")[1] if text.count("'") >= 2 else ""
        if text.startswith(f"{MARK} stage "):
            self._set_stage(text.split()[-1])
        elif text.startswith("Running stage '"):
            _add(self.ran, quoted)
            self._set_stage(quoted)
        elif text.startswith("Stage '") and "is cached" in text:  # restored from the run-cache
            _add(self._restored, quoted)
        elif text.startswith("Pulling data for stage:"):  # unchanged, outputs fetched from the remote
            _add(self._restored, quoted)
        elif text.startswith("Stage '") and "didn't change" in text:
            _add(self.unchanged, quoted)
        elif text.startswith("stage ") and ": error:" in text:  # pocketquant stages' own one-liner
            self.errors.append(text)
        elif text.startswith("ERROR"):
            self.errors.append(text)

    @property
    def restored(self) -> list[str]:
        """Stages checked out from the cache or the remote (a failed pull then runs the stage)."""
        return [s for s in self._restored if s not in self.ran]

    def last_error(self, fallback: str) -> str:
        """Prefer a stage's own message (it names the file or key) over DVC's summary."""
        own = [e for e in self.errors if e.startswith("stage ")]
        if own:
            return own[-1]
        if self.errors:
            return self.errors[-1]
        lines = [line for line in self.tail if line.strip()]
        return lines[-1].strip() if lines else fallback

    def log(self) -> str:
        return "\n".join(self.tail)

    def _set_stage(self, name: str) -> None:
        if name != self.stage:
            self.stage = name
            self.report({"stage": name})

    def _keep(self, line: str) -> None:
        self.tail.append(line)
        self._size += len(line) + 1
        while self._size > LOG_LIMIT and len(self.tail) > 1:
            self._size -= len(self.tail.pop(0)) + 1


def _add(names: list[str], name: str) -> None:
    if name and name not in names:
        names.append(name)


def run_task(spec: TaskSpec, report: Report) -> TaskResult:
    """Run one task to the end; never raises for a failing command (the result says ok=False)."""
    t0 = time.monotonic()
    host = socket.gethostname()
    watcher = OutputWatcher(report)
    clone = Path(os.path.expanduser(spec.work_dir)) / "clones" / spec.sweep / f"{spec.name}.{spec.attempt}"
    report({"state": "running", "phase": "clone", "host": host, "pid": os.getpid(), "attempt": spec.attempt})
    result = TaskResult(name=spec.name, ok=False, host=host, clone=str(clone))
    try:
        _prepare_clone(spec, clone, watcher)
        _apply_carry(clone, spec.carry or Carry(lock={}, files={}))
        report({"phase": "stages"})
        stagewise = [sys.executable, *_INSTALLED, "-m", "pocketquant.sweep.stagewise", *spec.stages]
        _run(stagewise + ["--remote", spec.dvc_remote], clone, watcher, spec)
        if spec.kind == UPSTREAM:
            result.carry = _collect_carry(clone, spec)
        else:
            report({"phase": "dvc exp run", "stage": ""})
            sets = [arg for p in spec.set_params for arg in ("-S", p)]
            _run(_dvc("exp", "run", "--pull", "-n", spec.name, *sets), clone, watcher, spec)
            report({"phase": "dvc exp push"})
            force = ["--force"] if spec.attempt > 1 else []  # an earlier attempt may have pushed it
            _run(
                _dvc("exp", "push", *force, "-r", spec.dvc_remote, "origin", spec.name), clone, watcher, spec
            )
        result.ok = True
    except TaskFailed as exc:
        result.error = watcher.last_error(str(exc))
    except Exception as exc:  # noqa: BLE001 - whatever broke, the driver gets it as this task's error
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.ran, result.restored = watcher.ran, watcher.restored
        result.unchanged = [s for s in watcher.unchanged if s not in watcher.ran + watcher.restored]
        result.log = watcher.log()
        result.seconds = time.monotonic() - t0
        if not spec.keep_clone:
            shutil.rmtree(clone, ignore_errors=True)
    return result


def _prepare_clone(spec: TaskSpec, clone: Path, watcher: OutputWatcher) -> None:
    for attempt in range(1, spec.attempt + 1):  # earlier attempts whose worker died left theirs
        shutil.rmtree(clone.parent / f"{spec.name}.{attempt}", ignore_errors=True)
    clone.parent.mkdir(parents=True, exist_ok=True)
    _run(["git", "clone", "--quiet", "--no-checkout", spec.git_url, str(clone)], clone.parent, watcher, spec)
    _run(["git", "checkout", "--quiet", "--detach", spec.rev], clone, watcher, spec)
    _run(["git", "config", "user.name", spec.identity[0]], clone, watcher, spec)
    _run(["git", "config", "user.email", spec.identity[1]], clone, watcher, spec)
    _configure_dvc(clone, spec)
    for path, text in spec.files.items():
        (clone / path).write_text(text, encoding="utf-8")


def _configure_dvc(clone: Path, spec: TaskSpec) -> None:
    """The driver's DVC remote as this clone's default, and the node's shared cache (config.local)."""
    from dvc.config import Config

    config = Config(dvc_dir=str(clone / ".dvc"))
    with config.edit("local") as local:
        local["remote"][spec.dvc_remote] = dict(spec.dvc_remote_options)
        local["core"]["remote"] = spec.dvc_remote
        if spec.shared_cache:
            cache = Path(os.path.expanduser(spec.work_dir)) / "cache"
            cache.mkdir(parents=True, exist_ok=True)
            local["cache"]["dir"] = str(cache)


def _apply_carry(clone: Path, carry: Carry) -> None:
    """dvc.lock with only the carried entries, and the carried files in place.

    The committed lock records outputs of the default run that nobody may have pushed: DVC would
    try to pull them, fail, and recompute the stage, never asking the run-cache. Without an entry,
    a stage is restored through the run-cache from whoever ran it with these inputs, or run.
    """
    lock = {"schema": "2.0", "stages": dict(carry.lock)}
    (clone / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False), encoding="utf-8")
    for path, data in carry.files.items():
        target = clone / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _collect_carry(clone: Path, spec: TaskSpec) -> Carry:
    lock = yaml.safe_load((clone / "dvc.lock").read_text(encoding="utf-8")) or {}
    stages = lock.get("stages") or {}
    # bytes: the carried outputs include binary ones (per-token scores in safetensors)
    files = {p: (clone / p).read_bytes() for p in spec.carry_files if (clone / p).is_file()}
    return Carry(lock={name: stages[name] for name in spec.stages if name in stages}, files=files)


def _dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def _env(spec: TaskSpec) -> dict[str, str]:
    env = dict(os.environ)
    bin_dir = os.path.dirname(sys.executable)  # stage commands call `python`: this environment's
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        GIT_TERMINAL_PROMPT="0",
        PYTHONUNBUFFERED="1",
    )
    if spec.threads:
        env["OMP_NUM_THREADS"] = str(spec.threads)
    return env


def _run(cmd: Iterable[str], cwd: Path, watcher: OutputWatcher, spec: TaskSpec) -> None:
    cmd = list(cmd)
    watcher.feed(f"$ {' '.join(cmd)}")
    proc = subprocess.Popen(
        [sys.executable, "-c", _PDEATHSIG_SHIM, *cmd],
        cwd=cwd,
        env=_env(spec),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # universal newlines: progress bars' \r updates arrive as lines too
        watcher.feed(line)
    if proc.wait() != 0:
        raise TaskFailed(f"{' '.join(cmd[:4])} ... exited with {proc.returncode}")
