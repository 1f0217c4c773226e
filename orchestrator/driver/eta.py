"""The live sweep's remaining time, estimated per engine and GPU type.

Cells of one (engine, accelerator type) cost alike; cells of another engine say nothing of them
(a simulated cell takes a second of wall time, a vLLM cell minutes). Each cell to run has a prior
estimate of its wall seconds: for an engine that waits out its windows, its share of its unit's
engine start (the store's median ``engine_start_s`` for that engine and GPU type, else the
engine's ``typical_start_s``) plus its idle baseline, warm-up and window
(``plan_view.cell_seconds``); for an engine whose windows are modeled (the simulator), the
engine's ``typical_cell_s``. Once cells of a group have finished ok, the group's estimates are
scaled by what they really cost (``cell_wall_s`` plus their share of ``engine_start_s``, from the
runs row) ÷ what was estimated for them. Groups that run on the same lanes (one GPU type's GPUs;
the cluster's CPUs for engines without a GPU) add up, divided by how many lanes there are; lanes
of different types run side by side, so the sweep's remaining time is that of the slowest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from orchestrator.core.messages import UnitSpec
from orchestrator.driver.plan_view import cell_seconds
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

    def remaining_s(self) -> float:
        scale = self.done_measured_s / self.done_prior_s if self.done_prior_s > 0 else 1.0
        return self.todo_prior_s * scale


def measured_cost_s(row: Mapping) -> Optional[float]:
    """A finished cell's wall seconds: ``cell_wall_s`` plus its share of its unit's engine start
    (None for a row without them: a failure, a pre-launch status)."""
    wall = row.get("cell_wall_s")
    if wall is None:
        return None
    start, shared = row.get("engine_start_s") or 0.0, row.get("engine_shared_cells") or 1
    return float(wall) + float(start) / max(1, int(shared))


class SweepEta:
    """See the module doc. ``starts``: (engine, accelerator type) -> a measured engine start (s);
    ``lanes``: (accelerator type, on a GPU) -> how many such tasks run at once."""

    def __init__(self, units: List[UnitSpec], starts: Mapping[Tuple[str, str], float],
                 lanes: Callable[[str, bool], int]):
        self._groups: Dict[Tuple[str, str], _Group] = {}
        self._cells: Dict[str, Tuple[Tuple[str, str], float]] = {}  # cell id -> (group, prior s)
        self._lanes: Dict[str, int] = {}
        for unit in units:
            first = unit.cells[0]
            cls = launched_engine(first)
            t = first.config.gpu.accelerator_type
            pool = t if unit.on_gpu else CPU_LANES
            if pool not in self._lanes:
                self._lanes[pool] = max(1, lanes(t, unit.on_gpu))
            key = (unit.engine, t)
            group = self._groups.setdefault(key, _Group(pool))
            start = starts.get(key, cls.typical_start_s) / len(unit.cells)
            for cell in unit.cells:
                prior = cls.typical_cell_s if cls.typical_cell_s is not None else start + cell_seconds(cell.config)[0]
                self._cells[cell.cell_id] = (key, prior)
                group.todo_prior_s += prior

    def finished(self, cell_id: str, measured_s: Optional[float]) -> None:
        """A cell ended (``measured_s``: its cost from ``measured_cost_s``, None if unknown)."""
        entry = self._cells.pop(cell_id, None)
        if entry is None:
            return
        key, prior = entry
        group = self._groups[key]
        group.todo_prior_s = max(0.0, group.todo_prior_s - prior)
        if measured_s is not None and prior > 0:
            group.done_prior_s += prior
            group.done_measured_s += measured_s

    def remaining_s(self) -> float:
        """Seconds until the last cell ends (see the module doc)."""
        pools: Dict[str, float] = {}
        for group in self._groups.values():
            pools[group.pool] = pools.get(group.pool, 0.0) + group.remaining_s()
        return max((s / self._lanes[p] for p, s in pools.items()), default=0.0)

    def groups(self) -> Dict[Tuple[str, str], float]:
        """(engine, accelerator type) -> its remaining seconds of work (not divided by lanes)."""
        return {k: g.remaining_s() for k, g in self._groups.items()}
