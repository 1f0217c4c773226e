"""Live sweep progress on the driver: the sweep's line (cells done / failed / running, elapsed,
ETA) and, for each running cell, its phase (engine starting, idle baseline, warm-up, measuring
k of N, draining) and how long it has been in it.

On a terminal this is a rich live display drawn to the terminal's width: the sweep's counts,
elapsed time and ETA are never cut (the bar takes what is left, and a cell's label is shortened
first), so it reads at 80 columns. Otherwise (CI logs, ``ray job logs``) one plain line per phase
change of a cell and one per finished cell, so logs stay readable. The ETA comes from
``driver.eta.SweepEta`` (per engine and GPU type) when the runner gives one, else from the mean
pace of the cells finished so far; it is never ``nan``.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Dict, Optional, Tuple

from orchestrator.core.phases import CellPhase
from orchestrator.driver.eta import SweepEta

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class SweepProgress:
    def __init__(self, total: int, enabled: bool = True, tty: Optional[bool] = None, out=None,
                 estimate: Optional[SweepEta] = None, width: Optional[int] = None):
        """``estimate``: the remaining time per engine and GPU type (else the mean pace);
        ``width``: the terminal's columns (default: what rich detects)."""
        self.total = total
        self.enabled = enabled
        self.out = out or sys.stdout
        self.counts: Counter = Counter()
        self.running = 0
        self.t0 = time.monotonic()
        self.estimate = estimate
        self._remaining: Optional[Tuple[float, float]] = None  # (estimated s, when)
        self._note_remaining()
        # cell_id -> (label, CellPhase, monotonic time of the phase change, s)
        self.phases: Dict[str, Tuple[str, CellPhase, float]] = {}
        self._live: Optional["Live"] = None
        if enabled and (self.out.isatty() if tty is None else tty):
            self._start_live(width)

    def _start_live(self, width: Optional[int]) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.out, width=width, force_terminal=True)
        self._live = Live(console=console, get_renderable=self.renderable, refresh_per_second=4, transient=False)
        self._live.start()

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def detail(self) -> str:
        failed = self.done - self.counts.get("ok", 0)
        return f"ok {self.counts.get('ok', 0)}  failed {failed}  running {self.running}"

    def _note_remaining(self) -> None:
        if self.estimate is not None:
            self._remaining = (self.estimate.remaining_s(), time.monotonic())

    def eta(self) -> str:
        """The remaining time (see the module doc); '' when all is done, or, without an
        estimate, until a cell has finished."""
        if self.done >= self.total:
            return ""
        if self._remaining is not None:
            estimated, when = self._remaining
            return _clock(max(0.0, estimated - (time.monotonic() - when)))
        if not self.done:
            return ""
        return _clock((time.monotonic() - self.t0) / self.done * (self.total - self.done))

    def line(self) -> str:
        eta = self.eta()
        return (f"[{self.done}/{self.total} cells] {self.detail()}  elapsed {_clock(time.monotonic() - self.t0)}"
                + (f"  ETA {eta}" if eta else ""))

    def renderable(self) -> "RenderableType":
        """The live display: the sweep's line (all of it, then a bar in what is left), one line
        per running cell (its label shortened to fit)."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text  # labels hold "[...]": never rich markup

        head = Table.grid(expand=True, padding=(0, 1))
        head.add_column(no_wrap=True)
        head.add_column(ratio=1, min_width=0)
        head.add_row(Text(self.line()), ProgressBar(total=max(1, self.total), completed=self.done))
        rows = Table.grid(expand=True, padding=(0, 1))
        rows.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        rows.add_column(no_wrap=True)
        now = time.monotonic()
        for label, msg, since in list(self.phases.values()):  # the display's thread reads it
            rows.add_row(Text(f"  {label}"), Text(f"{msg.text()}  {_clock(now - since)}"))
        return Group(head, rows)

    # ------------------------------------------------------------------ events
    def update(self, status: Optional[str] = None, running: Optional[int] = None, label: str = "",
               cell_id: str = "") -> None:
        """A cell finished with ``status`` (and/or the running count changed)."""
        if running is not None:
            self.running = running
        if status is not None:
            self.counts[status] += 1
            self.running = max(0, self.running - 1) if running is None else self.running
            self.phases.pop(cell_id, None)
            self._note_remaining()
        if self._live is None and self.enabled and status is not None:
            self._print(f"{self.line()}  {label + ': ' if label else ''}{status}")

    def phase(self, label: str, msg: CellPhase) -> None:
        """A running cell's phase (or its count in the phase) changed."""
        prev = self.phases.get(msg.cell_id)
        changed = prev is None or prev[1].phase != msg.phase
        since = prev[2] if prev is not None and not changed else time.monotonic()
        self.phases[msg.cell_id] = (label, msg, since)
        if self._live is None and self.enabled and changed:
            self._print(f"  {label}: {msg.text()}")

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
