"""Ray: connect or start a local cluster, group cells into tasks (placement in ``placement``), submit
each with its resources, follow progress, retry, and hand every result to the store.

Placement: a unit whose engine names the GPUs it measures (``Engine.placement_gpu_uuids``: a
server the orchestrator did not start) runs on the Ray node that holds them (``UnitSpec.node_id``,
a hard node affinity; ``placement.place_by_gpus``). Otherwise a cell whose engine needs a GPU (``GpuUse.required``, or ``optional`` where the
cluster has that type) asks for ``num_gpus=1`` and ``accelerator_type=<gpu>`` (Ray's
``accelerator_type:<T>`` resource), so an H100 cell never lands on a T4 node. Other cells ask
for one CPU, or, with ``dispatch.place_as_gpu``, exactly what a GPU cell would.

Retries: a task whose worker or node dies is retried by Ray (``max_retries``), then recorded
``worker_lost``; a cell that raised an unexpected error is re-submitted by the driver up to
``max_retries`` more times, then kept as ``engine_error``. A task running longer than
``cell_timeout_s`` per cell is cancelled and its cells recorded ``timeout`` (a cell of it that
was awaiting its retry keeps its own failure row). A task that no live node of the cluster can
run (its resources exist nowhere) for ``pending_timeout_s`` is cancelled and its cells recorded
``unschedulable`` with what they asked for and what the cluster offers; a task merely waiting
for a busy GPU waits. Every cell ends with exactly one row.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Mapping, Optional, Set

from orchestrator.config.groups import DispatchConfig
from orchestrator.core.cell import Cell
from orchestrator.core.identity import cell_identity, digest
from orchestrator.core.messages import CellResult, TaskStarted, UnitSpec
from orchestrator.core.phases import PhaseBoard
from orchestrator.driver import placement
from orchestrator.driver.progress import SweepProgress
from orchestrator.engines import cell_engine
from orchestrator.engines.base import GpuUse
from orchestrator.errors import Status
from orchestrator.store.cell_tables import status_tables, with_error_note

log = logging.getLogger(__name__)
PLACEMENT_CHECK_S = 2.0  # how often pending tasks are checked against the cluster's nodes
ResultSink = Callable[[str, Status, Dict], None]


def connect(dispatch: DispatchConfig) -> str:
    """Attach to ``dispatch.address`` / ``RAY_ADDRESS``, else start a local cluster. -> how."""
    import ray

    if ray.is_initialized():
        return "already connected"
    address = dispatch.address or os.environ.get("RAY_ADDRESS")
    kwargs = dict(logging_level="WARNING", log_to_driver=True)
    if dispatch.runtime_env:
        kwargs["runtime_env"] = dict(dispatch.runtime_env)
    if address:
        ray.init(address=address, **kwargs)
        return f"attached to the Ray cluster at {address}"
    # "local": a new cluster even if a stale /tmp/ray/ray_current_cluster names a dead one.
    ray.init(address="local", num_cpus=dispatch.num_cpus, include_dashboard=False, **kwargs)
    return "started a local Ray cluster"


def make_units(cells: List[Cell], sweep: str, offered: Mapping[str, bool],
               share_engines: bool = True, log_level: str = "INFO") -> List[UnitSpec]:
    """Group runnable cells into tasks: cells whose identity differs only in their engine's
    ``shared_axes`` (equal ``Engine.share_key``) share one (``share_engines=False``: one task per
    cell). ``offered[t]``: the cluster has GPUs of type t."""
    groups: Dict[str, List[Cell]] = {}
    for c in cells:
        cls = cell_engine(c)
        share = c.cell_id
        if share_engines and cls.shared_axes:
            share = digest(cls.share_key(cell_identity(c.config, c.engine)))
        groups.setdefault(share, []).append(c)
    units = []
    for key, members in groups.items():
        first = members[0]
        on_gpu = placement.on_gpu(first, offered)
        reason = first.engine_reason
        if cell_engine(first).gpu is GpuUse.optional and not on_gpu:
            gpu_type = first.config.gpu.accelerator_type
            reason = f"the Ray cluster offers no {gpu_type} GPU: {first.engine} runs on the CPU"
        members = [Cell(c.cell_id, c.config, c.engine, reason) for c in members]
        units.append(UnitSpec(key=key, engine=first.engine, engine_reason=reason, sweep=sweep,
                              cells=tuple(members), on_gpu=on_gpu, log_level=log_level))
    return units


@dataclass
class TaskRecord:
    """The driver's record of one submitted task (times: the driver's ``time.time()``)."""

    unit: UnitSpec
    resources: Dict[str, float]
    submitted_at: float = field(default_factory=time.time)
    started_at: Optional[float] = None  # when TaskStarted arrived
    infeasible_since: Optional[float] = None  # since when no live node has its resources
    cancelled: Optional[Status] = None  # timeout | unschedulable, once cancelled for it
    cancel_reason: str = ""
    reported: Set[str] = field(default_factory=set)  # cells whose result arrived
    retry: Dict[str, CellResult] = field(default_factory=dict)  # retryable failures, by cell id

    def unreported(self) -> List[Cell]:
        return [c for c in self.unit.cells if c.cell_id not in self.reported]

    def retry_cells(self) -> List[Cell]:
        return [c for c in self.unit.cells if c.cell_id in self.retry]


@dataclass
class Dispatcher:
    """Submits units, collects results, hands each to ``on_result(cell_id, status, tables)``."""

    dispatch: DispatchConfig
    on_result: ResultSink
    tick: Callable[[], None] = lambda: None  # called on every turn of the loop (claim heartbeat)
    task_fn: Optional[Callable] = None  # a task's body (default: worker.run_unit)
    tasks: Dict = field(default_factory=dict)  # generator -> TaskRecord
    labels: Dict[str, str] = field(default_factory=dict)  # cell_id -> label (progress)
    board: object = None  # the PhaseBoard actor
    _drain: object = None  # its pending drain() call

    def _options(self, unit: UnitSpec) -> Dict:
        opts = {"num_cpus": 1, "max_retries": int(self.dispatch.max_retries), "retry_exceptions": False}
        if unit.on_gpu or self.dispatch.place_as_gpu:
            opts.update(num_gpus=1, accelerator_type=unit.cells[0].config.gpu.accelerator_type)
        if unit.on_gpu:
            # NVML numbers GPUs in PCI-bus order; make CUDA (and Ray's ids) agree (gpuinfo.py).
            opts["runtime_env"] = {"env_vars": {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}}
        if unit.node_id:  # placement by node: the one that holds the GPUs the cells measure
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(unit.node_id, soft=False)
        return opts

    @property
    def max_attempts(self) -> int:
        return 1 + int(self.dispatch.max_retries)

    def run(self, units: List[UnitSpec], progress: SweepProgress) -> None:
        """Submit every unit, then collect until none is pending."""
        import ray

        from orchestrator.worker.unit import run_unit

        run_unit = self.task_fn or run_unit
        remote = ray.remote(run_unit)
        # a fresh process per GPU task: everything it held on the GPU is freed when it exits
        remote_gpu = ray.remote(max_calls=1)(run_unit)
        self.board = ray.remote(num_cpus=0)(PhaseBoard).remote()
        self.labels.update({c.cell_id: c.label() for u in units for c in u.cells})

        def submit(unit: UnitSpec) -> None:
            fn = remote_gpu if unit.on_gpu else remote
            gen = fn.options(**self._options(unit)).remote(replace(unit, phase_board=self.board))
            self.tasks[gen] = TaskRecord(unit, placement.task_resources(unit, self.dispatch.place_as_gpu))

        for u in units:
            submit(u)
        last_check = 0.0
        while self.tasks:
            ready, _ = ray.wait(list(self.tasks), num_returns=min(len(self.tasks), 64), timeout=0.25)
            for gen in ready:
                retry = self._advance(gen, progress)
                if retry is not None:
                    submit(retry)
            self._cancel_overdue()
            if time.time() - last_check >= PLACEMENT_CHECK_S:
                last_check = time.time()
                self._cancel_unschedulable()
            self._show_phases(progress)
            self.tick()
            progress.update(running=sum(len(r.unreported()) for r in self.tasks.values() if r.started_at))
        self._show_phases(progress, wait_s=1.0)

    def _show_phases(self, progress: SweepProgress, wait_s: float = 0.0) -> None:
        """Hand the phase board's new messages to the progress display (never blocks the loop
        longer than ``wait_s``); messages of finished cells are dropped."""
        import ray

        if self._drain is None:
            self._drain = self.board.drain.remote()
        ready, _ = ray.wait([self._drain], timeout=wait_s)
        if not ready:
            return
        try:
            messages = ray.get(self._drain)
        except Exception:  # the board is gone: progress only, the sweep goes on
            messages = []
        self._drain = None
        running = {c.cell_id for r in self.tasks.values() for c in r.unreported()}
        for msg in messages:
            if msg.cell_id in running:
                progress.phase(self.labels.get(msg.cell_id, msg.cell_id), msg)

    def cancel_all(self) -> int:
        """Cancel every task still pending or running (force: the worker process and what it
        started go). -> the number of cells they held."""
        import ray

        n = 0
        for gen, rec in list(self.tasks.items()):
            n += len(rec.unreported())
            try:
                ray.cancel(gen, force=True)
            except Exception:  # already finished
                pass
        self.tasks.clear()
        return n

    def _cancel(self, gen, rec: TaskRecord, status: Status, reason: str) -> None:
        import ray

        rec.cancelled, rec.cancel_reason = status, reason
        ray.cancel(gen, force=rec.started_at is not None)

    def _cancel_overdue(self) -> None:
        now = time.time()
        for gen, rec in self.tasks.items():
            limit = self.dispatch.cell_timeout_s * len(rec.unit.cells)
            if rec.started_at and not rec.cancelled and now - rec.started_at > limit:
                self._cancel(gen, rec, Status.timeout, f"cancelled after {self.dispatch.cell_timeout_s} s per cell")

    def _cancel_unschedulable(self) -> None:
        """Tasks not started whose resources no live node has, for ``pending_timeout_s``."""
        waiting = [(g, r) for g, r in self.tasks.items() if r.started_at is None and not r.cancelled]
        if not waiting:
            return
        nodes, now = placement.live_nodes(), time.time()
        for gen, rec in waiting:
            if placement.fits_somewhere(rec.resources, nodes):
                rec.infeasible_since = None
                continue
            rec.infeasible_since = rec.infeasible_since or now
            if now - rec.infeasible_since >= self.dispatch.pending_timeout_s:
                asked = ", ".join(f"{k}={v:g}" for k, v in sorted(rec.resources.items()))
                self._cancel(gen, rec, Status.unschedulable,
                             f"no node can run it after {self.dispatch.pending_timeout_s:g} s "
                             f"(dispatch.pending_timeout_s): it asks for {asked}; the cluster offers "
                             f"{placement.describe_nodes(nodes)}")

    def _advance(self, gen, progress: SweepProgress) -> Optional[UnitSpec]:
        """Consume the next item of a ready generator; -> a unit to retry, once the task ends."""
        import ray

        rec: TaskRecord = self.tasks[gen]
        try:
            item = ray.get(next(gen))
        except StopIteration:  # the task finished: every cell has reported
            del self.tasks[gen]
            return self._retry_unit(rec.unit, rec.retry_cells())
        except Exception as exc:
            del self.tasks[gen]
            return self._ended_badly(rec, exc, progress)
        if isinstance(item, TaskStarted):
            rec.started_at = time.time()  # the driver's clock: no skew between nodes in timeouts
            return None
        self._collect(rec, item, progress)
        return None

    def _ended_badly(self, rec: TaskRecord, exc: Exception, progress: SweepProgress) -> Optional[UnitSpec]:
        """A task that raised: cancelled by us (timeout, unschedulable: whatever error the kill
        surfaced as), failed in its body (retry or engine_error), or lost its worker."""
        from ray.exceptions import RayTaskError, TaskCancelledError

        if rec.cancelled or isinstance(exc, TaskCancelledError):
            status = rec.cancelled or Status.timeout
            reason = rec.cancel_reason or f"cancelled after {self.dispatch.cell_timeout_s} s per cell"
            self._fail(rec.unit, rec.unreported(), status, reason, progress)
            self._keep_failures(rec, f"its retry was not run: the task was cancelled ({reason})", progress)
            return None
        if isinstance(exc, RayTaskError):
            cells = rec.unreported() + rec.retry_cells()
            if rec.unit.attempt < self.max_attempts:
                return self._retry_unit(rec.unit, cells)
            self._fail(rec.unit, cells, Status.engine_error, str(exc)[-4000:], progress)
            return None
        # worker or node died after Ray's own retries
        self._fail(rec.unit, rec.unreported(), Status.worker_lost, f"{type(exc).__name__}: {str(exc)[-2000:]}",
                   progress)
        return self._retry_unit(rec.unit, rec.retry_cells())

    def _collect(self, rec: TaskRecord, result: CellResult, progress: SweepProgress) -> None:
        rec.reported.add(result.cell_id)
        if result.retryable and rec.unit.attempt < self.max_attempts:
            rec.retry[result.cell_id] = result
            return
        self.on_result(result.cell_id, result.status, result.tables)
        progress.update(status=result.status.value, label=self.labels.get(result.cell_id, ""), cell_id=result.cell_id)

    def _keep_failures(self, rec: TaskRecord, note: str, progress: SweepProgress) -> None:
        """Record the cells that were awaiting a retry with their own failure row (and why the
        retry did not happen)."""
        for cell_id, result in rec.retry.items():
            self.on_result(cell_id, result.status, with_error_note(result.tables, note))
            progress.update(status=result.status.value, label=self.labels.get(cell_id, ""), cell_id=cell_id)
        rec.retry.clear()

    @staticmethod
    def _retry_unit(unit: UnitSpec, cells: List[Cell]) -> Optional[UnitSpec]:
        if not cells:
            return None
        return UnitSpec(key=f"{unit.key}#{unit.attempt + 1}", engine=unit.engine, engine_reason=unit.engine_reason,
                        sweep=unit.sweep, cells=tuple(cells), on_gpu=unit.on_gpu, attempt=unit.attempt + 1,
                        node_id=unit.node_id, log_level=unit.log_level)

    def _fail(self, unit: UnitSpec, cells: List[Cell], status: Status, error: str, progress: SweepProgress) -> None:
        for c in cells:
            self.on_result(c.cell_id, status, status_tables(c, unit.sweep, status, error, attempts=unit.attempt))
            progress.update(status=status.value, label=c.label(), cell_id=c.cell_id)
