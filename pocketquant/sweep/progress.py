"""What the driver knows about each task, shown with rich and written to status.json as it changes.

States: queued (waiting for a worker, or for the shared upstream stages), running (with the phase
and the current stage), retrying (its worker died; it is queued again), done, failed (with its last
error line). A terminal gets a live table; anything else (a log, CI) gets one line per change.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pocketquant.atomic import atomic_path

QUEUED, RUNNING, RETRYING, DONE, FAILED = "queued", "running", "retrying", "done", "failed"
_STYLE = {QUEUED: "dim", RUNNING: "cyan", RETRYING: "yellow", DONE: "green", FAILED: "bold red"}


@dataclass
class Attempt:
    attempt: int
    host: str = ""
    node: str = ""  # Ray node id
    pid: int | None = None
    ok: bool | None = None
    error: str = ""
    ran: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Row:
    name: str
    label: str  # the overrides, or "shared stages" for the upstream task
    kind: str
    state: str = QUEUED
    phase: str = ""
    stage: str = ""
    error: str = ""
    started: float | None = None
    finished: float | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.attempts[-1].host if self.attempts else ""

    def elapsed(self, now: float) -> str:
        if self.started is None:
            return ""
        return f"{(self.finished or now) - self.started:.0f}s"

    def activity(self) -> str:
        if self.state in (RUNNING,):
            return f"{self.phase}: {self.stage}" if self.stage else self.phase
        if self.state == FAILED:
            return self.error
        if self.state == RETRYING:
            return f"retry {len(self.attempts) + 1} after: {self.error}"
        return ""


class Progress:
    """The rows, their display and status.json; `apply` takes the events tasks report."""

    def __init__(self, rows: list[Row], status_file: Path, console: Console) -> None:
        self.rows = {r.name: r for r in rows}
        self.status_file = status_file
        self.console = console
        self.live: Live | None = None
        self._last_line: dict[str, str] = {}

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            self.live = Live(self.table(), console=self.console, refresh_per_second=2, transient=False)
            self.live.__enter__()
        self.changed()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self.table())
            self.live.__exit__(None, None, None)
        else:
            self.console.print(self.table())

    def apply(self, name: str, event: dict[str, Any]) -> None:
        """An event from a running task (only the current attempt's are passed in)."""
        row = self.rows[name]
        if row.state in (DONE, FAILED):
            return
        if event.get("state") == RUNNING and row.state != RUNNING:
            row.state = RUNNING
            row.started = row.started or time.time()
            attempt = Attempt(attempt=int(event.get("attempt", len(row.attempts) + 1)))
            if not row.attempts or row.attempts[-1].attempt != attempt.attempt:
                row.attempts.append(attempt)
        if row.attempts:
            current = row.attempts[-1]
            current.host = event.get("host", current.host)
            current.node = event.get("node", current.node)
            current.pid = event.get("pid", current.pid)
        row.phase = event.get("phase", row.phase)
        row.stage = event.get("stage", row.stage)
        self.changed()

    def finish(self, name: str, attempt: Attempt, state: str, error: str = "") -> None:
        row = self.rows[name]
        if not row.attempts or row.attempts[-1].attempt != attempt.attempt:
            row.attempts.append(attempt)
        else:  # the final word on the attempt; keep where it ran, as its events said
            seen = row.attempts[-1]
            attempt.host, attempt.node, attempt.pid = attempt.host or seen.host, seen.node, seen.pid
            row.attempts[-1] = attempt
        row.state, row.error, row.phase, row.stage = state, error, "", ""
        if state in (DONE, FAILED):
            row.finished = time.time()
        self.changed()

    def set_state(self, name: str, state: str, error: str = "", phase: str = "") -> None:
        row = self.rows[name]
        row.state, row.error, row.phase, row.stage = state, error, phase, ""
        if state in (DONE, FAILED):
            row.finished = time.time()
        self.changed()

    def changed(self) -> None:
        self._write_status()
        if self.live is not None:
            self.live.update(self.table())
            return
        for row in self.rows.values():  # no terminal: one line per change of a row
            line = f"{row.state}" + (f" ({row.activity()})" if row.activity() else "")
            if self._last_line.get(row.name) != line:
                self._last_line[row.name] = line
                host = f" on {row.host}" if row.host and row.state == RUNNING else ""
                text = f"[sweep] {row.name} [{row.label}]{host}: {line}"
                self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def table(self) -> Table:
        now = time.time()
        table = Table(title="pocketquant sweep", expand=False)
        for column in ("experiment", "overrides", "state", "stage / last error", "node", "time"):
            table.add_column(column, overflow="fold")
        for row in self.rows.values():
            cells = (row.name, row.label, row.state, row.activity(), row.host, row.elapsed(now))
            table.add_row(*(Text(c, style=_STYLE[row.state] if c is row.state else "") for c in cells))
        return table

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.rows.values()]

    def _write_status(self) -> None:
        with atomic_path(self.status_file) as tmp:
            tmp.write_text(json.dumps({"rows": self.to_json()}, indent=1), encoding="utf-8")
