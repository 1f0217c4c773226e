"""Section "Key answers": what batch size buys in energy, where the latency SLOs hold at each
offered rate, and what quantization buys in energy — one sentence per series, from the data
(``analysis.answers``) — and, where the sweep varied prefix caching, what the prefix cache saves
(``cache_answers``: a table in report.md, a sentence per pair on the HTML page), and, where the
store attributed energy to requests, what a typical request costs (``request_energy``: likewise);
for an active sweep's store, first, the least J per output token over its whole grid, measured or
predicted (``whole_grid``: the only answer that reads predictions, and says which it is)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from orchestrator.analysis import answers
from orchestrator.analysis import format as fmt
from orchestrator.report import cache_answers, request_energy, whole_grid
from orchestrator.report.analyse import Analysis
from orchestrator.report.markdown import SIM_MARK, bullets, heading, para


@dataclass(frozen=True)
class AnswerGroup:
    """A group of key answers: its ``lead`` and ``sentences`` (Markdown emphasis, ``**series**``);
    ``table``: Markdown lines report.md shows instead of the sentences (none: it lists them), with
    ``note`` under it (the HTML page adds the note to the lead)."""

    lead: str
    sentences: list[str]
    table: tuple[str, ...] = ()
    note: str = ""


def _mark(simulated: bool) -> str:
    return SIM_MARK if simulated else ""


def _mj(j: float) -> str:
    """J per token as mJ per token (3 significant figures)."""
    return f"{fmt.num(j * 1000)} mJ"


def knee_sentence(k: answers.EnergyKnee, workload: str | None = None) -> str:
    """``workload``: how the series' workload is named inside parentheses (default: its name)."""
    fold = k.first_j_per_tok / k.knee_j_per_tok
    knee = (f"the knee is BS {k.knee_batch} ({_mj(k.knee_j_per_tok)}, {fold:.1f}× less)"
            if k.knee_batch != k.last_batch else f"every step still saves ≥ {answers.KNEE_SAVING:.0%} up to the "
            f"largest batch")
    last = "" if k.knee_batch == k.last_batch else (
        f"; BS {k.last_batch} gets to {_mj(k.last_j_per_tok)} ({k.first_j_per_tok / k.last_j_per_tok:.1f}×)")
    return (f"**{k.series}** ({workload or k.workload}): {_mj(k.first_j_per_tok)} per output token at BS "
            f"{k.first_batch}; {knee}{last}.{_mark(k.simulated)}")


def slo_sentence(r: answers.SloRange, workload: str | None = None) -> str:
    """Which settings of the series' batch knob meet the SLOs; for an engine with no such knob (an
    endpoint: the server schedules its batches) whether the server meets them."""
    head = f"**{r.series}** at {fmt.num(r.offered_rate_rps)} req/s ({workload or r.workload}): "
    if not r.knob:
        why = "; ".join(why for _, why in r.failures)
        met = "the server meets them" if r.passing else f"the server does not meet them ({why})"
        return head + met + f".{_mark(r.simulated)}"
    fails = "; ".join(f"BS {b}: {why}" for b, why in r.failures)
    if not r.passing:
        return head + f"no {r.knob} meets the SLOs ({fails}).{_mark(r.simulated)}"
    ok = ", ".join(str(b) for b in r.passing)
    cheapest = ""
    if r.cheapest and len(r.passing) > 1:
        others = ", ".join(f"{_mj(j)} at BS {b}" for b, j in zip(r.passing, r.passing_j_per_tok)
                           if b != r.cheapest[0] and not math.isnan(j))
        cheapest = f" — least energy at BS {r.cheapest[0]}: {_mj(r.cheapest[1])} per output token" + (
            f" (vs {others})" if others else "")
    return head + f"{r.knob} {ok} meet{'s' if len(r.passing) == 1 else ''} them{cheapest}" + (
        f"; not {fails}" if fails else "") + f".{_mark(r.simulated)}"


def quant_sentence(rows: list[answers.QuantRatio], workload: str | None = None) -> str:
    first = rows[0]
    at = ", ".join(f"{r.ratio:.2f} at BS {r.batch_size} ({fmt.num(r.j_per_tok * 1000)} vs {_mj(r.base_j_per_tok)})"
                   for r in rows)
    differs = (f" (it ran {', '.join(first.differs)}; {first.base_series} did not)" if first.differs else "")
    return (f"**{first.series}** ({workload or first.workload}): J per output token ÷ {first.base_series}'s = "
            f"{at}{differs}.{_mark(any(r.simulated for r in rows))}")


def answer_groups(a: Analysis) -> list[AnswerGroup]:
    """The key answers: the report's section and the HTML page's box both render these."""
    knees = answers.energy_knees(a.points)
    ranges = answers.slo_ranges(a.points, a.options.slo)
    ratios = answers.quant_ratios(a.points)
    groups = []
    grid = a.whole_grid
    best = whole_grid.best_sentence(grid, lambda w: a.workload_name(w, aside=True)) if grid is not None else ""
    if grid is not None and best:  # an active sweep's: the one answer over its measured and predicted cells
        groups.append(AnswerGroup(whole_grid.answer_lead(grid), [best]))
    if knees:
        groups.append(AnswerGroup(
            f"**Batch size and energy (static batches).** The knee is the first batch size after which the next "
            f"swept one saves less than {answers.KNEE_SAVING:.0%} of the energy per token.",
            [knee_sentence(k, a.workload_name(k.workload, aside=True)) for k in knees]))
    if ranges:
        groups.append(AnswerGroup(f"**Latency SLOs by offered rate** ({a.options.slo.describe()}, unsaturated).",
                                  [slo_sentence(r, a.workload_name(r.workload, aside=True)) for r in ranges]))
    if ratios:
        by_series: dict[tuple, list] = {}
        for r in ratios:
            by_series.setdefault((r.series, r.workload), []).append(r)
        groups.append(AnswerGroup(
            "**What quantization buys in energy** (same model, GPU and workload; the same engine and engine options "
            "where both ran them, else what differs is named; smallest and largest batch both ran).",
            [quant_sentence(rows, a.workload_name(rows[0].workload, aside=True)) for rows in by_series.values()]))
    if a.cache_savings:
        groups.append(AnswerGroup(
            cache_answers.LEAD,
            [cache_answers.saving_sentence(s, a.workload_name(s.workload, aside=True)) for s in a.cache_savings],
            tuple(cache_answers.savings_table(a.cache_savings, a.workload_name)), cache_answers.NOTE))
    if a.typical_requests:
        groups.append(AnswerGroup(
            request_energy.LEAD,
            [request_energy.typical_sentence(t, a.workload_name(t.workload, aside=True)) for t in a.typical_requests],
            tuple(request_energy.typical_table(a.typical_requests, a.workload_name)), request_energy.NOTE))
    return groups


def section(a: Analysis) -> list[str]:
    groups = answer_groups(a)
    if not groups:
        return []
    lines = heading(2, "Key answers")
    for g in groups:
        lines += para(g.lead)
        lines += list(g.table) + para(g.note) if g.table else bullets(g.sentences)
    return lines
