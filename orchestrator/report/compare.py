"""``python -m orchestrator.report compare <A> <B>``: the same cells of two sweeps side by side."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from orchestrator.analysis import format as fmt
from orchestrator.analysis import plots
from orchestrator.analysis.compare import Comparison, compare_points
from orchestrator.analysis.dataset import SweepData, SweepError, batch_points, read_sweep, require_ok
from orchestrator.report.markdown import Col, col, heading, para, table

PAIRS = [("output tok/s", "output_throughput_tok_s"), ("req/s", "request_throughput_rps"),
         ("TTFT p50 (ms)", "ttft_p50_ms"), ("TPOT p50 (ms)", "tpot_p50_ms"), ("J/request", "energy_per_request_j")]


def _label(data: SweepData, other: SweepData) -> str:
    base = os.path.basename(data.path.rstrip("/"))
    return base if data.name == other.name else data.name


def _describe(data: SweepData) -> str:
    ok = data.ok
    engines = ", ".join(f"{n} {e}" for e, n in ok["engine"].value_counts().items())
    versions = sorted({v for v in ok["engine_versions"].dropna() if v and v != "{}"})
    sim = " **(simulated: modeled, not measured)**" if ok["simulated"].any() else ""
    energy = ", ".join(sorted(ok["energy_source"].fillna("none").unique()))
    return (f"`{data.path}` — {len(ok)} ok of {len(data.runs)} cells; engine: {engines}{sim}; energy source: {energy}"
            + (f"; versions: {'; '.join(versions[:3])}" if versions else ""))


def _cols(c: Comparison, la: str, lb: str) -> list[Col]:
    cols = [col(k, k, "batch" if k == "batch_size" else "text") for k in c.keys if k != "workload"]
    cols += [col(f"{ax} {s}", f"{ax}_{s}", "text") for ax in c.compared for s in ("a", "b")]
    cols += [Col("flags A / B", lambda r: f"{r.flags_a or '·'} / {r.flags_b or '·'}")]
    for name, m in PAIRS:
        cols += [col(f"{name} {la}", f"{m}_a"), col(f"{name} {lb}", f"{m}_b"), col("Δ", f"change_{m}_pct", "pct")]
    return cols


def _sentences(t: pd.DataFrame, la: str, lb: str) -> str:
    out = []
    for name, m in PAIRS:
        ch = t[f"change_{m}_pct"].dropna()
        if ch.empty:
            out.append(f"{name}: not available on both sides.")
            continue
        out.append(f"{name}: {lb} vs {la} median {fmt.pct(ch.median())} ({fmt.pct(ch.min())} to {fmt.pct(ch.max())}).")
    return " ".join(out)


def render_compare(a: SweepData, b: SweepData, c: Comparison, plot_name: str | None) -> str:
    la, lb = _label(a, b), _label(b, a)
    if la == lb:
        la, lb = f"{la} (A)", f"{lb} (B)"
    lines = heading(1, f"Comparison: {lb} against {la}")
    lines += para(f"A = {_describe(a)}.") + para(f"B = {_describe(b)}.")
    what = (f"The sweeps differ in {', '.join(c.compared)}; points are matched on {', '.join(c.keys)}."
            if c.compared else f"Both sweeps ran the same grid; points are matched on {', '.join(c.keys)}.")
    lines += para(what, f"{len(c.table)} matched points; {c.only_a} points only in A, {c.only_b} only in B. "
                  "Δ = (B − A) ÷ A. Flags as in the sweep report (S saturated, W short window, E energy mismatch, "
                  "T token-count mismatch, X energy invalid; · none).")
    for wl, t in c.table.groupby("workload", sort=True):
        lines += heading(2, wl) + para(_sentences(t, la, lb)) + table(t, _cols(c, la, lb))
    if plot_name:
        lines += [f"![{lb} against {la}]({plot_name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_compare(sweep_a: str, sweep_b: str, out_dir: str | None = None) -> Path:
    """Write ``compare.md`` (+ ``compare.png``); ``SweepError`` when nothing matches."""
    a, b = read_sweep(sweep_a), read_sweep(sweep_b)
    c = compare_points(batch_points(require_ok(a)), batch_points(require_ok(b)))
    if c.table.empty:
        raise SweepError(f"no point of {sweep_a} matches one of {sweep_b} on {', '.join(c.keys)}")
    out = Path(out_dir or os.path.join(sweep_a.rstrip("/"), "compare_" + os.path.basename(sweep_b.rstrip("/"))))
    out.mkdir(parents=True, exist_ok=True)
    la, lb = _label(a, b), _label(b, a)
    plot = plots.plot_compare(c.table, la + " (A)", lb + " (B)", out / "compare.png")
    path = out / "compare.md"
    path.write_text(render_compare(a, b, c, Path(plot).name), encoding="utf-8")
    c.table.to_csv(out / "compare.csv", index=False)
    return path
