"""Live sweep progress on the driver: the sweep's bar (cells done / failed / running, elapsed,
ETA once it can be estimated) and, for each running cell, its phase (engine starting, idle
baseline, warm-up, measuring k of N, draining) and how long it has been in it.

On a terminal this is a rich live display; otherwise (CI logs, ``ray job logs``) one plain line
per phase change of a cell and one per finished cell, so logs stay readable. Never prints
``nan``: an ETA is shown only once a cell has finished.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Dict, Optional, Tuple

from orchestrator.core.phases import CellPhase

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class SweepProgress:
    def __init__(self, total: int, enabled: bool = True, tty: Optional[bool] = None, out=None):
        self.total = total
        self.enabled = enabled
        self.out = out or sys.stdout
        self.counts: Counter = Counter()
        self.running = 0
        self.t0 = time.monotonic()
        # cell_id -> (label, CellPhase, monotonic time of the phase change, s)
        self.phases: Dict[str, Tuple[str, CellPhase, float]] = {}
        self._rich: Optional["Progress"] = None
        self._tasks: Dict[str, "TaskID"] = {}
        if enabled and (self.out.isatty() if tty is None else tty):
            self._start_rich()

    def _start_rich(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._rich = rich = Progress(
            TextColumn("{task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        )
        self._sweep = rich.add_task("[bold]cells", total=self.total, detail="")
        rich.start()

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def detail(self) -> str:
        failed = self.done - self.counts.get("ok", 0)
        return f"ok {self.counts.get('ok', 0)}  failed {failed}  running {self.running}"

    def eta(self) -> str:
        """The remaining time at the mean pace so far; '' until a cell has finished."""
        if not self.done or self.done >= self.total:
            return ""
        return _clock((time.monotonic() - self.t0) / self.done * (self.total - self.done))

    def line(self) -> str:
        eta = self.eta()
        return (f"[{self.done}/{self.total} cells] {self.detail()}  elapsed {_clock(time.monotonic() - self.t0)}"
                + (f"  ETA {eta}" if eta else ""))

    # ------------------------------------------------------------------ events
    def update(self, status: Optional[str] = None, running: Optional[int] = None, label: str = "",
               cell_id: str = "") -> None:
        """A cell finished with ``status`` (and/or the running count changed)."""
        if running is not None:
            self.running = running
        if status is not None:
            self.counts[status] += 1
            self.running = max(0, self.running - 1) if running is None else self.running
            self._cell_done(cell_id)
        if self._rich is not None:
            self._rich.update(self._sweep, completed=self.done, detail=self.detail())
        elif self.enabled and status is not None:
            self._print(f"{self.line()}  {label + ': ' if label else ''}{status}")

    def phase(self, label: str, msg: CellPhase) -> None:
        """A running cell's phase (or its count in the phase) changed."""
        prev = self.phases.get(msg.cell_id)
        changed = prev is None or prev[1].phase != msg.phase
        since = prev[2] if prev is not None and not changed else time.monotonic()
        self.phases[msg.cell_id] = (label, msg, since)
        if self._rich is not None:
            self._show_cell(self._rich, msg.cell_id)
        elif self.enabled and changed:
            self._print(f"  {label}: {msg.text()}")

    def _show_cell(self, rich: "Progress", cell_id: str) -> None:
        label, msg, _ = self.phases[cell_id]
        task = self._tasks.get(cell_id)
        if task is None:
            task = self._tasks[cell_id] = rich.add_task(f"  {label}", total=None, detail="")
        rich.update(task, detail=msg.text(), total=msg.total, completed=msg.done or 0)

    def _cell_done(self, cell_id: str) -> None:
        self.phases.pop(cell_id, None)
        task = self._tasks.pop(cell_id, None)
        if task is not None and self._rich is not None:
            self._rich.remove_task(task)

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
