"""Live sweep progress: cells done / failed / running, elapsed and ETA (rich), or a plain line
every few seconds when the output is not a terminal (CI logs, ``ray job logs``)."""
from __future__ import annotations

import sys
import time
from collections import Counter


class SweepProgress:
    def __init__(self, total: int, enabled: bool = True, plain_every_s: float = 10.0):
        self.total = total
        self.counts: Counter = Counter()
        self.running = 0
        self.t0 = time.monotonic()
        self._plain_every = plain_every_s
        self._last_plain = 0.0
        self._rich = None
        if enabled and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._rich = Progress(
                TextColumn("[bold]cells"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            )
            self._task = self._rich.add_task("sweep", total=total, detail="")
            self._rich.start()
        self.enabled = enabled

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def detail(self) -> str:
        failed = self.done - self.counts.get("ok", 0)
        return f"ok {self.counts.get('ok', 0)}  failed {failed}  running {self.running}"

    def update(self, status: str | None = None, running: int | None = None) -> None:
        if status is not None:
            self.counts[status] += 1
        if running is not None:
            self.running = running
        if self._rich is not None:
            self._rich.update(self._task, completed=self.done, detail=self.detail())
        elif self.enabled and time.monotonic() - self._last_plain >= self._plain_every:
            self._last_plain = time.monotonic()
            print(self.line(), flush=True)

    def line(self) -> str:
        el = time.monotonic() - self.t0
        eta = el / self.done * (self.total - self.done) if self.done else float("nan")
        return f"[{self.done}/{self.total} cells] {self.detail()}  elapsed {el:.0f}s  ETA {eta:.0f}s"

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
