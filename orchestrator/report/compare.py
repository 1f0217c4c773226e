"""``python -m orchestrator.report compare <A> <B>``: the same cells of two sweeps side by side.

Each Δ of a metric with repeat intervals carries a significance mark (``MARKS``): the two sides'
Student-t 95% intervals apart (*), overlapping (n.s.), or unknown because a side ran one repeat (?).
Where either side has prefill's share of the energy in steps (``SHARES``), the tables show it too,
as percent, its Δ in percentage points (B − A); a comparison of stores without steps shows no such column.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from orchestrator.analysis import format as fmt
from orchestrator.analysis import plots
from orchestrator.analysis.compare import Comparison, compare_points, shown_shares
from orchestrator.analysis.dataset import SweepData, SweepError, batch_points, read_sweep, require_ok
from orchestrator.analysis.prediction_error import ERROR_METRICS, FitSelection, interval_coverage, prediction_errors
from orchestrator.report.html_data import compare_payload
from orchestrator.report.html_page import write_compare_html
from orchestrator.report.markdown import SIM_LEGEND, SIM_MARK, Col, col, heading, para, table
from orchestrator.store.schema import (
    ENERGY_SOURCE,
    OUTPUT_THROUGHPUT_TOK_S,
    PREFILL_ENERGY_SHARE,
    TPOT_P50_MS,
    TTFT_P50_MS,
)

PAIRS = [("output tok/s", OUTPUT_THROUGHPUT_TOK_S), ("TTFT p50 (ms)", TTFT_P50_MS),
         ("TPOT p50 (ms)", TPOT_P50_MS), ("J/output token", "energy_per_output_token_j"),
         ("J/output token net", "net_energy_per_output_token_j")]
"""(name, metric) shown side by side; every one has repeat intervals (``repeats.REPEAT_METRICS``)."""
SHARES = [("prefill share of energy", PREFILL_ENERGY_SHARE)]
"""(name, share metric) shown side by side where either side has it (``compare.shown_shares``): as percent,
the Δ in percentage points."""
SHARE_LEGEND = ("Prefill share of energy: prefill's share of the net energy in the cell's engine steps (vLLM: its "
                "logged steps and the power trace; the simulator: its modeled steps, prefill compute-bound and decode "
                "bandwidth-bound on the roofline); its Δ pts is B − A in percentage points, not relative.")
MARKS = {True: "*", False: "n.s.", None: "?"}
MARK_LEGEND = ("Significance of each Δ: * the Student-t 95% confidence intervals of A and B do not overlap "
               "(significant); n.s. they overlap (not significant); ? at least one side ran a single repeat, so it "
               "has no interval (significance unknown; run with repeats ≥ 2).")


def significance_state(value) -> bool | None:
    """True / False, or None for unknown (NA)."""
    return None if value is None or pd.isna(value) else bool(value)


def _delta(r, m: str) -> str:
    change = getattr(r, f"change_{m}_pct")
    if fmt.is_missing(change):
        return fmt.MISSING
    return f"{fmt.pct(change)} {MARKS[significance_state(getattr(r, f'significant_{m}'))]}"


def _share_pct(x) -> str:
    """A share (0-1) as percent, one decimal."""
    return fmt.MISSING if fmt.is_missing(x) else f"{float(x) * 100:.1f}%"


def _pts(x) -> str:
    """A change in percentage points, signed, one decimal."""
    return fmt.MISSING if fmt.is_missing(x) else f"{float(x):+.1f} pts"


def _shares(c: Comparison) -> list[tuple[str, str]]:
    """The ``SHARES`` either side of ``c`` has."""
    shown = shown_shares(c.table)
    return [(name, m) for name, m in SHARES if m in shown]


def _flags(r, side: str) -> str:
    flags = getattr(r, f"flags_{side}") or "·"
    return flags + (SIM_MARK if bool(getattr(r, f"simulated_{side}")) else "")


def _label(data: SweepData, other: SweepData) -> str:
    base = os.path.basename(data.path.rstrip("/"))
    return base if data.name == other.name else data.name


def _describe(data: SweepData) -> str:
    ok = data.ok
    engines = ", ".join(f"{n} {e}" for e, n in ok["engine"].value_counts().items())
    versions = sorted({v for v in ok["engine_versions"].dropna() if v and v != "{}"})
    sim = " **(simulated: modeled, not measured)**" if ok["simulated"].any() else ""
    energy = ", ".join(sorted(ok[ENERGY_SOURCE].fillna("none").unique()))
    return (f"`{data.path}` — {len(ok)} ok of {len(data.runs)} cells; engine: {engines}{sim}; energy source: {energy}"
            + (f"; versions: {'; '.join(versions[:3])}" if versions else ""))


def _cols(c: Comparison, la: str, lb: str) -> list[Col]:
    cols = [col(k, k, "batch" if k == "batch_size" else "text") for k in c.keys if k != "workload"]
    cols += [col(f"{ax} {s}", f"{ax}_{s}", "text") for ax in c.compared for s in ("a", "b")]
    if c.variants:  # a side ran several series on one point: say which row is which
        cols += [col("series A", "series_a", "text"), col("series B", "series_b", "text")]
    cols += [Col("flags A / B", lambda r: f"{_flags(r, 'a')} / {_flags(r, 'b')}"),
             Col("repeats A / B", lambda r: f"{fmt.batch(r.n_repeats_a)} / {fmt.batch(r.n_repeats_b)}")]
    for name, m in PAIRS:
        cols += [col(f"{name} {la}", f"{m}_a"), col(f"{name} {lb}", f"{m}_b"), Col("Δ", lambda r, m=m: _delta(r, m))]
    for name, m in _shares(c):
        cols += [Col(f"{name} {la}", lambda r, m=m: _share_pct(getattr(r, f"{m}_a"))),
                 Col(f"{name} {lb}", lambda r, m=m: _share_pct(getattr(r, f"{m}_b"))),
                 Col("Δ pts", lambda r, m=m: _pts(getattr(r, f"change_{m}_pts")))]
    return cols


def _significance_counts(t: pd.DataFrame, m: str) -> str:
    states = [significance_state(v) for v in t[f"significant_{m}"]]
    counts = [(states.count(True), "significant"), (states.count(False), "not significant"),
              (states.count(None), "unknown")]
    return ", ".join(f"{n} {what}" for n, what in counts if n)


def _sentences(t: pd.DataFrame, la: str, lb: str, shares: list[tuple[str, str]]) -> str:
    out = []
    for name, m in PAIRS:
        ch = t[f"change_{m}_pct"].dropna()
        if ch.empty:
            out.append(f"{name}: not available on both sides.")
            continue
        out.append(f"{name}: {lb} vs {la} median {fmt.pct(ch.median())} ({fmt.pct(ch.min())} to {fmt.pct(ch.max())}; "
                   f"{_significance_counts(t[t[f'change_{m}_pct'].notna()], m)}).")
    return " ".join(out + [_share_sentence(t, name, m, la, lb) for name, m in shares])


def _share_sentence(t: pd.DataFrame, name: str, m: str, la: str, lb: str) -> str:
    ch = t[f"change_{m}_pts"].dropna()
    if ch.empty:
        return f"{name}: not available on both sides."
    return f"{name}: {lb} vs {la} median {_pts(ch.median())} ({_pts(ch.min())} to {_pts(ch.max())})."


def _error_section(selection: FitSelection, errors: pd.DataFrame, coverage: pd.DataFrame | None = None) -> list[str]:
    """The prediction's error (B the prediction, A the measurement) on held-out and fitted points."""
    cols = [col("points", "group", "text"), Col("held out", lambda r: "yes" if r.held_out else "no (fitted)"),
            col("n", "points", "batch")]
    for name, m in ERROR_METRICS:
        cols += [Col(f"{name} median abs. error", lambda r, m=m: _abs_pct(getattr(r, f"{m}_median_abs_error_pct"))),
                 Col(f"{name} max abs. error", lambda r, m=m: _abs_pct(getattr(r, f"{m}_max_abs_error_pct")))]
    lines = heading(2, "Prediction error: held out and fitted")
    lines += para(f"B is the prediction, A the measurement: Δ is the prediction's error. The calibration "
                  f"`{selection.source}` was fitted on {selection.describe()}: those points are **fitted**, every "
                  "other matched point is **held out** (its measurement took no part in the fit). Each variant of a "
                  "point (e.g. CUDA graphs and eager) counts as one point against its prediction.",
                  selection.describe_kernels())
    return lines + table(errors, cols) + _coverage_lines(coverage)


COVERAGE_COLS = [col("metric", "metric", "text"), col("held-out points", "points", "batch"),
                 Col("inside their 90% interval", lambda r: _abs_pct(r.coverage_pct)),
                 Col("median half-width", lambda r: "±" + _abs_pct(r.median_half_width_pct)),
                 Col("corrected: median abs. error", lambda r: _abs_pct(r.median_abs_error_pct)),
                 Col("B alone: median abs. error", lambda r: _abs_pct(r.raw_median_abs_error_pct))]


def _coverage_lines(coverage: pd.DataFrame | None) -> list[str]:
    if coverage is None or coverage.empty:
        return []
    return para("The 90% prediction intervals an active sweep would give (`orchestrator/active/predictor.py`: B "
                "corrected by the fitted points' errors, with conformal intervals from their cross-validated "
                "errors), had it measured only the fitted points — how many held-out measurements they cover:") + \
        table(coverage, COVERAGE_COLS)


def _abs_pct(x) -> str:
    return fmt.MISSING if fmt.is_missing(x) else f"{float(x):,.1f}%"


def render_compare(a: SweepData, b: SweepData, c: Comparison, plot_name: str | None,
                   fitted_on: tuple[FitSelection, pd.DataFrame] | None = None) -> str:
    """``fitted_on``: the calibration's selection and ``prediction_errors`` of ``c`` under it (the
    held-out points' interval coverage, ``interval_coverage``, follows them)."""
    la, lb = _label(a, b), _label(b, a)
    if la == lb:
        la, lb = f"{la} (A)", f"{lb} (B)"
    lines = heading(1, f"Comparison: {lb} against {la}")
    lines += para(f"A = {_describe(a)}.") + para(f"B = {_describe(b)}.")
    what = (f"The sweeps differ in {', '.join(c.compared)}; points are matched on {', '.join(c.keys)}."
            if c.compared else f"Both sweeps ran the same grid; points are matched on {', '.join(c.keys)}.")
    lines += para(what, f"{len(c.table)} matched points; {c.only_a} points only in A, {c.only_b} only in B. "
                  "Δ = (B − A) ÷ A. Flags as in the sweep report (S saturated, W short window, E energy mismatch, "
                  "T token-count mismatch, X energy invalid; · none).", MARK_LEGEND,
                  SHARE_LEGEND if _shares(c) else "",
                  SIM_LEGEND if c.table["simulated_a"].any() or c.table["simulated_b"].any() else "")
    if fitted_on:
        lines += _error_section(*fitted_on, interval_coverage(c.table, fitted_on[0]))
    for wl, t in c.table.groupby("workload", sort=True):
        lines += heading(2, wl) + para(_sentences(t, la, lb, _shares(c))) + table(t, _cols(c, la, lb))
    if plot_name:
        lines += [f"![{lb} against {la}]({plot_name})", ""]
    lines += para("Interactive version (hover, sortable table; opens from disk): [compare.html](compare.html).")
    return "\n".join(lines).rstrip() + "\n"


def write_compare(sweep_a: str, sweep_b: str, out_dir: str | None = None, fitted_on: str | None = None) -> Path:
    """Write ``compare.md`` (+ ``compare.png``, ``compare.csv`` and the interactive ``compare.html``);
    ``SweepError`` when nothing matches. ``fitted_on``: a ``calibration.json``; the report then
    opens with the prediction's (B's) error on the points held out from that fit and on those in it
    (also written as ``prediction_errors.csv``)."""
    selection = FitSelection.from_calibration(fitted_on) if fitted_on else None
    a, b = read_sweep(sweep_a), read_sweep(sweep_b)
    c = compare_points(batch_points(require_ok(a)), batch_points(require_ok(b)))
    if c.table.empty:
        raise SweepError(f"no point of {sweep_a} matches one of {sweep_b} on {', '.join(c.keys)}")
    out = Path(out_dir or os.path.join(sweep_a.rstrip("/"), "compare_" + os.path.basename(sweep_b.rstrip("/"))))
    out.mkdir(parents=True, exist_ok=True)
    la, lb = _label(a, b), _label(b, a)
    plot = plots.plot_compare(c.table, la + " (A)", lb + " (B)", out / "compare.png")
    errors = prediction_errors(c.table, selection) if selection else None
    path = out / "compare.md"
    path.write_text(render_compare(a, b, c, Path(plot).name, (selection, errors) if selection else None),
                    encoding="utf-8")
    c.table.to_csv(out / "compare.csv", index=False)
    if errors is not None:
        errors.to_csv(out / "prediction_errors.csv", index=False)
    subtitle = f"B = {b.path} against A = {a.path}; matched on {', '.join(c.keys)}; † simulated."
    payload = compare_payload(c.table, c.keys, la, lb, subtitle, c.variants, errors)
    write_compare_html(payload, f"Comparison: {lb} against {la}", out)
    return path
