"""Section "Key answers": what batch size buys in energy, where the latency SLOs hold at each
offered rate, and what quantization buys in energy — one sentence per series, from the data
(``analysis.answers``)."""
from __future__ import annotations

import math

from orchestrator.analysis import answers
from orchestrator.analysis import format as fmt
from orchestrator.report.analyse import Analysis
from orchestrator.report.markdown import SIM_MARK, bullets, heading, para


def _mark(simulated: bool) -> str:
    return SIM_MARK if simulated else ""


def _mj(j: float) -> str:
    """J per token as mJ per token (3 significant figures)."""
    return f"{fmt.num(j * 1000)} mJ"


def knee_sentence(k: answers.EnergyKnee) -> str:
    fold = k.first_j_per_tok / k.knee_j_per_tok
    knee = (f"the knee is BS {k.knee_batch} ({_mj(k.knee_j_per_tok)}, {fold:.1f}× less)"
            if k.knee_batch != k.last_batch else f"every step still saves ≥ {answers.KNEE_SAVING:.0%} up to the "
            f"largest batch")
    last = "" if k.knee_batch == k.last_batch else (
        f"; BS {k.last_batch} gets to {_mj(k.last_j_per_tok)} ({k.first_j_per_tok / k.last_j_per_tok:.1f}×)")
    return (f"**{k.series}** ({k.workload}): {_mj(k.first_j_per_tok)} per output token at BS {k.first_batch}; "
            f"{knee}{last}.{_mark(k.simulated)}")


def slo_sentence(r: answers.SloRange) -> str:
    """Which settings of the series' batch knob meet the SLOs; for an engine with no such knob (an
    endpoint: the server schedules its batches) whether the server meets them."""
    head = f"**{r.series}** at {fmt.num(r.offered_rate_rps)} req/s ({r.workload}): "
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


def quant_sentence(rows: list[answers.QuantRatio]) -> str:
    first = rows[0]
    at = ", ".join(f"{r.ratio:.2f} at BS {r.batch_size} ({fmt.num(r.j_per_tok * 1000)} vs {_mj(r.base_j_per_tok)})"
                   for r in rows)
    differs = (f" (it ran {', '.join(first.differs)}; {first.base_series} did not)" if first.differs else "")
    return (f"**{first.series}** ({first.workload}): J per output token ÷ {first.base_series}'s = {at}{differs}."
            f"{_mark(any(r.simulated for r in rows))}")


def answer_groups(a: Analysis) -> list[tuple[str, list[str]]]:
    """The key answers as (lead, sentences) groups, in Markdown emphasis (``**series**``): the
    report's section and the HTML page's box both render these."""
    knees = answers.energy_knees(a.points)
    ranges = answers.slo_ranges(a.points, a.options.slo)
    ratios = answers.quant_ratios(a.points)
    groups = []
    if knees:
        groups.append((f"**Batch size and energy (static batches).** The knee is the first batch size after which "
                       f"the next swept one saves less than {answers.KNEE_SAVING:.0%} of the energy per token.",
                       [knee_sentence(k) for k in knees]))
    if ranges:
        groups.append((f"**Latency SLOs by offered rate** ({a.options.slo.describe()}, unsaturated).",
                       [slo_sentence(r) for r in ranges]))
    if ratios:
        by_series: dict[tuple, list] = {}
        for r in ratios:
            by_series.setdefault((r.series, r.workload), []).append(r)
        groups.append(("**What quantization buys in energy** (same model, GPU and workload; the same engine and "
                       "engine options where both ran them, else what differs is named; smallest and largest batch "
                       "both ran).", [quant_sentence(rows) for rows in by_series.values()]))
    return groups


def section(a: Analysis) -> list[str]:
    groups = answer_groups(a)
    if not groups:
        return []
    lines = heading(2, "Key answers")
    for lead, sentences in groups:
        lines += para(lead) + bullets(sentences)
    return lines
