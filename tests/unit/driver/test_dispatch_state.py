"""The dispatcher's decisions without Ray (``dispatch_state.TaskState``): retries, what a task that
raised leaves, the deadline, the unschedulable rule, and exactly one row per cell in every path."""
from __future__ import annotations

import dataclasses
import random
from collections import Counter
from typing import Dict, List

import pytest

from orchestrator.core.messages import CellResult, UnitSpec
from orchestrator.driver import grid
from orchestrator.driver.dispatch_state import (
    NO_RESULT,
    Cancel,
    HoldForRetry,
    Ignore,
    Keep,
    Raised,
    Record,
    TaskLimits,
    TaskOutcome,
    TaskState,
)
from orchestrator.errors import Status
from orchestrator.store.cell_tables import status_tables

RESOURCES = {"CPU": 1.0, "GPU": 1.0, "accelerator_type:H100": 0.001}
CELLS = tuple(grid.cells([grid.config_of(["engine=simulated", "workload=offline", f"batch_size={b}"])
                          for b in range(1, 7)], {}))


def _unit(n_cells: int = 3, attempt: int = 1) -> UnitSpec:
    return UnitSpec(key="u", engine="simulated", engine_reason="why", sweep="s", cells=CELLS[:n_cells],
                    on_gpu=True, attempt=attempt, node_id="node-7", log_level="DEBUG")


def _state(unit: UnitSpec, max_attempts: int = 2, cell_timeout_s: float = 10.0,
           pending_timeout_s: float = 5.0) -> TaskState:
    return TaskState(unit, dict(RESOURCES), TaskLimits(max_attempts, cell_timeout_s, pending_timeout_s))


def _result(i: int, status: Status = Status.engine_error, retryable: bool = True) -> CellResult:
    cell = CELLS[i]
    return CellResult(cell.cell_id, status, retryable, status_tables(cell, "s", status, f"failure of {i}"))


def _ids(cells) -> List[str]:
    return [c.cell_id for c in cells]


def test_limits_of_the_dispatch_config():
    from orchestrator.config.groups import DispatchConfig

    limits = TaskLimits.of(DispatchConfig(max_retries=2, cell_timeout_s=8, pending_timeout_s=4.5))
    assert limits == TaskLimits(3, 8, 4.5)


def test_retryable_failure_is_held_then_retried_with_every_field_of_the_unit():
    s = _state(_unit())
    assert s.result(_result(0)) == HoldForRetry(CELLS[0].cell_id)
    ok = _result(1, Status.ok, retryable=False)
    assert s.result(ok) == Keep(ok)
    kept_fail = _result(2, Status.oom, retryable=False)
    assert s.result(kept_fail) == Keep(kept_fail)
    out = s.finished()
    assert out.records == () and out.kept == ()
    retry = out.retry
    assert retry == dataclasses.replace(_unit(), key="u#2", cells=(CELLS[0],), attempt=2)
    assert (retry.engine, retry.engine_reason, retry.sweep, retry.on_gpu, retry.node_id, retry.log_level) == \
        ("simulated", "why", "s", True, "node-7", "DEBUG")


def test_retries_until_out_of_attempts_then_keeps_the_failure():
    unit, decisions = _unit(1), []
    for _ in range(5):
        s = _state(unit, max_attempts=3)
        decisions.append(s.result(_result(0)))
        unit = s.finished().retry
        if unit is None:
            break
    assert [type(d) for d in decisions] == [HoldForRetry, HoldForRetry, Keep]
    assert decisions[-1].result.status is Status.engine_error


def test_on_the_last_attempt_a_retryable_failure_is_kept():
    s = _state(_unit(1, attempt=2), max_attempts=2)
    r = _result(0)
    assert s.result(r) == Keep(r)
    assert s.finished() == TaskOutcome()


def test_a_second_result_or_a_foreign_cell_is_ignored():
    s = _state(_unit(2))
    ok = _result(0, Status.ok, retryable=False)
    assert s.result(ok) == Keep(ok)
    assert isinstance(s.result(ok), Ignore)
    assert isinstance(s.result(_result(2, Status.ok, False)), Ignore)
    assert _ids(s.unreported()) == [CELLS[1].cell_id]


def test_a_task_that_ends_without_reporting_a_cell_records_it():
    s = _state(_unit(2))
    s.result(_result(0, Status.ok, False))
    assert s.finished().records == (Record((CELLS[1],), Status.engine_error, NO_RESULT, 1),)


def test_cancelled_at_the_deadline_keeps_cells_awaiting_a_retry_with_a_note():
    s = _state(_unit(3), cell_timeout_s=2)
    s.started_now(50.0)
    held = _result(0)
    assert s.result(held) == HoldForRetry(held.cell_id)
    s.result(_result(1, Status.ok, False))
    cancel = s.overdue(56.0)
    reason = "cancelled after 2 s per cell"
    assert cancel == Cancel(Status.timeout, reason, force=True)
    out = s.raised(Raised.task_error, "the kill surfaced as a task error", "RayTaskError")  # ours: cancelled
    assert out.records == (Record((CELLS[2],), Status.timeout, reason, 1),)
    assert len(out.kept) == 1 and out.kept[0] is held and out.retry is None
    assert out.note == f"its retry was not run: the task was cancelled ({reason})"


def test_cancelled_by_someone_else_is_a_timeout_with_the_default_reason():
    s = _state(_unit(1), cell_timeout_s=7.5)
    out = s.raised(Raised.cancelled, "TaskCancelledError", "TaskCancelledError")
    assert out.records == (Record((CELLS[0],), Status.timeout, "cancelled after 7.5 s per cell", 1),)


def test_task_error_retries_unreported_and_held_cells_as_a_new_unit():
    s = _state(_unit(3))
    s.result(_result(1))  # held
    s.result(_result(2, Status.ok, False))
    out = s.raised(Raised.task_error, "boom", "RayTaskError")
    assert out.records == () and out.kept == ()
    assert out.retry is not None and _ids(out.retry.cells) == _ids([CELLS[0], CELLS[1]])
    assert out.retry.attempt == 2 and out.retry.key == "u#2"


def test_task_error_out_of_attempts_is_engine_error_with_the_errors_tail():
    s = _state(_unit(2, attempt=2), max_attempts=2)
    text = "x" * 5000 + "the end"
    out = s.raised(Raised.task_error, text, "RayTaskError")
    assert out.retry is None
    assert out.records == (Record(CELLS[:2], Status.engine_error, text[-4000:], 2),)


def test_worker_lost_records_unreported_cells_and_retries_held_ones():
    s = _state(_unit(3))
    s.started_now(1.0)
    s.result(_result(0))  # held
    text = "y" * 3000
    out = s.raised(Raised.worker_lost, text, "WorkerCrashedError")
    assert out.records == (Record(CELLS[1:3], Status.worker_lost, f"WorkerCrashedError: {text[-2000:]}", 1),)
    assert out.retry is not None and _ids(out.retry.cells) == [CELLS[0].cell_id] and out.kept == ()


def test_overdue_at_exactly_the_limit_and_not_before():
    s = _state(_unit(2), cell_timeout_s=10)  # 2 cells: 20 s
    assert s.overdue(1000.0) is None  # not started
    s.started_now(100.0)
    assert s.overdue(119.999) is None
    cancel = s.overdue(120.0)
    assert cancel == Cancel(Status.timeout, "cancelled after 10 s per cell", force=True) == s.cancel
    assert s.overdue(500.0) is None  # cancelled once


def test_overdue_counts_from_a_start_at_time_zero():
    s = _state(_unit(1), cell_timeout_s=1)
    s.started_now(0.0)
    assert s.overdue(1.0) is not None


def test_unschedulable_only_after_pending_timeout_of_not_fitting_and_the_timer_resets():
    s = _state(_unit(1), pending_timeout_s=5)
    asked = []

    def describe():
        asked.append(1)
        return "1 live node(s): 2 CPU, 1 GPU T4"

    assert s.placement_check(False, 0.0, describe) is None
    assert s.placement_check(False, 4.9, describe) is None
    assert s.placement_check(True, 5.0, describe) is None  # fits again: the timer resets
    assert s.placement_check(False, 6.0, describe) is None
    assert s.placement_check(False, 10.9, describe) is None and not asked
    cancel = s.placement_check(False, 11.0, describe)
    assert cancel == Cancel(Status.unschedulable,
                            "no node can run it after 5 s (dispatch.pending_timeout_s): it asks for CPU=1, GPU=1, "
                            "accelerator_type:H100=0.001; the cluster offers 1 live node(s): 2 CPU, 1 GPU T4",
                            force=False)
    assert asked == [1] and not s.waiting
    assert s.placement_check(False, 99.0, describe) is None  # cancelled once
    out = s.raised(Raised.cancelled, "", "TaskCancelledError")
    assert out.records == (Record(CELLS[:1], Status.unschedulable, cancel.reason, 1),)


def test_a_started_task_is_never_unschedulable():
    s = _state(_unit(1), pending_timeout_s=1)
    s.placement_check(False, 0.0, lambda: "")
    s.started_now(0.5)
    assert s.placement_check(False, 100.0, lambda: "") is None


# Every path: random event sequences over random units; each cell ends with exactly one row.

def _drive(rng: random.Random, state: TaskState, rows: Counter, now_s: float) -> TaskOutcome:
    """Feed one task random events in the worker's order; count the rows its decisions write."""
    if rng.random() < 0.8:
        state.started_now(now_s)
    cells = list(state.unit.cells)
    rng.shuffle(cells)
    for cell in cells[:rng.randint(0, len(cells))]:
        status = rng.choice([Status.ok, Status.engine_error, Status.oom, Status.gpu_busy])
        r = CellResult(cell.cell_id, status, status is not Status.ok and rng.random() < 0.6, {})
        decision = state.result(r)
        if isinstance(decision, Keep):
            rows[decision.result.cell_id] += 1
        if rng.random() < 0.1:
            assert isinstance(state.result(r), Ignore)
    if rng.random() < 0.3:
        state.overdue(now_s + rng.choice([0.0, 1e9]))
    if rng.random() < 0.3:
        state.placement_check(False, now_s + 1e9, lambda: "nothing")
    end = rng.choice(["finished", Raised.cancelled, Raised.task_error, Raised.worker_lost])
    out = state.finished() if end == "finished" else state.raised(end, "error text", "SomeError")
    rows.update(out.row_cell_ids())
    return out


@pytest.mark.parametrize("seed", range(40))
def test_every_cell_ends_with_exactly_one_row_over_random_event_sequences(seed):
    rng = random.Random(seed)
    cells = list(CELLS)
    rng.shuffle(cells)
    cuts = sorted(rng.sample(range(1, len(cells)), 2))
    groups = [cells[:cuts[0]], cells[cuts[0]:cuts[1]], cells[cuts[1]:]]  # disjoint, none empty
    queue = [dataclasses.replace(_unit(), key=f"u{i}", cells=tuple(g)) for i, g in enumerate(groups)]
    rows: Counter = Counter()
    attempts_seen: Dict[str, int] = {}
    max_attempts = rng.randint(1, 3)
    while queue:
        unit = queue.pop(0)
        attempts_seen[unit.key] = unit.attempt
        out = _drive(rng, _state(unit, max_attempts=max_attempts), rows, now_s=rng.uniform(0, 100))
        if out.retry is not None:
            assert out.retry.attempt == unit.attempt + 1 <= max_attempts
            assert out.retry.node_id == unit.node_id and out.retry.log_level == unit.log_level
            queue.append(out.retry)
    assert rows == Counter({c.cell_id: 1 for c in CELLS})
    assert all(a <= max_attempts for a in attempts_seen.values())
