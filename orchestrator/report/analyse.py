"""Every table of the report, computed once from a loaded sweep (``orchestrator.analysis``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from orchestrator.analysis import (
    checks,
    cost,
    energy,
    gpu_time,
    prefix_cache,
    recommend,
    repeats,
    request_energy,
    request_lengths,
    roofline_table,
    scaling,
    tables,
    vram_table,
)
from orchestrator.analysis.dataset import SweepData, baseline_sizes, batch_points, require_baseline, require_ok
from orchestrator.analysis.traffic import named, workload_names
from orchestrator.analysis.whole_grid import WholeGrid, read_whole_grid
from orchestrator.report.options import ReportOptions
from orchestrator.store.schema import OUTPUT_THROUGHPUT_TOK_S


@dataclass
class Analysis:
    """The sweep, its points (one per series x batch size, with ``baseline_batch_size``) and the
    DataFrames of each section; ``lengths``: per ok cell, its requests' length distribution
    (``request_lengths.length_table``); ``request_sample``: requests for the TTFT-against-length
    plots; ``cache_savings``: the cells paired by prefix caching off and on; ``attributed_requests``,
    ``request_energy`` and ``typical_requests``: the measured ok requests whose energy was attributed,
    their distribution per cell and each series' median request (``analysis.request_energy``; empty for
    a store without attribution); ``whole_grid``: an active sweep's every launchable cell, measured or
    predicted (``analysis.whole_grid``; None for a store without ``active_sweep.json``): only its own
    section and key answer read it."""

    data: SweepData
    options: ReportOptions
    points: pd.DataFrame
    summary: pd.DataFrame
    detail: pd.DataFrame
    repeatability: pd.DataFrame
    energy: pd.DataFrame
    fits: dict[str, pd.DataFrame]
    local_exponents: pd.DataFrame
    roofline: pd.DataFrame
    roofs: pd.DataFrame
    ridge_batches: pd.DataFrame
    vram: pd.DataFrame
    vram_by_batch: pd.DataFrame
    cost: pd.DataFrame
    recommendations: pd.DataFrame
    checks: pd.DataFrame
    status: pd.DataFrame
    lengths: pd.DataFrame
    request_sample: pd.DataFrame
    cache_savings: list[prefix_cache.CacheSaving]
    attributed_requests: pd.DataFrame
    request_energy: pd.DataFrame
    typical_requests: list[request_energy.TypicalRequest]
    whole_grid: WholeGrid | None = None
    engine_starts: pd.DataFrame = field(default_factory=pd.DataFrame)  # analysis.gpu_time: one row per start
    duty: dict = field(default_factory=dict)  # analysis.gpu_time: sweep name -> its GPU duty figures

    @property
    def any_energy(self) -> bool:
        """Does any point have energy (measured, or modeled for simulated points)?"""
        return bool(self.points["energy_available"].any())

    @cached_property
    def _workload_names(self) -> dict[bool, dict[str, str]]:
        return {aside: workload_names(self.data.ok, aside) for aside in (False, True)}

    def workload_name(self, workload: str, aside: bool = False) -> str:
        """How the report names ``workload``: with its traffic's source where not synthetic
        (``aside``: as said inside parentheses; ``traffic.workload_name``)."""
        return named(workload, self._workload_names[aside])

    def baseline_phrase(self) -> str:
        """What every change is relative to, e.g. "each series' smallest batch (BS 4)"."""
        n = self.options.baseline_batch
        if n is not None:
            return f"BS {n} of the same series (--baseline-batch {n})"
        sizes = baseline_label(self.points["baseline_batch_size"])
        several = "; the *base BS* column gives each row's" if "/" in sizes else ""
        return f"each series' smallest batch ({sizes}{several})"

    def series_without_baseline(self) -> list[str]:
        """Series (``series · workload``) that did not run the given ``--baseline-batch``."""
        lacking = self.points[self.points["baseline_batch_size"].isna()]
        return sorted({f"{s} · {w}" for s, w in zip(lacking["series"], lacking["workload"])})


def baseline_label(sizes) -> str:
    """``BS 4`` for one baseline batch size, ``BS 1/4`` for several (each series its own)."""
    values = sorted({int(v) for v in pd.Series(sizes, dtype=float).dropna()})
    return "BS " + "/".join(map(str, values)) if values else "no baseline"


def analyse(data: SweepData, options: ReportOptions) -> Analysis:
    """Raise ``SweepError`` when no cell is ok or a given baseline batch size is absent."""
    points = batch_points(require_ok(data))
    base = options.baseline_batch
    require_baseline(points, base)
    points = points.assign(baseline_batch_size=baseline_sizes(points, base))
    ok = data.ok.assign(**{prefix_cache.PREFIX_CACHING: prefix_cache.caching_flags(data.ok, data.configs)})
    requests = request_lengths.measured_ok(data)
    attributed = request_energy.measured_ok(data)
    return Analysis(
        data=data, options=options, points=points,
        summary=tables.summary_table(points, base),
        detail=tables.detail_table(points, base),
        repeatability=repeats.repeatability_table(points),
        energy=energy.energy_table(points, base),
        fits={m: scaling.scaling_table(points, m) for m in scaling.FIT_METRICS},
        local_exponents=scaling.local_exponents(points, OUTPUT_THROUGHPUT_TOK_S),
        roofline=roofline_table.roofline_table(points, data.configs),
        roofs=roofline_table.gpu_roofs(data.configs, data.ok["cell_id"]),
        ridge_batches=roofline_table.ridge_batches(points, data.configs),
        vram=vram_table.vram_table(data.runs, data.configs),
        vram_by_batch=vram_table.vram_by_batch(data.runs, data.configs),
        cost=cost.cost_table(points, options.cost, base),
        recommendations=recommend.recommendations(points, options.slo),
        checks=checks.request_checks(data),
        status=tables.status_table(data.runs),
        lengths=request_lengths.length_table(requests, ok),
        request_sample=request_lengths.request_sample(requests, ok),
        cache_savings=prefix_cache.cache_savings(ok, data.configs),
        attributed_requests=attributed,
        request_energy=request_energy.distribution_table(attributed, ok),
        typical_requests=request_energy.typical_requests(attributed, ok),
        whole_grid=read_whole_grid(data.path, data.runs),
        engine_starts=gpu_time.engine_starts(data.runs),
        duty=gpu_time.duty(data.runs),
    )
