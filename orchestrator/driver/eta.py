"""The live sweep's remaining time, estimated per engine and GPU type.

Cells of one (engine, accelerator type) cost alike; cells of another engine say nothing of them
(a simulated cell takes a second of wall time, a vLLM cell minutes). Each task's engine start and
each cell to run have a prior estimate of their wall seconds: a start, the store's median
``engine_start_s`` for that engine variant and GPU type (``plan_view.start_prior``), else the
engine's ``typical_start_s``; a cell of
an engine that waits out its windows, its idle baseline, warm-up and window
(``plan_view.cell_seconds``), of an engine whose windows are modeled (the simulator), the engine's
``typical_cell_s``. A start is done when its task's first cell ends (its cost: that row's
``engine_start_s``); a cell when it ends (its ``cell_wall_s``). Once items of a group are done, the
group's remaining estimates are scaled by what the done ones really cost ÷ what was estimated for
them — but for each host's first start in the sweep: a fresh machine builds its kernels then
(214.5 s against 41.9–61.9 s for the next starts on an H100), which says nothing of the next
starts (it took the first ETA of the H100 check's 6 cells to 22.8 min, with 10.5 left). Groups
that run on the same lanes (one GPU type's GPUs; the cluster's CPUs for engines without a GPU)
add up, divided by how many lanes there are — but never less than the longest
task left, whose cells run one after another on one lane; lanes of different types run side by
side, so the sweep's remaining time is that of the slowest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Set, Tuple

from orchestrator.core.messages import UnitSpec
from orchestrator.driver.plan_view import StartKey, StartPrior, cell_seconds, start_prior
from orchestrator.engines import launched_engine

CPU_LANES = "cpu"
"""The lane pool of the units that run on no GPU."""


@dataclass
class _Group:
    """The cells of one (engine, accelerator type) and their estimates, in seconds."""

    pool: str
    todo_prior_s: float = 0.0  # the estimates of the cells not finished yet
    done_prior_s: float = 0.0  # of the finished cells with a measured cost
    done_measured_s: float = 0.0  # what those cost

    def scale(self) -> float:
        """What the done items really cost ÷ what was estimated for them (1 before any)."""
        return self.done_measured_s / self.done_prior_s if self.done_prior_s > 0 else 1.0

    def remaining_s(self) -> float:
        return self.todo_prior_s * self.scale()


def measured_costs(row: Mapping) -> Tuple[Optional[float], Optional[float]]:
    """(cell wall seconds, engine start seconds) of a finished cell's runs row (None where the
    row has no such number: a failure, a pre-launch status)."""
    wall, start = row.get("cell_wall_s"), row.get("engine_start_s")
    return (None if wall is None else float(wall)), (None if start is None else float(start))


class SweepEta:
    """See the module doc. ``starts``: the store's measured engine starts
    (``plan_view.measured_starts``); ``lanes``: (accelerator type, on a GPU) -> how many such tasks
    run at once."""

    def __init__(self, units: List[UnitSpec], starts: Mapping[StartKey, StartPrior],
                 lanes: Callable[[str, bool], int]):
        self._groups: Dict[Tuple[str, str], _Group] = {}
        self._items: Dict[str, Tuple[Tuple[str, str], str, float]] = {}  # item -> (group, task, prior s)
        self._unit_of: Dict[str, str] = {}  # cell id -> its task (named by its start item)
        self._lanes: Dict[str, int] = {}
        self._hosts_started: Set[str] = set()  # the hosts whose first start in the sweep is done
        for unit in units:
            first = unit.cells[0]
            cls = launched_engine(first)
            t = first.config.gpu.accelerator_type
            pool = t if unit.on_gpu else CPU_LANES
            if pool not in self._lanes:
                self._lanes[pool] = max(1, lanes(t, unit.on_gpu))
            key = (unit.engine, t)
            self._groups.setdefault(key, _Group(pool))
            task = f"start:{first.cell_id}"
            self._add(task, key, task, start_prior(first, starts).typical_s)
            for cell in unit.cells:
                self._unit_of[cell.cell_id] = task
                modeled = cls.typical_cell_s
                self._add(cell.cell_id, key, task, modeled if modeled is not None else cell_seconds(cell.config)[0])

    def _add(self, item: str, key: Tuple[str, str], task: str, prior: float) -> None:
        self._items[item] = (key, task, prior)
        self._groups[key].todo_prior_s += prior

    def _done(self, item: str, measured_s: Optional[float], scales: bool = True) -> bool:
        """Item ``item`` is done at ``measured_s`` (None: not measured); ``scales``: whether its
        cost speaks for its group's remaining items. -> whether it was still to do."""
        entry = self._items.pop(item, None)
        if entry is None:
            return False
        key, _, prior = entry
        group = self._groups[key]
        group.todo_prior_s = max(0.0, group.todo_prior_s - prior)
        if scales and measured_s is not None and prior > 0:
            group.done_prior_s += prior
            group.done_measured_s += measured_s
        return True

    def finished(self, cell_id: str, row: Mapping) -> None:
        """A cell ended with this runs row (``measured_costs``); its task's start is done too, and
        does not rescale the others where it was its host's first (the row's ``host``)."""
        wall, start = measured_costs(row)
        host = str(row.get("host") or "")
        first_on_host = bool(host) and start is not None and host not in self._hosts_started
        if self._done(self._unit_of.get(cell_id, ""), start, scales=not first_on_host) and first_on_host:
            self._hosts_started.add(host)
        self._done(cell_id, wall)

    def remaining_s(self) -> float:
        """Seconds until the last cell ends (see the module doc)."""
        pools: Dict[str, float] = {}
        longest: Dict[str, float] = {}
        tasks: Dict[str, float] = {}
        for key, task, prior in self._items.values():
            tasks[task] = tasks.get(task, 0.0) + prior * self._groups[key].scale()
            pool = self._groups[key].pool
            longest[pool] = max(longest.get(pool, 0.0), tasks[task])
        for group in self._groups.values():
            pools[group.pool] = pools.get(group.pool, 0.0) + group.remaining_s()
        return max((max(s / self._lanes[p], longest.get(p, 0.0)) for p, s in pools.items()), default=0.0)

    def groups(self) -> Dict[Tuple[str, str], float]:
        """(engine, accelerator type) -> its remaining seconds of work (not divided by lanes)."""
        return {k: g.remaining_s() for k, g in self._groups.items()}
