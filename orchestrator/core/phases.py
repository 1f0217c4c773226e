"""Live phases of running cells: engines and the worker report them, the driver shows them.

``PhaseReporter`` is what a worker hands its engine (``engine.progress``): calling it with a
``Phase`` (and counts) sends a ``CellPhase`` message to the driver's ``PhaseBoard`` —
a small Ray actor — without waiting (fire and forget; a lost message only delays the display).
A phase change is always sent; counts within a phase at most every ``COUNT_INTERVAL_S``. Measuring
never waits on it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import List, Optional

COUNT_INTERVAL_S = 1.0


class Phase(str, Enum):
    """What a running cell is doing."""

    engine_starting = "engine starting"
    idle_baseline = "idle baseline"
    warmup = "warm-up"
    measuring = "measuring"
    draining = "draining"
    stopping = "stopping engine"


@dataclass(frozen=True)
class CellPhase:
    """A running cell entered ``phase`` (or advanced in it): ``done`` of ``total`` ``unit``
    (requests, batches) when counted; ``t_unix_s`` on the worker's clock."""

    cell_id: str
    phase: Phase
    done: Optional[int] = None
    total: Optional[int] = None
    unit: str = ""
    t_unix_s: float = 0.0

    def text(self) -> str:
        """``measuring 3/8 batches`` / ``engine starting``."""
        if self.done is None:
            return self.phase.value
        total = f"/{self.total}" if self.total is not None else ""
        return f"{self.phase.value} {self.done}{total} {self.unit}".rstrip()


class PhaseBoard:
    """Collects ``CellPhase`` messages from every worker (a Ray actor on the driver's node)."""

    def __init__(self):
        self._messages: List[CellPhase] = []

    def report(self, message: CellPhase) -> None:
        self._messages.append(message)

    def drain(self) -> List[CellPhase]:
        out, self._messages = self._messages, []
        return out


class PhaseReporter:
    """Callable engines use to say what they are doing (see module doc). ``board``: the actor
    handle, or None (nothing is sent: direct calls in tests, benchmarks)."""

    def __init__(self, board=None):
        self.board = board
        self.cell_id = ""
        self._last: Optional[Phase] = None
        self._last_sent_s = 0.0

    def for_cell(self, cell_id: str) -> "PhaseReporter":
        self.cell_id, self._last = cell_id, None
        return self

    def __call__(self, phase: Phase, done: Optional[int] = None, total: Optional[int] = None, unit: str = "") -> None:
        now = time.monotonic()
        if self.board is None or (phase == self._last and now - self._last_sent_s < COUNT_INTERVAL_S):
            return
        self._last, self._last_sent_s = phase, now
        try:
            self.board.report.remote(CellPhase(self.cell_id, phase, done, total, unit, time.time()))
        except Exception:  # the driver went away: the cell carries on
            pass


NO_REPORTER = PhaseReporter(None)


def batch_phase(plan_phase: str) -> Phase:
    """The phase of a static batch of plan phase "warmup" or "measured"."""
    return Phase.warmup if plan_phase == "warmup" else Phase.measuring
