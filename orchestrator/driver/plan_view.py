"""``--plan``: what a sweep would do, shown before any GPU time is spent, and nothing run.

Per GPU type and engine: the cells, how many are already complete in the store, how many end
before launch (unsupported, infeasible; with their reasons counted), how many would run, in how
many engine starts (cells that share one start, as the dispatcher groups them), and an estimate of
the GPU time. The estimate, in seconds: each engine start — the median ``engine_start_s`` the
store measured for that engine and GPU type, else the engine's ``typical_start_s`` — plus each
cell's idle baseline (``sampler.idle_baseline_s``), warm-up and window (open or closed loop:
``warmup_requests / rate_rps + duration_s``; offline: ``min_window_s``, at least one batch per
warm-up and measured batch), and "at most" with every drain at its limit (``client.workload.
drain_limit_s``). Engines that run on no GPU (the simulator, an endpoint) cost no GPU time.

An active sweep (``sweep.strategy=active``) measures only its budget of the cells: its line gives
the GPU time of that many cells, between the fewest engine starts they could need (the largest
starts first) and the starts a random choice of as many cells would touch on average (the active
strategy, which takes an engine start's cells together once every engine path is measured, needs
fewer: 9 against 12 in the replay on the H200 study).
"""
from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Set, Tuple

from orchestrator.client.workload import drain_limit_s
from orchestrator.config.groups import WorkloadKind
from orchestrator.config.root import CellConfig
from orchestrator.core.cell import Cell
from orchestrator.core.messages import UnitSpec
from orchestrator.engines import launched_engine
from orchestrator.engines.base import GpuUse
from orchestrator.store.schema import ENGINE_START_S

MAX_REASONS = 3


@dataclass
class GroupPlan:
    """The cells of one (GPU type, engine): counts and seconds of GPU time."""

    cells: int = 0
    complete: int = 0
    prelaunch: Counter = field(default_factory=Counter)  # status -> cells
    to_run: int = 0
    starts: int = 0
    start_s: float = 0.0  # one engine start's seconds, as estimated
    start_source: str = ""
    gpu_s: float = 0.0
    gpu_max_s: float = 0.0


def measured_starts(runs: List[Dict]) -> Dict[Tuple[str, str], float]:
    """(engine, accelerator type) -> the median ``engine_start_s`` of the store's ok cells."""
    seen: Dict[Tuple[str, str], List[float]] = {}
    for r in runs:
        if r.get("status") == "ok" and r.get(ENGINE_START_S):
            seen.setdefault((r["engine"], r["accelerator_type"]), []).append(float(r[ENGINE_START_S]))
    return {k: statistics.median(v) for k, v in seen.items()}


def cell_seconds(cfg: CellConfig) -> Tuple[float, float]:
    """(estimate, at most) seconds of one cell on its engine, the engine start excluded."""
    wl = cfg.workload
    base = float(cfg.sampler.idle_baseline_s)
    if wl.kind is WorkloadKind.offline:
        measured = max(float(wl.min_window_s), 0.0)
        return base + measured, base + measured
    warm = wl.warmup_requests / wl.rate_rps if wl.rate_rps else 0.0
    window = base + warm + float(wl.duration_s)
    return window, window + drain_limit_s(cfg)


def plan_groups(cells: List[Cell], complete: Set[str], units: List[UnitSpec],
                starts: Mapping[Tuple[str, str], float]) -> Dict[Tuple[str, str], GroupPlan]:
    """(accelerator type, engine) -> its ``GroupPlan`` (``complete``: the ids a run would skip;
    ``units``: the tasks the cells to run form)."""
    groups: Dict[Tuple[str, str], GroupPlan] = {}
    to_run = {c.cell_id for u in units for c in u.cells}
    for c in cells:
        g = groups.setdefault((c.config.gpu.accelerator_type, c.engine), GroupPlan())
        g.cells += 1
        if c.cell_id in complete:
            g.complete += 1
        elif c.status is not None:
            g.prelaunch[c.status.value] += 1
        elif c.cell_id in to_run:
            g.to_run += 1
    for unit in units:
        first = unit.cells[0]
        g = groups[(first.config.gpu.accelerator_type, first.engine)]
        if not unit.on_gpu or launched_engine(first).gpu is GpuUse.none:
            g.starts += 1
            continue
        key = (first.engine, first.config.gpu.accelerator_type)
        g.start_s = starts.get(key, launched_engine(first).typical_start_s)
        g.start_source = "the store's median" if key in starts else "typical"
        g.starts += 1
        g.gpu_s += g.start_s
        g.gpu_max_s += g.start_s
        for c in unit.cells:
            est, most = cell_seconds(c.config)
            g.gpu_s, g.gpu_max_s = g.gpu_s + est, g.gpu_max_s + most
    return groups


def _hm(seconds: float) -> str:
    """Under an hour in minutes (one decimal), else ``H:MM h``."""
    if seconds < 3600:
        return f"{seconds / 60.0:.1f} min"
    minutes = int(round(seconds / 60.0))
    return f"{minutes // 60}:{minutes % 60:02d} h"


def plan_lines(name: str, location: str, cells: List[Cell], complete: Set[str], units: List[UnitSpec],
               starts: Mapping[Tuple[str, str], float]) -> List[str]:
    """The plan, one line per (GPU type, engine), the pre-launch reasons, the total."""
    groups = plan_groups(cells, complete, units, starts)
    lines = [f"plan of sweep {name}: {len(cells)} cells (store {location}); nothing is run"]
    for (gpu, engine), g in sorted(groups.items()):
        pre = ", ".join(f"{n} {s}" for s, n in sorted(g.prelaunch.items()))
        time = (f" ≈ {_hm(g.gpu_s)} GPU time (at most {_hm(g.gpu_max_s)}; starts {g.start_s:.0f} s each, "
                f"{g.start_source})") if g.gpu_max_s else " (no GPU time)"
        lines.append(f"  {gpu:<6} {engine:<10} {g.cells} cells: {g.complete} complete"
                     + (f", {pre}" if pre else "") + f", {g.to_run} to run in {g.starts} engine starts" + time)
    reasons = Counter((c.status.value, c.reason) for c in cells if c.status is not None and c.cell_id not in complete)
    for (status, reason), n in reasons.most_common(MAX_REASONS):
        lines.append(f"  {n} {status}: {reason}")
    if len(reasons) > MAX_REASONS:
        lines.append(f"  ... and {len(reasons) - MAX_REASONS} other pre-launch reasons")
    total = sum(g.to_run for g in groups.values())
    lines.append(f"total: {total} cells to run in {sum(g.starts for g in groups.values())} engine starts, "
                 f"≈ {_hm(sum(g.gpu_s for g in groups.values()))} GPU time "
                 f"(at most {_hm(sum(g.gpu_max_s for g in groups.values()))}); drop --plan to run them")
    return lines



def active_line(units: List[UnitSpec], starts: Mapping[Tuple[str, str], float], budget_cells: int) -> str:
    """The GPU time of an active sweep measuring ``budget_cells`` of the ``units``' cells (see
    module doc)."""
    priced = []
    for unit in units:
        first = unit.cells[0]
        if not unit.on_gpu or launched_engine(first).gpu is GpuUse.none:
            priced.append((len(unit.cells), 0.0, 0.0))
            continue
        start = starts.get((first.engine, first.config.gpu.accelerator_type), launched_engine(first).typical_start_s)
        priced.append((len(unit.cells), start, sum(cell_seconds(c.config)[0] for c in unit.cells)))
    total = sum(n for n, _, _ in priced)
    n = max(0, min(budget_cells, total))
    if not total or not n:
        return "active: nothing left to measure within the budget"
    windows = n * sum(w for _, _, w in priced) / total
    fewest, covered = 0.0, 0
    for size, start, _ in sorted(priced, key=lambda p: -p[0]):
        if covered >= n:
            break
        fewest, covered = fewest + start, covered + size
    expected = sum(start * (1.0 - _none_drawn(total, size, n)) for size, start, _ in priced)
    if not windows + expected:
        return f"active (sweep.strategy=active): measures {n} of {total} cells to run, the rest predicted (no GPU time)"
    return (f"active (sweep.strategy=active): measures {n} of {total} cells to run, the rest predicted, "
            f"≈ {_hm(windows + fewest)} to {_hm(windows + expected)} GPU time "
            f"(the fewest engine starts to a random choice's)")


def _none_drawn(total: int, size: int, drawn: int) -> float:
    """The chance that ``drawn`` of ``total`` cells, drawn at random, miss a unit of ``size``."""
    if total - size < drawn:
        return 0.0
    return math.exp(sum(math.log((total - drawn - i) / (total - i)) for i in range(size)))
