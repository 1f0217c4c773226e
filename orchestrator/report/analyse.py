"""Every table of the report, computed once from a loaded sweep (``orchestrator.analysis``)."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from orchestrator.analysis import checks, cost, energy, recommend, roofline_table, scaling, tables, vram_table
from orchestrator.analysis.dataset import SweepData, batch_points, require_baseline, require_ok
from orchestrator.report.options import ReportOptions


@dataclass
class Analysis:
    """The sweep, its points (one per series x batch size) and the DataFrames of each section."""

    data: SweepData
    options: ReportOptions
    points: pd.DataFrame
    summary: pd.DataFrame
    detail: pd.DataFrame
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

    @property
    def any_energy(self) -> bool:
        return bool(self.points["energy_measured"].any())


def analyse(data: SweepData, options: ReportOptions) -> Analysis:
    """Raise ``SweepError`` when no cell is ok or the baseline batch size is absent."""
    points = batch_points(require_ok(data))
    base = options.baseline_batch
    require_baseline(points, base)
    return Analysis(
        data=data, options=options, points=points,
        summary=tables.summary_table(points, base),
        detail=tables.detail_table(points, base),
        energy=energy.energy_table(points, base),
        fits={m: scaling.scaling_table(points, m) for m in scaling.FIT_METRICS},
        local_exponents=scaling.local_exponents(points, "output_throughput_tok_s"),
        roofline=roofline_table.roofline_table(points, data.configs),
        roofs=roofline_table.gpu_roofs(data.configs, data.ok["cell_id"]),
        ridge_batches=roofline_table.ridge_batches(points, data.configs),
        vram=vram_table.vram_table(data.runs, data.configs),
        vram_by_batch=vram_table.vram_by_batch(data.runs, data.configs),
        cost=cost.cost_table(points, options.cost, base),
        recommendations=recommend.recommendations(points, options.slo),
        checks=checks.request_checks(data),
        status=tables.status_table(data.runs),
    )
