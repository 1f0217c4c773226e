"""The static-batch loop every offline engine shares (vLLM's ``LLM.generate``, transformers'
``model.generate``): the same refusal of a plan that is not offline, the plan's ``BatchSchedule``
(every warm-up batch, at least ``num_batches`` measured ones, more until the window reaches
``min_window_s``), the progress it reports, and the window it returns: from the first measured
batch's send to the last measured batch's end, ``time.monotonic()`` seconds. An engine supplies
only how one batch runs (``run_batch(specs) -> (records, send s, end s)``) and what its window's
``extra`` holds."""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

from orchestrator.client.metrics import RequestRecord, WindowRun
from orchestrator.client.workload import BatchSchedule, RequestSpec, WorkloadPlan
from orchestrator.core.phases import PhaseReporter, batch_phase
from orchestrator.errors import CellFailure, Status

BatchRunner = Callable[[List[RequestSpec]], Tuple[Sequence[RequestRecord], float, float]]
"""One static batch: its specs -> (a record per request, send time s, end time s)."""
WindowExtra = Callable[[List[RequestRecord], BatchSchedule], Dict]
"""What the engine adds to the window's ``extra`` once every batch ran."""


def refuse_unless_offline(engine: str, plan: WorkloadPlan) -> None:
    """``CellFailure('unsupported')`` for a plan that is not static batches (never retried)."""
    if not plan.offline:
        raise CellFailure(Status.unsupported, f"engine {engine} runs static batches only (workload.arrival=offline)")


def run_static_batches(engine: str, plan: WorkloadPlan, run_batch: BatchRunner, extra: WindowExtra,
                       progress: PhaseReporter) -> WindowRun:
    """Every static batch of ``plan``, back to back (see module doc)."""
    refuse_unless_offline(engine, plan)
    records: List[RequestRecord] = []
    schedule = plan.schedule()
    for specs in schedule:
        phase, done, total = schedule.step()
        progress(batch_phase(phase), done, total, "batches")
        batch, send_s, end_s = run_batch(specs)
        schedule.ran(send_s, end_s)
        records += batch
    t0, t1 = schedule.window()
    return WindowRun(records, t0, t1, extra=extra(records, schedule), batch_bounds_s=schedule.measured_bounds())
