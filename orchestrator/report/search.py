"""The report's search section (``## Search``), when the store holds a ``search.json``: the
answer, what it cost, why regions were ruled out, the feasible set, the pick against the grid's
optimum and frontier (where the store holds the whole grid), and every trial."""
from __future__ import annotations

import math

from orchestrator.analysis import format as fmt
from orchestrator.analysis.search import SearchView
from orchestrator.report.markdown import Col, bullets, col, heading, para, table
from orchestrator.search.answer import cost_line
from orchestrator.store.schema import ENERGY_PER_REQUEST_J, OFFERED_RATE_RPS, TPOT_P99_MS, TTFT_P99_MS

TRIAL_COLS = [
    col("#", "number", "text"), col("round", "round", "text"), col("params", "params", "text"),
    col("repeat", "repeat", "text"), col("source", "source", "text"), col("status", "status", "text"),
    Col("feasible", lambda r: "yes" if r.feasible else "no"), Col("ruled out by", lambda r: ", ".join(r.reasons)),
    col("value", "value"), col("TTFT p99 (ms)", TTFT_P99_MS), col("TPOT p99 (ms)", TPOT_P99_MS),
    col("J/output token", "energy_per_output_token_j"), col("J/request", ENERGY_PER_REQUEST_J),
    col("offered (req/s)", OFFERED_RATE_RPS), col("cell", "cell_id", "text"),
]
FEASIBLE_COLS = [col("params", "params", "text"), col("value", "value"), col("TTFT p99 (ms)", TTFT_P99_MS),
                 col("TPOT p99 (ms)", TPOT_P99_MS), col("J/request", ENERGY_PER_REQUEST_J),
                 col("cell", "cell_id", "text")]
FRONTIER_COLS = [col("params", "params", "text"), col("J/output token", "value"), col("TTFT p99 (ms)", TTFT_P99_MS),
                 col("TPOT p99 (ms)", TPOT_P99_MS), Col("pick", lambda r: "◀ pick" if r.is_pick else "")]

METHOD = ("Optuna's TPE sampler chooses each round's trials (as many as the cluster has GPUs of the type), "
          "with the SLO violations as its constraints (infeasible trials ranked by how far they miss); ordered "
          "axes such as the batch size are integer indices into their values, so the sampler knows their order "
          "and proposes only values of the grid. Trials are ordinary cells of this store. A point asked twice "
          "is told its known result (no new cell). Noise: the best feasible trial and its near-ties are measured "
          "again (confirmation repeats, their own seeds) and stay feasible only if every repeat is.")


def _answer(v: SearchView) -> list[str]:
    r = v.record
    slo = f"p99 TTFT ≤ {fmt.num(r.ttft_p99_slo_ms)} ms and p99 TPOT ≤ {fmt.num(r.tpot_p99_slo_ms)} ms, unsaturated"
    if r.pick is None:
        return para(f"**No candidate meets {slo}.**")
    p = r.pick
    extra = f" at {fmt.num(p.energy_per_request_j)} J/request" if r.kind == "capacity" else ""
    conf = (f"confirmed over {len(p.cell_ids)} repeats" if p.confirmed else "not confirmed by a repeat")
    return para(f"**Pick: {v.pick_params}**: {fmt.num(p.value)} {r.value_name}{extra} ({r.objective}, mean of "
                f"{len(p.cell_ids)} cell(s), {conf}), within {slo}.")


def _gap(gap: float) -> str:
    """``8.45% above`` / ``1.2% below`` / ``at`` the optimum (a repeat may measure below it)."""
    if gap == 0:
        return "at"
    return f"{fmt.num(100 * abs(gap))}% {'above' if gap > 0 else 'below'}"


def _grid(v: SearchView) -> list[str]:
    g = v.grid
    if g is None:
        return para("The store does not hold the whole grid, so there is no grid frontier to compare with: run the "
                    "same command with search.method=grid (it re-uses the search's cells) for one.")
    if g.n_feasible == 0:
        return para("The whole grid is in the store and none of its cells is feasible.")
    pick = v.record.pick  # (a finite mean gap comes from a pick's repeats)
    mean = (f" (the mean of its {len(pick.cell_ids)} repeats: {_gap(g.pick_mean_gap)})"
            if pick is not None and math.isfinite(g.pick_mean_gap) else "")
    cards = (f" The two cells ran on different GPUs ({fmt.gpus(g.gpus[0])} and {fmt.gpus(g.gpus[1])}): cards of "
             "one type can differ by a few per cent in power at the same settings." if g.gpus else "")
    out = para(f"The whole grid is in the store: {g.n_feasible} feasible cells; its optimum is "
               f"{g.optimum_params} at {fmt.num(g.optimum_value)} J/output token. The pick's cell measured "
               f"{fmt.num(g.pick_value)} J/output token: **{_gap(g.gap)} the grid's optimum**{mean}.{cards} "
               "Frontier of the feasible grid cells (none has both lower J/output token and lower p99 TPOT):")
    return out + table(g.frontier, FRONTIER_COLS)


def search_section(v: SearchView | None) -> list[str]:
    """``## Search`` (nothing when the store holds no search)."""
    if v is None:
        return []
    r = v.record
    out = heading(2, f"Search: {'least energy under latency SLOs' if r.kind == 'energy_slo' else 'capacity'}")
    axes = "; ".join(f"{a[0]} ∈ {{{', '.join(a[1:])}}}" for a in r.axes) or "no axis"
    out += para(f"Search {r.name} ({r.kind}, method {r.method}, seed {r.seed}): {r.value_name} over {axes}.", METHOD)
    out += _answer(v) + para(f"Cost: {cost_line(r)}.")
    out += heading(3, "Ruled out")
    out += bullets(v.regions) if v.regions else para("No trial was ruled out.")
    out += heading(3, "Feasible set")
    out += table(v.feasible, FEASIBLE_COLS) or para("No feasible trial.")
    out += heading(3, "Against the grid") + _grid(v)
    out += heading(3, "Every trial")
    out += para("source: measured (run by the search), store (complete before: resumed), cache (asked again: "
                "told its known result), prelaunch (a status row, never launched).") + table(v.trials, TRIAL_COLS)
    if r.headroom is not None and r.headroom.pick is not None:
        h = r.headroom.pick
        out += heading(3, "Headroom of the pick")
        out += para(f"A capacity search of the pick over the offered rates "
                    f"{', '.join(a for a in r.headroom.axes[0][1:]) if r.headroom.axes else '-'} req/s: it serves "
                    f"up to {fmt.num(h.value)} req/s within the SLOs at {fmt.num(h.energy_per_request_j)} J/request.")
    return out
