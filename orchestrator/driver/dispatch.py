"""Ray: connect or start a local cluster, group cells into tasks (placement in ``placement``), submit
each with its resources, follow progress, retry, and hand every result to the store.

Placement: a unit whose engine names the GPUs it measures (``Engine.placement_gpu_uuids``: a
server the orchestrator did not start) runs on the Ray node that holds them (``UnitSpec.node_id``,
a hard node affinity; ``placement.place_by_gpus``). Otherwise a cell whose engine needs a GPU
(``GpuUse.required``, or ``optional`` where the cluster has that type) asks for ``num_gpus=1``
and ``accelerator_type=<gpu>`` (Ray's ``accelerator_type:<T>`` resource), so an H100 cell never
lands on a T4 node. Other cells ask for one CPU, or, with ``dispatch.place_as_gpu``, exactly what a GPU cell would.

Retries: a task whose worker or node dies is retried by Ray (``max_retries``), then recorded
``worker_lost``; a cell that raised an unexpected error is re-submitted by the driver up to
``max_retries`` more times, then kept as ``engine_error``. A task running longer than
``cell_timeout_s`` per cell is cancelled and its cells recorded ``timeout`` (a cell of it that
was awaiting its retry keeps its own failure row). A task that no live node of the cluster can
run (its resources exist nowhere) for ``pending_timeout_s`` is cancelled and its cells recorded
``unschedulable`` with what they asked for and what the cluster offers; a task merely waiting
for a busy GPU waits. Every cell ends with exactly one row. These decisions are made, apart from
Ray, by ``dispatch_state.TaskState`` (one per task); ``Dispatcher`` turns Ray's events into its
events and carries out its decisions.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from orchestrator.config.groups import DispatchConfig
from orchestrator.core.cell import Cell
from orchestrator.core.identity import cell_identity, digest
from orchestrator.core.messages import TaskStarted, UnitSpec
from orchestrator.core.phases import PhaseBoard
from orchestrator.driver import placement
from orchestrator.driver.dispatch_state import Cancel, Ignore, Keep, Raised, TaskLimits, TaskOutcome, TaskState
from orchestrator.driver.progress import SweepProgress
from orchestrator.engines import launched_engine
from orchestrator.engines.base import GpuUse
from orchestrator.errors import Status
from orchestrator.store.cell_tables import status_tables, with_error_note
from orchestrator.worker.unit import run_unit

log = logging.getLogger(__name__)
PLACEMENT_CHECK_S = 2.0  # how often pending tasks are checked against the cluster's nodes
ResultSink = Callable[[str, Status, Dict], None]


def connect(dispatch: DispatchConfig) -> Tuple[str, bool]:
    """Attach to ``dispatch.address`` / ``RAY_ADDRESS``, else start a local cluster. -> (how, in
    one line; True when the cluster is the local one started here: no node will ever join it)."""
    import ray

    if ray.is_initialized():
        return "already connected", False
    address = dispatch.address or os.environ.get("RAY_ADDRESS")
    kwargs: Dict[str, Any] = dict(logging_level="WARNING", log_to_driver=True)
    if dispatch.runtime_env:
        kwargs["runtime_env"] = dict(dispatch.runtime_env)
    if address:
        ray.init(address=address, **kwargs)
        return f"attached to the Ray cluster at {address}", False
    # "local": a new cluster even if a stale /tmp/ray/ray_current_cluster names a dead one.
    ray.init(address="local", num_cpus=dispatch.num_cpus, include_dashboard=False, **kwargs)
    return "started a local Ray cluster", True


def engine_share_key(cell: Cell, share_engines: bool = True) -> str:
    """What a cell's engine start depends on, as a digest: cells with equal keys share one
    (``Engine.share_key``; the cell's own id where its engine shares nothing or
    ``share_engines=False``)."""
    cls = launched_engine(cell)
    if share_engines and cls.shared_axes:
        return digest(cls.share_key(cell_identity(cell.config, cell.engine)))
    return cell.cell_id


def make_units(cells: List[Cell], sweep: str, offered: Mapping[str, bool],
               share_engines: bool = True, log_level: str = "INFO") -> List[UnitSpec]:
    """Group runnable cells into tasks: cells whose identity differs only in their engine's
    ``shared_axes`` (equal ``Engine.share_key``) share one (``share_engines=False``: one task per
    cell). ``offered[t]``: the cluster has GPUs of type t."""
    groups: Dict[str, List[Cell]] = {}
    for c in cells:
        groups.setdefault(engine_share_key(c, share_engines), []).append(c)
    units = []
    for key, members in groups.items():
        first = members[0]
        on_gpu = placement.on_gpu(first, offered)
        reason = first.engine_reason
        if launched_engine(first).gpu is GpuUse.optional and not on_gpu:
            gpu_type = first.config.gpu.accelerator_type
            reason = f"the Ray cluster offers no {gpu_type} GPU: {first.engine} runs on the CPU"
        members = [Cell(c.cell_id, c.config, c.engine, reason) for c in members]
        units.append(UnitSpec(key=key, engine=first.engine, engine_reason=reason, sweep=sweep,
                              cells=tuple(members), on_gpu=on_gpu, log_level=log_level))
    return units


@dataclass
class Dispatcher:
    """Submits units, collects results, hands each to ``on_result(cell_id, status, tables)``. The
    Ray-facing shell of ``dispatch_state.TaskState``: Ray's events in, its decisions carried out."""

    dispatch: DispatchConfig
    on_result: ResultSink
    tick: Callable[[], None] = lambda: None  # called on every turn of the loop (claim heartbeat)
    task_fn: Optional[Callable] = None  # a task's body (default: worker.run_unit)
    tasks: Dict = field(default_factory=dict)  # generator -> TaskState
    labels: Dict[str, str] = field(default_factory=dict)  # cell_id -> label (progress)
    board: Any = None  # the PhaseBoard actor handle
    _drain: Any = None  # the ObjectRef of its pending drain() call

    def _options(self, unit: UnitSpec) -> Dict:
        opts: Dict[str, Any] = {"num_cpus": 1, "max_retries": int(self.dispatch.max_retries), "retry_exceptions": False}
        if unit.on_gpu or self.dispatch.place_as_gpu:  # N GPUs of one node for a cell over N (a task is one process)
            opts.update(num_gpus=unit.gpus, accelerator_type=unit.cells[0].config.gpu.accelerator_type)
        if unit.on_gpu:
            # NVML numbers GPUs in PCI-bus order; make CUDA (and Ray's ids) agree (gpuinfo.py).
            opts["runtime_env"] = {"env_vars": {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}}
        if unit.node_id:  # placement by node: the one that holds the GPUs the cells measure
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(unit.node_id, soft=False)
        return opts

    def run(self, units: List[UnitSpec], progress: SweepProgress) -> None:
        """Submit every unit, then collect until none is pending."""
        import ray

        task = self.task_fn or run_unit
        remote = ray.remote(task)
        # a fresh process per GPU task: everything it held on the GPU is freed when it exits
        remote_gpu = ray.remote(max_calls=1)(task)
        self.board = ray.remote(num_cpus=0)(PhaseBoard).remote()
        self.labels.update({c.cell_id: c.label() for u in units for c in u.cells})
        limits = TaskLimits.of(self.dispatch)

        def submit(unit: UnitSpec) -> None:
            fn = remote_gpu if unit.on_gpu else remote
            gen = fn.options(**self._options(unit)).remote(replace(unit, phase_board=self.board))
            self.tasks[gen] = TaskState(unit, placement.task_resources(unit, self.dispatch.place_as_gpu), limits)

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
            progress.update(running=sum(len(s.unreported()) for s in self.tasks.values() if s.started))
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
        running = {c.cell_id for s in self.tasks.values() for c in s.unreported()}
        for msg in messages:
            if msg.cell_id in running:
                progress.phase(self.labels.get(msg.cell_id, msg.cell_id), msg)

    def cancel_all(self) -> int:
        """Cancel every task still pending or running (force: the worker process and what it
        started go). -> the number of cells they held."""
        import ray

        n = 0
        for gen, state in list(self.tasks.items()):
            n += len(state.unreported())
            try:
                ray.cancel(gen, force=True)
            except Exception:  # already finished
                pass
        self.tasks.clear()
        return n

    @staticmethod
    def _cancel(gen, cancel: Optional[Cancel]) -> None:
        """Carry out a ``Cancel`` decision (the state has recorded it)."""
        import ray

        if cancel is not None:
            ray.cancel(gen, force=cancel.force)

    def _cancel_overdue(self) -> None:
        now_s = time.time()
        for gen, state in self.tasks.items():
            self._cancel(gen, state.overdue(now_s))

    def _cancel_unschedulable(self) -> None:
        """Tasks not started whose resources no live node has, for ``pending_timeout_s``."""
        waiting = [(g, s) for g, s in self.tasks.items() if s.waiting]
        if not waiting:
            return
        nodes, now_s = placement.live_nodes(), time.time()
        for gen, state in waiting:
            fits = placement.fits_somewhere(state.resources, nodes)
            self._cancel(gen, state.placement_check(fits, now_s, lambda: placement.describe_nodes(nodes)))

    def _advance(self, gen, progress: SweepProgress) -> Optional[UnitSpec]:
        """Consume the next item of a ready generator; -> a unit to retry, once the task ends."""
        import ray
        from ray.exceptions import RayTaskError, TaskCancelledError

        state: TaskState = self.tasks[gen]
        try:
            item = ray.get(next(gen))
        except StopIteration:  # the task finished (the worker reports every cell first)
            del self.tasks[gen]
            return self._carry_out(state, state.finished(), progress)
        except Exception as exc:  # cancelled by us (timeout, unschedulable), failed in its body, or lost
            del self.tasks[gen]
            kind = (Raised.cancelled if isinstance(exc, TaskCancelledError)
                    else Raised.task_error if isinstance(exc, RayTaskError) else Raised.worker_lost)
            return self._carry_out(state, state.raised(kind, str(exc), type(exc).__name__), progress)
        if isinstance(item, TaskStarted):
            state.started_now(time.time())
            return None
        decision = state.result(item)
        if isinstance(decision, Keep):
            self._write(decision.result.cell_id, decision.result.status, decision.result.tables, progress)
        elif isinstance(decision, Ignore):
            log.warning("a result for cell %s was dropped: %s", decision.cell_id, decision.why)
        return None

    def _carry_out(self, state: TaskState, outcome: TaskOutcome, progress: SweepProgress) -> Optional[UnitSpec]:
        """Write an ended task's rows: status rows first, then held failures with their note.
        -> the unit to retry, if any."""
        for record in outcome.records:
            for c in record.cells:
                tables = status_tables(c, state.unit.sweep, record.status, record.error, attempts=record.attempts)
                self._write(c.cell_id, record.status, tables, progress, label=c.label())
        for result in outcome.kept:
            self._write(result.cell_id, result.status, with_error_note(result.tables, outcome.note), progress)
        return outcome.retry

    def _write(self, cell_id: str, status: Status, tables: Dict, progress: SweepProgress,
               label: Optional[str] = None) -> None:
        """One cell's row to ``on_result``, and the progress display told."""
        self.on_result(cell_id, status, tables)
        progress.update(status=status.value, label=self.labels.get(cell_id, "") if label is None else label,
                        cell_id=cell_id)
