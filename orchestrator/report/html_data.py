"""What the HTML report's page holds, as plain JSON-able data built from the report's ``Analysis``.

The page gets: the batch points (one per series × workload × batch size, repeats folded, with the
95% intervals; with what batch size means for the engine, ``batch_knob``, and where the cell ran,
``device``, where the store has them), the fitted scaling laws, the roofline rows and roofs, the report's tables
(summary, energy, recommendations, request lengths, what the prefix cache saves where the sweep
varied it, cells without measurements) and, per ok cell, a **down-sampled** drill-down: at most
``MAX_REQUESTS`` request rows (evenly spaced over the cell's requests, the cancelled ones kept in
proportion; with their input and cached tokens, which the page also plots TTFT against) and at
most ``MAX_POWER_POINTS`` power samples (means over equal time buckets), with the measured window,
the idle baseline, whether the cell's prefix cache was on, and the p50 / p90 / max of its measured
ok requests' input, output and cached tokens (over every such request, not the rows sent); where
the store attributed energy to requests, ``request_energy`` (``report.request_energy.html_payload``:
per cell its requests' energy CDF and a sample for the energy-against-length plots); for an active
sweep's store, its whole grid (``report.whole_grid``): the table of every launchable cell, measured
or predicted, first among the tables, and ``whole_grid``, the predicted cells the throughput and
energy charts draw as hollow markers with their 90% intervals (``static/whole_grid.js``).
Down-sampling is for the page only; the Parquet files keep every row. Floats are rounded to
``DIGITS`` significant digits.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from orchestrator.analysis.compare import shown_shares
from orchestrator.analysis.energy import PREFILL_ENERGY_PCT
from orchestrator.analysis.prefix_cache import PREFIX_CACHING, savings_frame
from orchestrator.analysis.request_lengths import INPUT_TOKENS, LENGTHS, N_MEASURED_OK, OUTPUT_TOKENS, stat_columns
from orchestrator.analysis.tables import PREFIX_CACHE_HIT_PCT
from orchestrator.report import whole_grid
from orchestrator.report.analyse import Analysis
from orchestrator.report.answers import answer_groups
from orchestrator.report.markdown import SIM_MARK
from orchestrator.report.request_energy import html_payload as request_energy_payload
from orchestrator.store.schema import (
    CACHED_TOKENS,
    E2E_P50_MS,
    ENERGY_PER_1K_OUTPUT_TOKENS_J,
    ENERGY_PER_1K_PROMPT_TOKENS_J,
    ENERGY_PER_REQUEST_J,
    ENERGY_SOURCE,
    IDLE_POWER_W,
    MEAN_POWER_W,
    NET_ENERGY_PER_1K_OUTPUT_TOKENS_J,
    OFFERED_RATE_RPS,
    OUTPUT_THROUGHPUT_TOK_S,
    PREFIX_CACHE_HIT_RATE,
    REQUEST_THROUGHPUT_RPS,
    SATURATED,
    TPOT_MS,
    TPOT_P50_MS,
    TPOT_P99_MS,
    TTFT_MS,
    TTFT_P50_MS,
    TTFT_P99_MS,
    WINDOW_S,
)

MAX_REQUESTS = 150
MAX_POWER_POINTS = 150
DIGITS = 4
SHORT_ANSWERS = 2  # answers per group the page shows before "show all": a full grid has ~40 per group

POINT_COLUMNS = [
    "series", "workload", "gpu", "model", "quantization", "engine", "simulated", "flags", "batch_size", "n_repeats",
    "cell_id", "arrival", OFFERED_RATE_RPS, SATURATED, OUTPUT_THROUGHPUT_TOK_S, REQUEST_THROUGHPUT_RPS,
    "energy_per_output_token_j", "net_energy_per_output_token_j", TTFT_P50_MS, TTFT_P99_MS, TPOT_P50_MS,
    TPOT_P99_MS, E2E_P50_MS, MEAN_POWER_W, "energy_available", "batch_knob", "device",
]
INTERVAL_METRICS = [OUTPUT_THROUGHPUT_TOK_S, "energy_per_output_token_j", "net_energy_per_output_token_j",
                    TTFT_P50_MS, TPOT_P50_MS]
FIT_COLUMNS = ["series", "workload", "metric", "c", "exponent", "r2", "bs_min", "bs_max", "simulated"]
ROOFLINE_COLUMNS = ["series", "workload", "gpu", "batch_size", "simulated", "intensity_flop_per_byte",
                    "achieved_tflops", "bound", "achieved_fraction"]
REQUEST_COLUMNS = ["cell_id", "phase", "status", "scheduled_arrival_s", "send_s", "first_token_s", "end_s",
                   TTFT_MS, TPOT_MS, INPUT_TOKENS, OUTPUT_TOKENS, CACHED_TOKENS]
LENGTH_COLUMNS = ["series", "workload", "batch_size", PREFIX_CACHING, N_MEASURED_OK,
                  *[c for t in LENGTHS for c in stat_columns(t)], PREFIX_CACHE_HIT_RATE, "simulated", "cell_id"]


def _round(x):
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x) or math.isinf(x):
            return None
        return float(f"{x:.{DIGITS}g}")
    if x is pd.NA or x is None:
        return None
    return x


def records(df: pd.DataFrame, columns: list[str]) -> dict:
    """Column-wise JSON (``{"col": [values...]}``, smaller than row objects); missing columns omitted."""
    cols = [c for c in columns if c in df.columns]
    return {c: [_round(v) for v in df[c].tolist()] for c in cols}


def points_payload(a: Analysis) -> dict:
    p = a.points.copy()
    p["simulated"] = p["simulated"].astype(bool)
    cols = POINT_COLUMNS + [f"{m}_ci95_{s}" for m in INTERVAL_METRICS for s in ("low", "high")]
    return records(p, cols)


def fits_payload(a: Analysis) -> dict:
    frames = [f for f in a.fits.values() if not f.empty]
    return records(pd.concat(frames, ignore_index=True), FIT_COLUMNS) if frames else {}


def tables_payload(a: Analysis) -> dict:
    """The report's tables, each ``{"columns": [...], "rows": [[...], ...]}`` for sortable HTML."""
    chosen = {
        "summary": (a.summary, ["series", "workload", "base_batch_size", "base_output_throughput_tok_s",
                                "tput_batch_size", "tput_output_throughput_tok_s", "energy_batch_size",
                                "energy_energy_per_request_j", "tput_change_output_throughput_tok_s_pct",
                                "energy_change_energy_per_request_j_pct", "tput_simulated"]),
        "energy": (a.energy, ["series", "workload", "batch_size", "flags", "simulated", OUTPUT_THROUGHPUT_TOK_S,
                              ENERGY_PER_1K_OUTPUT_TOKENS_J, NET_ENERGY_PER_1K_OUTPUT_TOKENS_J,
                              ENERGY_PER_1K_PROMPT_TOKENS_J, MEAN_POWER_W, IDLE_POWER_W, ENERGY_SOURCE,
                              PREFIX_CACHE_HIT_PCT, PREFILL_ENERGY_PCT]),
        "recommendations": (a.recommendations, ["series", "workload", "scenario", "batch_size", "simulated",
                                                OUTPUT_THROUGHPUT_TOK_S, TTFT_P99_MS, TPOT_P99_MS,
                                                ENERGY_PER_REQUEST_J, "reason"]),
        "request lengths": (_known(a.lengths), LENGTH_COLUMNS),
        "not measured": (a.status, ["series", "model", "quantization", "gpu", "workload", "batch_size", "repeat",
                                    "status", "simulated", "reason"]),
    }
    if a.cache_savings:
        savings = savings_frame(a.cache_savings)
        chosen["prefix cache: off → on"] = (savings, list(savings.columns))
    if a.whole_grid is not None:  # an active sweep's: the only table with predictions, first
        grid = whole_grid.page_table(a.whole_grid, a.workload_name)
        chosen = {whole_grid.PAGE_TABLE: (grid, list(grid.columns)), **chosen}
    out = {}
    for name, (df, cols) in chosen.items():
        cols = [c for c in cols if c in df.columns]
        out[name] = {"columns": cols, "rows": [[_round(v) for v in row] for row in df[cols].itertuples(index=False)]}
    return out


def _known(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` without its columns that hold no value (e.g. cached tokens no engine reported)."""
    return df[[c for c in df.columns if df[c].notna().any()]]


def _spaced(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, num=min(n, k)).round().astype(int)) if n else np.zeros(0, dtype=int)


def _power_buckets(power: pd.DataFrame) -> dict:
    if power.empty:
        return {"t_s": [], "power_w": []}
    t, w = power["t_rel_s"].to_numpy(float), power["power_w"].to_numpy(float)
    if len(t) > MAX_POWER_POINTS:
        edges = np.linspace(t[0], t[-1], MAX_POWER_POINTS + 1)
        idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, MAX_POWER_POINTS - 1)
        counts = np.bincount(idx, minlength=MAX_POWER_POINTS)
        keep = counts > 0
        t = (np.bincount(idx, weights=t, minlength=MAX_POWER_POINTS)[keep] / counts[keep])
        w = (np.bincount(idx, weights=w, minlength=MAX_POWER_POINTS)[keep] / counts[keep])
    return {"t_s": [_round(x) for x in t], "power_w": [_round(x) for x in w]}


def _requests(req: pd.DataFrame, t0: float) -> dict:
    """The rows shown of one cell's requests, column-wise (times from the window's start ``t0``)."""
    out = {c: [_round(x) for x in req[c].astype(float) - t0] for c in ("send_s", "first_token_s", "end_s")}
    for c in (TTFT_MS, TPOT_MS, INPUT_TOKENS, OUTPUT_TOKENS, CACHED_TOKENS):
        out[c] = [_round(x) for x in req[c]]
    return {**out, "status": req["status"].tolist(), "phase": req["phase"].tolist()}


def _lengths(row) -> dict:
    """p50 / p90 / max of one cell's measured ok requests' input, output and cached tokens (a
    ``length_table`` row; cached: None where the engine reported none)."""
    stats = {t: [_round(getattr(row, c)) for c in stat_columns(t)] for t in LENGTHS}
    return {"n": int(getattr(row, N_MEASURED_OK)),
            **{t: (None if all(v is None for v in vs) else vs) for t, vs in stats.items()}}


def cells_payload(a: Analysis) -> dict:
    """cell_id -> down-sampled drill-down (see the module doc); times relative to the window start."""
    table = a.data.requests([c for c in REQUEST_COLUMNS]).to_pandas()
    by_cell = dict(tuple(table.groupby("cell_id", sort=False))) if len(table) else {}
    lengths = {r.cell_id: r for r in a.lengths.itertuples(index=False)}
    out = {}
    for r in a.data.ok.itertuples(index=False):
        t0 = float(r.window_start_s)
        req = by_cell.get(r.cell_id, pd.DataFrame(columns=REQUEST_COLUMNS))
        req = req.sort_values("scheduled_arrival_s" if req["scheduled_arrival_s"].notna().any() else "send_s")
        length = lengths[r.cell_id]
        out[r.cell_id] = {
            WINDOW_S: _round(float(r.window_end_s) - t0), IDLE_POWER_W: _round(r.idle_power_w),
            "n_requests": int(len(by_cell.get(r.cell_id, ()))),
            "requests": _requests(req.iloc[_spaced(len(req), MAX_REQUESTS)], t0),
            PREFIX_CACHING: _round(getattr(length, PREFIX_CACHING)), "lengths": _lengths(length),
            "power": _power_buckets(a.data.power(r.cell_id)),  # t_rel_s: from the window's start
        }
    return out


def page_payload(a: Analysis) -> dict:
    roofs = a.roofs.to_dict("list") if not a.roofs.empty else {}
    return {
        "title": a.data.name, "path": a.data.path, "n_cells": int(len(a.data.runs)), "n_ok": int(len(a.data.ok)),
        "slo": a.options.slo.describe(), "points": points_payload(a), "fits": fits_payload(a),
        "roofline": records(a.roofline, ROOFLINE_COLUMNS),
        "roofs": {k: [_round(v) for v in vs] for k, vs in roofs.items()},
        "tables": tables_payload(a), "cells": cells_payload(a), "answers": answers_payload(a),
        **({"request_energy": energy} if (energy := request_energy_payload(a, _round)) else {}),
        **({"whole_grid": records(whole_grid.chart_points(a.whole_grid), whole_grid.CHART_COLUMNS)}
           if a.whole_grid is not None else {}),
    }


def answers_payload(a: Analysis) -> list[dict]:
    """The report's key answers, ``[{"lead": str, "items": [str, ...], "short": [int, ...]}, ...]``
    (``**bold**`` marks the series, as in report.md; the page renders it as text, never as HTML);
    ``short``: the indices of the items the page shows until "show all" (``short_answers``)."""
    return [{"lead": f"{g.lead} {g.note}" if g.note else g.lead, "items": g.sentences,
             "short": short_answers(g.sentences)} for g in answer_groups(a)]


def short_answers(items: list[str], k: int = SHORT_ANSWERS) -> list[int]:
    """The indices of the ``k`` answers a reader sees first, in the report's order: measured ones
    before simulated ones (marked †), as a measurement says more about the hardware than the model."""
    simulated = [t.endswith(SIM_MARK.strip()) for t in items]
    chosen = [i for i, sim in enumerate(simulated) if not sim] + [i for i, sim in enumerate(simulated) if sim]
    return sorted(chosen[:k])


COMPARE_METRICS = [("output tok/s", OUTPUT_THROUGHPUT_TOK_S), ("J / output token", "energy_per_output_token_j"),
                   ("TTFT p50", TTFT_P50_MS), ("TPOT p50", TPOT_P50_MS)]


def compare_payload(table: pd.DataFrame, keys: list[str], label_a: str, label_b: str, subtitle: str,
                    variants: bool = False, errors: pd.DataFrame | None = None) -> dict:
    """The comparison page's data: the matched points with both sides and the change of each metric
    (with the series of each side when a side ran several variants on one point; each share either
    side has, e.g. prefill's share of the energy in steps, as a fraction with its change in
    percentage points, ``change_m_pts``), and, for a calibrated prediction (``compare --fitted-on``),
    its error table (``prediction_error``)."""
    cols = keys + (["series_a", "series_b"] if variants else [])
    for _, m in COMPARE_METRICS:
        cols += [f"{m}_a", f"{m}_b", f"change_{m}_pct"]
    for m in shown_shares(table):
        cols += [f"{m}_a", f"{m}_b", f"change_{m}_pts"]
    cols += ["flags_a", "flags_b", "simulated_a", "simulated_b"]
    payload = {"keys": keys, "label_a": label_a, "label_b": label_b, "subtitle": subtitle,
               "metrics": [list(m) for m in COMPARE_METRICS], "table": records(table, cols)}
    if errors is not None:
        payload["errors"] = records(errors, list(errors.columns))
    return payload
