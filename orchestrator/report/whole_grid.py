"""Section "The whole grid: measured and predicted", for a store an active sweep wrote
(``active_sweep.json``; ``analysis.whole_grid``): one row per launchable cell of the grid, each
value measured (plain: the cell's runs row) or predicted (``†`` with its 90% interval), failed
cells marked; the key answer on the whole grid (least J per output token, and whether that number
is measured or predicted); the page's table and its predicted chart points (``static/whole_grid.js``).

Nothing else of the report reads the predictions: every other table, fit, plot and answer is
computed from the store's rows, which hold measured cells only.
"""
from __future__ import annotations

import math

import pandas as pd

from orchestrator.analysis import format as fmt
from orchestrator.analysis.series_labels import series_suffix
from orchestrator.analysis.whole_grid import ENERGY, FAILED, MEASURED, METRICS, PREDICTED, WholeGrid
from orchestrator.report.markdown import Col, col, heading, para, table
from orchestrator.store.schema import OUTPUT_THROUGHPUT_TOK_S

TITLE = "The whole grid: measured and predicted"
PAGE_TABLE = "whole grid: measured and predicted"
MARK = "†"
LEVELS = ("a prediction's source names where its correction came from: *series* — interpolated between measured "
          "batch sizes of its own series; *extrapolated* — from the nearest measured batch size of its series, "
          "beyond them; *path*, *variant*, *quantization*, *grid* — the mean error of the measured cells of its "
          "engine path (any workload), engine variant, quantization, or of any measured cell")
PREDICTOR = ("the simulator's value for the cell corrected by the measured cells' errors on a log scale "
             "(`orchestrator/active/predictor.py`)")


def source_text(row) -> str:
    """``measured`` | ``predicted (<level>)`` | ``failed (<status>)``."""
    if row.source == PREDICTED:
        return f"predicted ({row.level})" if row.level else PREDICTED
    if row.source == FAILED:
        return f"failed ({row.status})" if row.status else FAILED
    return MEASURED if row.status in ("ok", "") else f"{MEASURED} ({row.status})"


def value_text(row, metric: str) -> str:
    """A measured value plain, a predicted one ``3,786 † [3,784–3,788]``, a failed cell's ``—``."""
    value = getattr(row, metric)
    if row.source == FAILED or fmt.is_missing(value):
        return fmt.MISSING
    if row.source != PREDICTED:
        return fmt.num(value)
    low, high = getattr(row, f"{metric}_low"), getattr(row, f"{metric}_high")
    interval = "" if fmt.is_missing(low) or fmt.is_missing(high) else f" [{fmt.num(low)}–{fmt.num(high)}]"
    return f"{fmt.num(value)} {MARK}{interval}"


def series_name(row) -> str:
    """The row's series label (``model/quantization/gpu`` where the record does not tell its variant)."""
    return row.series or f"{row.model}/{row.quantization}/{row.gpu}"


def _variant(row) -> str:
    if not row.series:
        return "?"
    return series_suffix(str(row.series), row.model, row.quantization, row.gpu).strip().strip("[]")


def _columns(g: WholeGrid, workload_name) -> list[Col]:
    variants = any(_variant(r) for r in g.table.itertuples(index=False))
    return [col("model", "model", "text"), col("quantization", "quantization", "text"), col("GPU", "gpu", "text"),
            *([Col("variant", _variant)] if variants else []),
            Col("workload", lambda r: workload_name(str(r.workload))), col("BS", "batch_size", "batch"),
            Col("source", source_text), Col("output tok/s", lambda r: value_text(r, OUTPUT_THROUGHPUT_TOK_S)),
            Col("J/output token", lambda r: value_text(r, ENERGY)), Col("cell", lambda r: str(r.cell_id)[:8])]


def _half_widths(g: WholeGrid) -> str:
    widths = [(g.median_half_width(m), what) for m, what in zip(METRICS, ("output tok/s", "J per output token"))]
    if all(math.isnan(w) for w, _ in widths):
        return ""
    return ("The median half-width of the predictions' 90% intervals is " + " and ".join(
        f"±{fmt.num(100 * w)}% for {what}" for w, what in widths if not math.isnan(w)) + ".")


def lead(g: WholeGrid) -> list[str]:
    """The section's opening sentences: what was measured of the grid, why it stopped, what † means."""
    n, measured, predicted, failed = len(g.table), g.count(MEASURED), g.count(PREDICTED), g.count(FAILED)
    budget = (f"budget {fmt.num(100 * g.budget_fraction)}% of the launchable cells: at most {g.budget_cells}"
              if not math.isnan(g.budget_fraction) else f"at most {g.budget_cells}")
    rounds = f"in {g.n_rounds} round{'s' * (g.n_rounds != 1)}"
    stopped = (f"and stopped because {g.stopped}" if g.stopped else
               "and has not finished (the record is its last round's)")
    failed_text = (f"; {failed} ran and failed (their runs rows' status; no value, see Appendix A)" if failed else "")
    out = para(f"An active sweep (`sweep.strategy=active`) measured **{measured} of the {n} launchable cells** of "
               f"this grid ({budget}) {rounds}, {stopped}; the other {predicted} are predicted{failed_text}.",
               f"Every value marked {MARK} is a prediction, not a measurement: {PREDICTOR}, shown with its 90% "
               "prediction interval [low–high]. Unmarked values are the measured cells' runs rows.", _half_widths(g))
    sim = g.table[(g.table["source"] == MEASURED) & (g.table["simulated"] == True)]  # (an object column: None where no row)
    simulated = (f"The {len(sim)} measured cells ran on the simulated engine: elsewhere in this report they are "
                 "marked † simulated; in this section † marks predictions only. " if len(sim) else "")
    return out + para(f"{simulated}Predictions appear only in this section, in `tables/whole_grid.csv` and in the "
                      "key answer on the whole grid: every other table, fit, plot and answer of this report is "
                      f"computed from the measured cells only. In the source column, {LEVELS}.")


def section(g: WholeGrid | None, workload_name) -> list[str]:
    """``## The whole grid: measured and predicted`` (nothing without an active sweep's record);
    ``workload_name``: how the report names a workload."""
    if g is None:
        return []
    return heading(2, TITLE) + lead(g) + table(g.table, _columns(g, workload_name))


def best_sentence(g: WholeGrid, workload_name) -> str:
    """The key answer: the least J per output token over the whole grid, measured or predicted
    (with its interval; then the least measured one too)."""
    best = g.best(ENERGY)
    if best is None:
        return ""

    def where(r) -> str:
        return f"**{series_name(r)}** ({workload_name(str(r.workload))}) at BS {fmt.batch(r.batch_size)}"

    def mj(x: float) -> str:
        return f"{fmt.num(1000 * x)} mJ"

    head = f"Least J per output token over the whole grid: {where(best)}"
    if best.source == MEASURED:
        return f"{head}: {mj(best.energy_per_output_token_j)} per output token, measured."
    low, high = best.energy_per_output_token_j_low, best.energy_per_output_token_j_high
    interval = "" if fmt.is_missing(low) else f" (90% interval {fmt.num(1000 * low)}–{mj(high)})"
    measured = g.best(ENERGY, MEASURED)
    also = (f"; the least measured: {where(measured)}, {mj(measured.energy_per_output_token_j)}"
            if measured is not None else "; no cell with energy was measured")
    return (f"{head}: {mj(best.energy_per_output_token_j)} {MARK}{interval} per output token, predicted — "
            f"not measured{also}.")


def answer_lead(g: WholeGrid) -> str:
    return (f"**The whole grid** (an active sweep: {g.count(MEASURED)} of {len(g.table)} launchable cells measured, "
            f"the rest predicted, {MARK}, with 90% intervals; section \"{TITLE}\").")


def csv_frame(g: WholeGrid) -> pd.DataFrame:
    """``tables/whole_grid.csv``: every column, full precision."""
    return g.table


def page_table(g: WholeGrid, workload_name) -> pd.DataFrame:
    """The page's sortable table: numbers as numbers (the intervals in columns of their own)."""
    t = g.table
    rows = list(t.itertuples(index=False))
    out = pd.DataFrame({"series": [series_name(r) for r in rows],
                        "workload": [workload_name(str(w)) for w in t["workload"]],
                        "batch_size": t["batch_size"], "source": [source_text(r) for r in rows]})
    failed = t["source"] == FAILED
    for m in METRICS:
        for c in (m, f"{m}_low", f"{m}_high"):
            out[c] = t[c].where(~failed)
    out["cell_id"] = t["cell_id"]
    return out


CHART_COLUMNS = ["series", "workload", "batch_size", "cell_id", "level",
                 *[c for m in METRICS for c in (m, f"{m}_low", f"{m}_high")]]


def chart_points(g: WholeGrid) -> pd.DataFrame:
    """The predicted cells the page draws beside their series' measured points (those whose series
    is known)."""
    t = g.table
    return t[(t["source"] == PREDICTED) & (t["series"] != "")][CHART_COLUMNS]
