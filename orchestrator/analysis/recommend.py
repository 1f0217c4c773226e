"""Batch-size recommendations per series under latency SLOs, by explicit rules over the data.

A point is **eligible** when its TTFT p99 and TPOT p99 (ms) meet the SLOs (an SLO of None is no
constraint) and it is not ``saturated`` (an open-loop server that cannot keep up has a queue
that grows without bound, so no latency it showed holds in steady state). Among eligible points:

- ``latency``: the lowest TTFT p99 (ties: lower TPOT p99, then the smaller batch);
- ``throughput``: the smallest batch within ``NEAR`` (5%) of the highest output tok/s;
- ``balanced``: the highest output tok/s per second of median end-to-end latency
  (Kleinrock's "power": throughput / delay);
- ``cost``: the smallest batch within 5% of the lowest gross J/request (points with energy:
  measured, or modeled for simulated points — the reason says "modeled" then).

Each row carries the chosen batch size (None when nothing qualifies), the reason in words and
``simulated`` (the series' points are modeled, not measured: shown with †).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from orchestrator.analysis.format import batch, is_missing, num
from orchestrator.analysis.tables import SERIES_KEYS
from orchestrator.store.schema import (
    E2E_P50_MS,
    ENERGY_PER_REQUEST_J,
    OUTPUT_THROUGHPUT_TOK_S,
    SATURATED,
    TPOT_P99_MS,
    TTFT_P99_MS,
)

NEAR = 0.05
SCENARIOS = ("latency", "throughput", "balanced", "cost")
SCENARIO_TITLES = {
    "latency": "Latency-sensitive (interactive)",
    "throughput": "Throughput-maximising",
    "balanced": "Balanced",
    "cost": "Cost-optimised",
}


@dataclass(frozen=True)
class Slo:
    """Latency objectives in ms (None: no constraint)."""

    ttft_p99_ms: float | None = 2000.0
    tpot_p99_ms: float | None = 100.0

    def describe(self) -> str:
        parts = [f"TTFT p99 ≤ {num(self.ttft_p99_ms)} ms" if self.ttft_p99_ms is not None else None,
                 f"TPOT p99 ≤ {num(self.tpot_p99_ms)} ms" if self.tpot_p99_ms is not None else None]
        return ", ".join(p for p in parts if p) or "no latency SLO"


def eligible_mask(points: pd.DataFrame, slo: Slo) -> pd.Series:
    """True where the point meets the SLOs and is not saturated."""
    ok = ~points[SATURATED].eq(True)
    if slo.ttft_p99_ms is not None:
        ok &= points[TTFT_P99_MS] <= slo.ttft_p99_ms
    if slo.tpot_p99_ms is not None:
        ok &= points[TPOT_P99_MS] <= slo.tpot_p99_ms
    return ok


Point = dict
"""One batch point as a plain dict (a series has a handful: plain Python beats DataFrame ops)."""

POINT_COLUMNS = ["batch_size", "flags", "cell_id", OUTPUT_THROUGHPUT_TOK_S, TTFT_P99_MS, TPOT_P99_MS,
                 E2E_P50_MS, ENERGY_PER_REQUEST_J, "energy_available", "simulated", SATURATED, "eligible"]


def _smallest_near(cand: list[Point], metric: str, best: float, largest: bool) -> Point:
    bound = best * (1 - NEAR) if largest else best * (1 + NEAR)
    near = [p for p in cand if (p[metric] >= bound if largest else p[metric] <= bound)]
    return min(near, key=lambda p: p["batch_size"])


def _latency(cand: list[Point]):
    p = min(cand, key=lambda p: (p[TTFT_P99_MS], p[TPOT_P99_MS], p["batch_size"]))
    return p, (f"lowest TTFT p99 of the {len(cand)} eligible batch sizes: {num(p['ttft_p99_ms'])} ms "
               f"(TPOT p99 {num(p['tpot_p99_ms'])} ms, {num(p['output_throughput_tok_s'])} tok/s)")


def _throughput(cand: list[Point]):
    top = max(cand, key=lambda p: (p[OUTPUT_THROUGHPUT_TOK_S], -p["batch_size"]))
    p = _smallest_near(cand, OUTPUT_THROUGHPUT_TOK_S, top[OUTPUT_THROUGHPUT_TOK_S], largest=True)
    why = (f"highest output throughput within the SLO: {num(top['output_throughput_tok_s'])} tok/s at BS "
           f"{batch(top['batch_size'])}")
    if p["batch_size"] != top["batch_size"]:
        why += (f"; BS {batch(p['batch_size'])} reaches {num(p['output_throughput_tok_s'])} tok/s (within {NEAR:.0%}) "
                f"with TTFT p99 {num(p['ttft_p99_ms'])} ms instead of {num(top['ttft_p99_ms'])} ms")
    return p, why


def _balanced(cand: list[Point]):
    def score(p: Point) -> float:
        return p[OUTPUT_THROUGHPUT_TOK_S] / (p[E2E_P50_MS] / 1000.0)

    p = max(cand, key=lambda p: (score(p), -p["batch_size"]))
    return p, (f"highest throughput per second of median latency: {num(p['output_throughput_tok_s'])} tok/s "
               f"at E2E p50 {num(p['e2e_p50_ms'])} ms ({num(score(p))} tok/s per s)")


def _cost(cand: list[Point]):
    known = [p for p in cand if p["energy_available"] and not is_missing(p[ENERGY_PER_REQUEST_J])]
    if not known:
        return None, "energy was not measured for these cells: no cost ranking"
    best = min(known, key=lambda p: (p[ENERGY_PER_REQUEST_J], p["batch_size"]))
    p = _smallest_near(known, ENERGY_PER_REQUEST_J, best[ENERGY_PER_REQUEST_J], largest=False)
    kind = "modeled (simulated) " if best["simulated"] else ""
    why = (f"lowest {kind}gross energy within the SLO: {num(best['energy_per_request_j'])} J/request at BS "
           f"{batch(best['batch_size'])}")
    if p["batch_size"] != best["batch_size"]:
        why += f"; BS {batch(p['batch_size'])} is within {NEAR:.0%} ({num(p['energy_per_request_j'])} J/request)"
    return p, why


RULES = {"latency": _latency, "throughput": _throughput, "balanced": _balanced, "cost": _cost}


def _no_candidate(points: list[Point], slo: Slo) -> str:
    closest = min(points, key=lambda p: (p[TTFT_P99_MS], p["batch_size"]))
    sat = sum(1 for p in points if p[SATURATED] is True)
    lowest = f"the lowest TTFT p99 is {num(closest['ttft_p99_ms'])} ms at BS {batch(closest['batch_size'])}"
    if slo.ttft_p99_ms is None and slo.tpot_p99_ms is None:
        return f"every swept batch size is saturated ({sat} of {len(points)}): the offered load is too high; {lowest}"
    return f"no unsaturated batch size meets {slo.describe()} ({sat} of {len(points)} saturated); {lowest}"


def recommendations(points: pd.DataFrame, slo: Slo) -> pd.DataFrame:
    """One row per series and scenario: ``batch_size`` (None when nothing qualifies), ``flags``,
    ``simulated`` (any point of the series is), ``reason``, ``n_eligible`` and the chosen point's
    tok/s, TTFT/TPOT p99 (ms) and J/request."""
    rows: list[dict] = []
    pts = points.assign(eligible=eligible_mask(points, slo), saturated=points[SATURATED].eq(True))
    pts = pts[[c for c in SERIES_KEYS if c not in POINT_COLUMNS] + POINT_COLUMNS]
    for key, grp in pts.groupby(SERIES_KEYS, sort=False):
        group = grp.to_dict("records")
        cand = [p for p in group if p["eligible"]]
        for scenario in SCENARIOS:
            row = dict(zip(SERIES_KEYS, key), scenario=scenario, n_eligible=len(cand),
                       simulated=any(q["simulated"] for q in group))
            p, why = RULES[scenario](cand) if cand else (None, _no_candidate(group, slo))
            row.update(reason=why, batch_size=None if p is None else p["batch_size"],
                       flags="" if p is None else p["flags"], cell_id=None if p is None else p["cell_id"])
            for m in (OUTPUT_THROUGHPUT_TOK_S, TTFT_P99_MS, TPOT_P99_MS, ENERGY_PER_REQUEST_J):
                row[m] = None if p is None else p[m]
            rows.append(row)
    return pd.DataFrame(rows)
