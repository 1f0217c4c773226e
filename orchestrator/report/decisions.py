"""Sections 7 (cost and carbon) and 8 (recommendations under SLOs)."""
from __future__ import annotations

import pandas as pd

from orchestrator.analysis import format as fmt
from orchestrator.analysis.recommend import SCENARIO_TITLES
from orchestrator.report.analyse import Analysis
from orchestrator.report.markdown import Col, col, dagger, heading, para, sim_legend, table
from orchestrator.report.result_sections import BASE, BATCH, FLAGS, SERIES, groups
from orchestrator.report.summary import workload_title
from orchestrator.store.schema import (
    ENERGY_PER_REQUEST_J,
    NET_ENERGY_PER_REQUEST_J,
    OUTPUT_THROUGHPUT_TOK_S,
    TPOT_P99_MS,
    TTFT_P99_MS,
)

COST_COLS = [
    SERIES, BATCH, FLAGS, BASE, col("J/request gross", ENERGY_PER_REQUEST_J),
    col("J/request net", NET_ENERGY_PER_REQUEST_J),
    col("kWh/month gross", "kwh_per_month"), col("kWh/month net", "net_kwh_per_month"),
    col("cost/month gross", "cost_per_month"), col("cost/month net", "net_cost_per_month"),
    col("kgCO₂/month gross", "kg_co2_per_month"), col("kgCO₂/month net", "net_kg_co2_per_month"),
    col("saving cost/month", "saving_cost_per_month"), col("saving kgCO₂/month", "saving_kg_co2_per_month"),
    col("saving", "saving_pct", "pct"),
]


def cost_section(a: Analysis) -> list[str]:
    c = a.options.cost
    out = heading(2, "7. Cost and carbon")
    out += para(f"Assumptions: {fmt.num(c.requests_per_month)} requests/month, {fmt.num(c.price_per_kwh)} per kWh, "
                f"{fmt.num(c.grid_gco2_per_kwh)} gCO₂/kWh (set with --requests-per-month, --price-per-kwh, "
                "--grid-gco2-per-kwh). kWh/month = J/request × requests/month ÷ 3.6e6; cost = kWh × price; "
                "kgCO₂ = kWh × gCO₂/kWh ÷ 1000. GPU board energy only (no host, cooling or PUE). Savings are "
                f"relative to {a.baseline_phrase()}, on gross energy (what the meter bills).")
    if a.cost.empty:
        return out + para("Energy was not measured in this sweep: no cost or carbon figures.")
    out += sim_legend(a.cost)
    if a.cost["simulated"].any():
        out += para("Costs of † rows come from modeled energy: an estimate, not a measurement.")
    for wl, gpu, g in groups(a.cost):
        out += heading(3, f"{workload_title(a.points, wl)} · {gpu}")
        out += para(_cost_sentence(g))
        out += table(g, COST_COLS)
    unmeasured = a.points[~a.points["energy_available"]]
    if len(unmeasured):
        out += para(f"{len(unmeasured)} points without energy are left out of these tables.")
    return out


def _cost_sentence(g: pd.DataFrame) -> str:
    m = g[g["saving_cost_per_month"].notna()]
    if m.empty:
        return "No series here has energy at its baseline batch size: no saving to compute."
    top = m.loc[m["saving_cost_per_month"].idxmax()]
    base = fmt.batch(top["baseline_batch_size"])
    if top["saving_cost_per_month"] <= 0:
        return f"No batch size costs less than its series' baseline (BS {base}) here."
    return (f"The largest saving: {top['series']}{dagger(top)} at BS {fmt.batch(top['batch_size'])} instead of "
            f"{base} saves "
            f"{fmt.num(top['saving_cost_per_month'])} (price units) per month and "
            f"{fmt.num(top['saving_kg_co2_per_month'])} kgCO₂ "
            f"per month ({top['saving_pct']:.1f}% of the energy: "
            f"{fmt.num(top['kwh_per_month'] + top['saving_kwh_per_month'])} "
            f"→ {fmt.num(top['kwh_per_month'])} kWh/month).")


REC_COLS = [
    Col("series", lambda r: r.series + dagger(r)),
    Col("scenario", lambda r: SCENARIO_TITLES.get(r.scenario, r.scenario)),
    col("BS", "batch_size", "batch"), FLAGS, col("output tok/s", OUTPUT_THROUGHPUT_TOK_S),
    col("TTFT p99 (ms)", TTFT_P99_MS), col("TPOT p99 (ms)", TPOT_P99_MS), col("J/request", ENERGY_PER_REQUEST_J),
    col("why", "reason", "text"),
]


def _collapse(r: pd.DataFrame) -> pd.DataFrame:
    """Series with no eligible point get one row ("all scenarios") instead of four."""
    none = r[r["n_eligible"] == 0].drop_duplicates(["workload", "gpu", "series"]).assign(scenario="all scenarios")
    return pd.concat([r[r["n_eligible"] > 0], none]).sort_values(["gpu", "series"], kind="stable")


def recommendations_section(a: Analysis) -> list[str]:
    out = heading(2, "8. Recommendations")
    out += para(f"Chosen per series by rules over the sweep's points, under {a.options.slo.describe()} (set with "
                "--ttft-p99-slo-ms / --tpot-p99-slo-ms). Eligible: meets both SLOs and is not saturated (a saturated "
                "server's queue grows without bound, so no latency it showed holds). Latency-sensitive: lowest TTFT "
                "p99. Throughput: the smallest batch within 5% of the highest output tok/s. Balanced: highest output "
                "tok/s per second of median end-to-end latency. Cost: the smallest batch within 5% of the lowest "
                "gross J/request (modeled for † series).")
    out += sim_legend(a.recommendations)
    for wl in sorted(a.recommendations["workload"].unique()):
        r = a.recommendations[a.recommendations["workload"] == wl]
        out += heading(3, workload_title(a.points, wl))
        n_series = r[["gpu", "series"]].drop_duplicates().shape[0]
        blocked = r[r["n_eligible"] == 0][["gpu", "series"]].drop_duplicates().shape[0]
        out += para(_rec_sentence(r, n_series, blocked))
        out += table(_collapse(r), REC_COLS)
    return out


def _rec_sentence(r: pd.DataFrame, n_series: int, blocked: int) -> str:
    chosen = r[r["batch_size"].notna()]
    verb = "has" if n_series == 1 else "have"
    parts = [f"{n_series - blocked} of {n_series} series {verb} a batch size that meets the SLOs"]
    for scenario in ("latency", "throughput", "cost"):
        s = chosen[chosen["scenario"] == scenario]["batch_size"]
        if len(s):
            values = sorted(int(v) for v in s.unique())
            parts.append(f"{SCENARIO_TITLES[scenario].lower()}: BS {', '.join(map(str, values))}")
    return "; ".join(parts) + "."
