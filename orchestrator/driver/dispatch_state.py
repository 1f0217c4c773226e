"""The dispatcher's decisions for one Ray task, apart from Ray: a pure state machine.

``TaskState`` takes the events of one task — it started, a cell's result arrived, it finished, it
raised, time passed, the cluster was checked — and answers each with a typed decision
(``Keep``, ``HoldForRetry``, ``Ignore``, ``Cancel``, ``TaskOutcome``) that ``dispatch.Dispatcher``
carries out with Ray. Times are seconds on the driver's clock, passed in (never read here), so a
test drives it with plain numbers.

Invariant: a task ends once (``finished`` or ``raised``); by then each of its cells was given
exactly one row — a kept result, a status row (``Record``), a held failure kept with a note — or
went into the retry unit, whose task then owes it its row.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Dict, List, Optional, Tuple, Union

from orchestrator.config.groups import DispatchConfig
from orchestrator.core.cell import Cell
from orchestrator.core.messages import CellResult, UnitSpec
from orchestrator.driver.placement import describe_resources
from orchestrator.errors import Status

ENGINE_ERROR_CHARS = 4000  # the tail of a task's error kept in an engine_error row
WORKER_LOST_CHARS = 2000  # the tail of the error kept in a worker_lost row
NO_RESULT = "the task ended without a result for this cell"


class Raised(Enum):
    """How a task that raised ended (``dispatch`` maps Ray's exceptions to these)."""

    cancelled = "cancelled"  # TaskCancelledError: cancelled (by this driver, for a deadline)
    task_error = "task_error"  # RayTaskError: the task's body raised
    worker_lost = "worker_lost"  # anything else: its worker or node died, after Ray's own retries


@dataclass(frozen=True)
class TaskLimits:
    """``max_attempts``: runs of a cell, the first included (>= 1); ``cell_timeout_s``: a started
    task's time per cell, seconds; ``pending_timeout_s``: how long, seconds, a task not started may
    fit no live node before it is cancelled ``unschedulable``."""

    max_attempts: int
    cell_timeout_s: float
    pending_timeout_s: float

    @classmethod
    def of(cls, dispatch: DispatchConfig) -> TaskLimits:
        """The limits of ``dispatch`` (times as given: they appear in reasons as written)."""
        return cls(1 + int(dispatch.max_retries), dispatch.cell_timeout_s, dispatch.pending_timeout_s)


@dataclass(frozen=True)
class Keep:
    """The cell's result stands: write it as its row."""

    result: CellResult


@dataclass(frozen=True)
class HoldForRetry:
    """A retryable failure with attempts left: held (no row yet) until the task ends."""

    cell_id: str


@dataclass(frozen=True)
class Ignore:
    """A result that must not become a row (its cell already has one, or is not the task's)."""

    cell_id: str
    why: str


@dataclass(frozen=True)
class Cancel:
    """Cancel the task: its cells end ``status`` (timeout | unschedulable) with ``reason``;
    ``force``: it started, so its worker process is killed with it."""

    status: Status
    reason: str
    force: bool


@dataclass(frozen=True)
class Record:
    """A status row for each of ``cells`` (no result of their own): ``status``, ``error``, and
    ``attempts`` (the unit's attempt)."""

    cells: Tuple[Cell, ...]
    status: Status
    error: str
    attempts: int


@dataclass(frozen=True)
class TaskOutcome:
    """What an ended task leaves: status rows (``records``), held failures kept as their own rows
    with ``note`` appended to their error (``kept``), and the unit to submit next (``retry``)."""

    records: Tuple[Record, ...] = ()
    kept: Tuple[CellResult, ...] = ()
    note: str = ""
    retry: Optional[UnitSpec] = None

    def row_cell_ids(self) -> List[str]:
        """The cells this outcome writes a row for (those of ``retry`` get theirs later)."""
        return [c.cell_id for r in self.records for c in r.cells] + [k.cell_id for k in self.kept]


ResultDecision = Union[Keep, HoldForRetry, Ignore]


def retry_unit(unit: UnitSpec, cells: List[Cell]) -> Optional[UnitSpec]:
    """The next attempt of ``unit`` for ``cells`` (None when there are none): every field kept but
    the key (``key#attempt``), the cells, the attempt (+1) and the phase board (the shell sets it)."""
    if not cells:
        return None
    return dataclasses.replace(unit, key=f"{unit.key}#{unit.attempt + 1}", cells=tuple(cells),
                               attempt=unit.attempt + 1, phase_board=None)


@dataclass
class TaskState:
    """One submitted task's state (times: seconds on the driver's clock). ``resources``: what it
    asks of a node (Ray resource names)."""

    unit: UnitSpec
    resources: Dict[str, float]
    limits: TaskLimits
    started_at_s: Optional[float] = None  # when TaskStarted arrived
    infeasible_since_s: Optional[float] = None  # since when no live node has its resources
    cancel: Optional[Cancel] = None  # once cancelled: why
    reported: Dict[str, None] = field(default_factory=dict)  # cells whose result arrived (ordered set)
    held: Dict[str, CellResult] = field(default_factory=dict)  # retryable failures, by cell id

    @property
    def started(self) -> bool:
        return self.started_at_s is not None

    @property
    def waiting(self) -> bool:
        """Not started and not cancelled: subject to the unschedulable rule."""
        return self.started_at_s is None and self.cancel is None

    def unreported(self) -> List[Cell]:
        return [c for c in self.unit.cells if c.cell_id not in self.reported]

    def held_cells(self) -> List[Cell]:
        return [c for c in self.unit.cells if c.cell_id in self.held]

    def started_now(self, now_s: float) -> None:
        """TaskStarted arrived at ``now_s`` (the driver's clock: no skew between nodes in timeouts)."""
        self.started_at_s = now_s

    def result(self, result: CellResult) -> ResultDecision:
        """A cell's result: held for a retry if retryable with attempts left, else kept."""
        if result.cell_id in self.reported:
            return Ignore(result.cell_id, "a second result for this cell")
        if result.cell_id not in {c.cell_id for c in self.unit.cells}:
            return Ignore(result.cell_id, "not a cell of this task")
        self.reported[result.cell_id] = None
        if result.retryable and self.unit.attempt < self.limits.max_attempts:
            self.held[result.cell_id] = result
            return HoldForRetry(result.cell_id)
        return Keep(result)

    def finished(self) -> TaskOutcome:
        """The task ended normally: the held cells are retried; a cell it never reported (the
        worker always reports each) gets an ``engine_error`` row."""
        missing = tuple(self.unreported())
        records = (Record(missing, Status.engine_error, NO_RESULT, self.unit.attempt),) if missing else ()
        return TaskOutcome(records=records, retry=retry_unit(self.unit, self.held_cells()))

    def raised(self, kind: Raised, error_text: str, error_type: str = "") -> TaskOutcome:
        """The task raised (``error_text``: the exception's text, ``error_type``: its class name).
        Cancelled (by us, whatever error the kill surfaced as): its cancel status; held cells keep
        their own failure with a note. Its body raised: the unreported and held cells are retried,
        or ``engine_error`` when out of attempts. Its worker was lost: ``worker_lost`` for the
        unreported cells, the held ones are retried."""
        unit, unreported = self.unit, tuple(self.unreported())
        if self.cancel is not None or kind is Raised.cancelled:
            status = self.cancel.status if self.cancel else Status.timeout
            reason = self.cancel.reason if self.cancel else self._timeout_reason()
            return TaskOutcome(records=self._records(unreported, status, reason), kept=tuple(self.held.values()),
                               note=f"its retry was not run: the task was cancelled ({reason})")
        if kind is Raised.task_error:
            cells = unreported + tuple(self.held_cells())
            if unit.attempt < self.limits.max_attempts:
                return TaskOutcome(retry=retry_unit(unit, list(cells)))
            return TaskOutcome(records=self._records(cells, Status.engine_error, error_text[-ENGINE_ERROR_CHARS:]))
        error = f"{error_type}: {error_text[-WORKER_LOST_CHARS:]}"
        return TaskOutcome(records=self._records(unreported, Status.worker_lost, error),
                           retry=retry_unit(unit, self.held_cells()))

    def overdue(self, now_s: float) -> Optional[Cancel]:
        """Cancel a started task once ``cell_timeout_s`` x its cells have passed since it started
        (at exactly that limit); None before, if not started, or if already cancelled."""
        if self.started_at_s is None or self.cancel is not None:
            return None
        if now_s - self.started_at_s < self.limits.cell_timeout_s * len(self.unit.cells):
            return None
        return self._cancelled(Status.timeout, self._timeout_reason())

    def placement_check(self, fits: bool, now_s: float, describe: Callable[[], str]) -> Optional[Cancel]:
        """The cluster was checked at ``now_s``: ``fits``: some live node has the task's resources.
        A waiting task that fit nowhere since ``pending_timeout_s`` ago is cancelled
        ``unschedulable`` (``describe()``: what the cluster offers, asked only then); fitting
        again resets the timer."""
        if not self.waiting:
            return None
        if fits:
            self.infeasible_since_s = None
            return None
        if self.infeasible_since_s is None:
            self.infeasible_since_s = now_s
        pending_s = self.limits.pending_timeout_s
        if now_s - self.infeasible_since_s < pending_s:
            return None
        return self._cancelled(Status.unschedulable,
                               f"no node can run it after {pending_s:g} s (dispatch.pending_timeout_s): it asks "
                               f"for {describe_resources(self.resources)}; the cluster offers {describe()}")

    def _timeout_reason(self) -> str:
        return f"cancelled after {self.limits.cell_timeout_s} s per cell"

    def _cancelled(self, status: Status, reason: str) -> Cancel:
        self.cancel = Cancel(status, reason, force=self.started)
        return self.cancel

    def _records(self, cells: Tuple[Cell, ...], status: Status, error: str) -> Tuple[Record, ...]:
        return (Record(cells, status, error, self.unit.attempt),) if cells else ()
