"""``--plan``: what a sweep would do, shown before any GPU time is spent, and nothing run.

Per GPU type and engine: the cells, how many are already complete in the store, how many end
before launch (unsupported, infeasible; with their reasons counted), how many would run, in how
many engine starts (cells that share one start, as the dispatcher groups them), and an estimate of
the GPU time. The estimate, in seconds: each engine start — the median ``engine_start_s`` the
store measured for that engine variant (a vLLM server and vLLM's offline engine start differently:
spares serve only the first) and GPU type, one value per start, else the engine's
``typical_start_s`` — plus each cell's idle baseline (``sampler.idle_baseline_s``), warm-up and
window (open or closed loop: ``warmup_requests / rate_rps + duration_s``; offline:
``min_window_s``, at least one batch per warm-up and measured batch), and "at most" with every
drain at its limit (``client.workload.drain_limit_s``) and one start of each GPU type and engine at
the longest the store measured (a fresh machine's first start, its kernels compiled from nothing:
2-5 times a warm one). Engines that run on no GPU (the simulator, an endpoint) cost no GPU time.

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
from orchestrator.config.groups import Arrival, WorkloadKind
from orchestrator.config.root import CellConfig
from orchestrator.core.cell import Cell
from orchestrator.core.messages import UnitSpec
from orchestrator.engines import engine_for, launched_engine
from orchestrator.engines.base import Engine, GpuUse
from orchestrator.store.schema import ENGINE_START_KEY, ENGINE_START_S, engine_start_seconds

STARTS_COLUMNS = list(dict.fromkeys(["status", "arrival", "accelerator_type", *ENGINE_START_KEY]))
"""The runs columns ``measured_starts`` reads."""

MAX_REASONS = 3


@dataclass
class GroupPlan:
    """The cells of one (GPU type, engine): counts and seconds of GPU time."""

    cells: int = 0
    complete: int = 0
    prelaunch: Counter = field(default_factory=Counter)  # status -> cells
    to_run: int = 0
    starts: int = 0
    start_priors: Dict[type[Engine], "StartPrior"] = field(default_factory=dict)  # variant -> its starts' prior
    gpu_s: float = 0.0
    gpu_max_s: float = 0.0
    cold_extra_s: float = 0.0  # a fresh machine's first start over a warm one (in gpu_max_s)


@dataclass(frozen=True)
class StartPrior:
    """Seconds of one engine variant's start on one GPU type: ``typical_s`` (the median of the
    store's starts, else the engine's ``typical_start_s``) and ``longest_s`` (the longest the store
    measured: a fresh machine's first); ``measured``: how many starts the store holds."""

    typical_s: float
    longest_s: float
    measured: int = 0


StartKey = Tuple[type[Engine], str]
"""(engine variant, accelerator type): the starts of a vLLM server and of vLLM's offline engine
(whose core is spawned and which no spare serves) are priced apart."""


def measured_starts(runs: List[Dict]) -> Dict[StartKey, StartPrior]:
    """The store's ok rows (``STARTS_COLUMNS``) -> each engine variant's and GPU type's
    ``StartPrior``, one value per engine start (the cells that shared it count once). Rows of an
    engine or arrival this version does not know are left out."""
    rows_of: Dict[StartKey, List[Dict]] = {}
    for r in runs:
        if r.get("status") != "ok" or not r.get(ENGINE_START_S):
            continue
        try:
            variant = engine_for(r["engine"], Arrival(r["arrival"]).kind)
        except (KeyError, ValueError):
            continue
        if variant is not None:
            rows_of.setdefault((variant, r["accelerator_type"]), []).append(r)
    priors = {}
    for key, rows in rows_of.items():
        seconds = list(engine_start_seconds(rows).values())
        priors[key] = StartPrior(statistics.median(seconds), max(seconds), len(seconds))
    return priors


def start_prior(cell: Cell, starts: Mapping[StartKey, StartPrior]) -> StartPrior:
    """The prior of the engine start that runs ``cell`` (measured, else the engine's typical)."""
    variant = launched_engine(cell)
    typical = StartPrior(variant.typical_start_s, variant.typical_start_s)
    return starts.get((variant, cell.config.gpu.accelerator_type), typical)


def _variant_label(variant: type[Engine]) -> str:
    return "/".join(sorted(k.value for k in variant.workload_kinds))


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
                starts: Mapping[StartKey, StartPrior]) -> Dict[Tuple[str, str], GroupPlan]:
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
        prior = g.start_priors[launched_engine(first)] = start_prior(first, starts)
        g.starts += 1
        g.gpu_s += prior.typical_s
        g.gpu_max_s += prior.typical_s
        for c in unit.cells:
            est, most = cell_seconds(c.config)
            g.gpu_s, g.gpu_max_s = g.gpu_s + est, g.gpu_max_s + most
    for g in groups.values():  # one fresh machine per GPU type and engine: its first start the longest
        g.cold_extra_s = max((p.longest_s - p.typical_s for p in g.start_priors.values()), default=0.0)
        g.gpu_max_s += g.cold_extra_s
    return groups


def _starts_text(g: GroupPlan) -> str:
    """How the group's starts were priced, e.g. ``starts 30 s each, the store's median; a fresh
    machine's first up to 154 s``."""
    priors = sorted(g.start_priors.items(), key=lambda kv: _variant_label(kv[0]))
    if len(priors) == 1:
        p = priors[0][1]
        text = f"starts {p.typical_s:.0f} s each, " + ("the store's median" if p.measured else "typical")
    else:
        text = "starts " + ", ".join(f"{_variant_label(v)} {p.typical_s:.0f} s"
                                     + (" (the store's median)" if p.measured else " (typical)") for v, p in priors)
    if g.cold_extra_s > 0:
        text += f"; a fresh machine's first up to {max(p.longest_s for _, p in priors):.0f} s"
    return text


def _hm(seconds: float) -> str:
    """Under an hour in minutes (one decimal), else ``H:MM h``."""
    if seconds < 3600:
        return f"{seconds / 60.0:.1f} min"
    minutes = int(round(seconds / 60.0))
    return f"{minutes // 60}:{minutes % 60:02d} h"


def plan_lines(name: str, location: str, cells: List[Cell], complete: Set[str], units: List[UnitSpec],
               starts: Mapping[StartKey, StartPrior]) -> List[str]:
    """The plan, one line per (GPU type, engine), the pre-launch reasons, the total."""
    groups = plan_groups(cells, complete, units, starts)
    lines = [f"plan of sweep {name}: {len(cells)} cells (store {location}); nothing is run"]
    for (gpu, engine), g in sorted(groups.items()):
        pre = ", ".join(f"{n} {s}" for s, n in sorted(g.prelaunch.items()))
        time = (f" ≈ {_hm(g.gpu_s)} GPU time (at most {_hm(g.gpu_max_s)}; {_starts_text(g)})"
                if g.gpu_max_s else " (no GPU time)")
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


def active_line(units: List[UnitSpec], starts: Mapping[StartKey, StartPrior], budget_cells: int) -> str:
    """The GPU time of an active sweep measuring ``budget_cells`` of the ``units``' cells (see
    module doc)."""
    priced = []
    for unit in units:
        first = unit.cells[0]
        if not unit.on_gpu or launched_engine(first).gpu is GpuUse.none:
            priced.append((len(unit.cells), 0.0, 0.0))
            continue
        start = start_prior(first, starts).typical_s
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
