"""The worker that runs cells: check GPU -> start engine -> idle baseline -> measured window with
the sampler on -> Arrow tables. Cells that share an engine (same engine arguments, e.g. offline
batch sizes under vLLM) run back to back on one engine start.

Everything a cell can fail with becomes a status row here (``errors.classify``); only a worker
that dies loses its cells, and the driver records those as ``worker_lost``. ``run_unit`` is the
body of a Ray task: a streaming generator of ``messages.TaskStarted`` then one
``messages.CellResult`` per cell.
"""
from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
import traceback
from typing import TYPE_CHECKING, Dict, Iterator, Optional, Tuple

from orchestrator.client import metrics
from orchestrator.workloads import plan_for
from orchestrator.core.logs import set_log_level
from orchestrator.core.messages import CellResult, TaskStarted, UnitSpec
from orchestrator.core.phases import Phase, PhaseReporter
from orchestrator.energy import sampler_for
from orchestrator.energy.base import idle_power_from, idle_power_per_gpu, window_energy
from orchestrator.engines import launched_engine
from orchestrator.errors import Status, classify, error_text
from orchestrator.store.cell_tables import (
    WORKER_COLUMNS,
    config_columns,
    extra_columns,
    status_tables,
    with_stop_report,
)
from orchestrator.store.schema import SHORT_WINDOW, WINDOW_S
from orchestrator.worker.reaper import Reaper
from orchestrator.worker.step_tables import cell_steps, step_run_columns
from orchestrator.worker.tables import measured_tables, per_unit_energy

if TYPE_CHECKING:
    from orchestrator.core.cell import Cell
    from orchestrator.engines.base import Engine

log = logging.getLogger(__name__)


def worker_context() -> Dict:
    """Where this task runs: node, host, Ray-assigned GPUs and resources."""
    ctx = {"host": socket.gethostname(), "node_id": None, "ray_gpu_ids": "[]", "assigned_resources": "{}"}
    try:
        import ray

        if ray.is_initialized():
            rc = ray.get_runtime_context()
            ctx["node_id"] = rc.get_node_id()
            ctx["assigned_resources"] = json.dumps(rc.get_assigned_resources(), sort_keys=True)
            ctx["ray_gpu_ids"] = json.dumps([str(g) for g in ray.get_gpu_ids()])
    except Exception:  # outside Ray (direct call in a test) there is no context
        pass
    return ctx


class UnitRunner:
    """Runs the cells of one Ray task on one engine start."""

    def __init__(self, unit: UnitSpec):
        self.unit = unit
        self.ctx = worker_context()
        self.idle_w: Optional[float] = None
        self.idle_per_gpu: Optional[Dict] = None  # GPU UUID -> idle W, where a cell spans several GPUs
        self._idle_bounds: Optional[Tuple[int, int]] = None  # monotonic ns of the idle baseline's sit
        self.report = PhaseReporter(unit.phase_board)

    def results(self) -> Iterator[CellResult]:
        """One result per cell, each as soon as it exists (so a later failure loses nothing
        already measured); the last one after ``engine.stop()``, carrying its stop report."""
        cells = self.unit.cells
        first = cells[0]
        log.debug("unit %s (attempt %d): %d cell(s) on one %s start", self.unit.key, self.unit.attempt, len(cells),
                  first.engine)
        engine = launched_engine(first)(first.config, self.unit.max_batch_size)
        engine.progress = self.report.for_cell(first.cell_id)
        # a force-cancelled (killed) worker leaves no engine process behind
        with Reaper() if engine.starts_processes else contextlib.nullcontext():
            yield from self._on_engine(engine, cells)

    def _on_engine(self, engine: "Engine", cells) -> Iterator[CellResult]:
        self.report(Phase.engine_starting)
        t_start = time.monotonic()
        try:
            engine.start()
        except Exception as exc:  # a failed start fails every cell of the unit
            status, retryable = classify(exc)
            engine.stop()
            yield from (self._failure(c, status, retryable, exc) for c in cells)
            return
        start_s = time.monotonic() - t_start
        last: Optional[CellResult] = None
        try:
            for c in cells:
                if last is not None:
                    yield last
                self.report.for_cell(c.cell_id)
                try:
                    last = self._measure(engine, c, start_s)
                except Exception as exc:
                    status, retryable = classify(exc)
                    last = self._failure(c, status, retryable, exc)
        finally:
            self.report(Phase.stopping)
            engine.stop()
        if last is None:  # (a unit has at least one cell)
            return
        report = engine.stop_report()
        if report and last.status is Status.ok:
            last = CellResult(last.cell_id, last.status, last.retryable, with_stop_report(last.tables, report))
        yield last

    def _failure(self, cell: "Cell", status: Status, retryable: bool, exc: BaseException) -> CellResult:
        text = error_text(exc)  # its first line explains the failure
        if status is Status.engine_error:
            text += "\n" + "".join(traceback.format_exception(exc))[-4000:]
        tables = status_tables(cell, self.unit.sweep, status, text, attempts=self.unit.attempt,
                               extra={k: self.ctx[k] for k in WORKER_COLUMNS})
        return CellResult(cell.cell_id, status, retryable, tables)

    def _idle_baseline(self, engine: "Engine", sampler, cell: "Cell") -> None:
        """The idle draw, once per engine start: known to the sampler (a model), or measured by
        sitting ``sampler.idle_baseline_s`` with the engine loaded and no requests."""
        if self.idle_w is not None:
            return
        self.idle_w = sampler.known_idle_power_w()
        if self.idle_w is None and sampler.measures_idle_baseline:
            self.report(Phase.idle_baseline)
            a = time.monotonic_ns()
            time.sleep(cell.config.sampler.idle_baseline_s)
            self._idle_bounds = (a, time.monotonic_ns())

    def _measure(self, engine: "Engine", cell: "Cell", engine_start_s: float) -> CellResult:
        cfg = cell.config
        started, t_wall = time.time(), time.monotonic()
        plan = plan_for(cfg, cell.cell_id)
        sampler = sampler_for(cfg.sampler, engine)
        self._idle_bounds = None
        sampler.start()
        try:
            self._idle_baseline(engine, sampler, cell)
            engine.cell_config = cfg
            wr = engine.run(plan)
            # the trace must reach past the window's end (open loop can end early)
            time.sleep(max(0.0, wr.window_end_s + 2 * cfg.sampler.interval_s - time.monotonic()))
        except BaseException:
            try:  # the engine's error is the one to report, not a sampler's on the way out
                sampler.stop()
            except Exception:
                pass
            raise
        trace = sampler.stop()
        if self._idle_bounds is not None:
            self.idle_w = idle_power_from(trace, *self._idle_bounds)
            self.idle_per_gpu = idle_power_per_gpu(trace, *self._idle_bounds)
        t0_ns, t1_ns = int(wr.window_start_s * 1e9), int(wr.window_end_s * 1e9)
        row = config_columns(cell, self.unit.sweep)
        row.update(metrics.summarize(wr, plan.offered_rps, plan.ignore_eos))
        row["workload_notes"] = json.dumps(plan.notes, sort_keys=True) if plan.notes else None
        row.update(window_energy(trace, t0_ns, t1_ns, self.idle_w if trace.source != "none" else None,
                                 cfg.sampler.mismatch_tolerance))
        row["idle_power_per_gpu_w"] = json.dumps(self.idle_per_gpu) if self.idle_per_gpu else None
        per_unit_energy(row)
        steps, att = cell_steps(cfg, wr, trace, row, self.idle_w if trace.source != "none" else None)
        row.update(step_run_columns(steps, att))
        row["min_window_s"] = plan.min_window_s  # offline only (0 for open/closed loop, whose window is duration_s)
        row[SHORT_WINDOW] = bool(row[SHORT_WINDOW]) or row[WINDOW_S] < plan.min_window_s
        row.update({k: self.ctx[k] for k in WORKER_COLUMNS})
        row.update(
            status=Status.ok.value, error="", attempts=self.unit.attempt, engine=cell.engine,
            engine_reason=cell.engine_reason, gpu_name=trace.gpu_name or None,
            gpu_uuid=trace.gpu_uuid or engine.gpu_uuid(), engine_versions=json.dumps(engine.versions(), sort_keys=True),
            engine_start_s=engine_start_s, engine_shared_cells=len(self.unit.cells),
            engine_extra=json.dumps(wr.extra, sort_keys=True, default=str),
            cell_wall_s=time.monotonic() - t_wall, started_unix_s=started, finished_unix_s=time.time(),
        )
        row.update(extra_columns(wr.extra))
        status = Status.ok
        failure = wr.failure or metrics.empty_window_failure(wr.records)
        if failure is not None:  # failed during the window: a status, with what was observed
            status = Status(failure[0])
            row.update(status=status.value, error=failure[1])
        tables = measured_tables(row, cell.cell_id, wr.records, trace, wr.window_start_s, wr.window_end_s, steps, att)
        return CellResult(cell.cell_id, status, False, tables)


def run_unit(unit: UnitSpec):
    """Body of a Ray task (a streaming generator): ``TaskStarted``, then one ``CellResult`` per cell."""
    set_log_level(unit.log_level)
    yield TaskStarted(time.time())
    yield from UnitRunner(unit).results()
