"""Section 1: baseline vs best batch size per workload, with sentences generated from the data."""
from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.analysis import format as fmt
from orchestrator.analysis.dataset import FLAGS
from orchestrator.analysis.tables import SUMMARY_METRICS
from orchestrator.analysis.traffic import workload_names
from orchestrator.report.analyse import Analysis, baseline_label
from orchestrator.report.markdown import SIM_MARK, heading, para, sim_legend
from orchestrator.store.schema import (
    ENERGY_PER_REQUEST_J,
    OFFERED_RATE_RPS,
    OUTPUT_THROUGHPUT_TOK_S,
    REQUEST_THROUGHPUT_RPS,
    TPOT_P50_MS,
    TTFT_P50_MS,
)

METRIC_NAMES = {
    OUTPUT_THROUGHPUT_TOK_S: "output tok/s",
    REQUEST_THROUGHPUT_RPS: "req/s",
    TTFT_P50_MS: "TTFT p50 (ms)",
    TPOT_P50_MS: "TPOT p50 (ms)",
    ENERGY_PER_REQUEST_J: "J/request (gross)",
}
RATE_BOUND_PCT = 5.0


def series_count(n: int, verb_singular: str = "", verb_plural: str = "") -> str:
    """``"1 series stays"`` / ``"3 series stay"``."""
    verb = verb_singular if n == 1 else verb_plural
    return f"{n} series" + (f" {verb}" if verb else "")


def workload_title(points: pd.DataFrame, workload: str) -> str:
    """``chat_medium — poisson arrivals at 20 req/s offered`` (its points' offered rates, lowest to
    highest where they differ), the workload named with its traffic's source where not synthetic."""
    rows = points[points["workload"] == workload]
    p = rows.iloc[0]
    name = workload_names(rows)[workload]
    if p["arrival"] == "offline":
        return f"{name} — static (offline) batches"
    rates = rows[OFFERED_RATE_RPS].dropna()
    lo, hi = fmt.num(rates.min()), fmt.num(rates.max())
    rate = f" at {lo if lo == hi else f'{lo}–{hi}'} req/s offered" if len(rates) else ""
    return f"{name} — {p['arrival']} arrivals{rate}"


def _span(values: pd.Series, render=fmt.pct) -> str:
    v = values.dropna()
    if v.empty:
        return fmt.MISSING
    return render(v.min()) if np.isclose(v.min(), v.max()) else f"{render(v.min())} to {render(v.max())}"


def _bs_span(values: pd.Series) -> str:
    v = values.dropna()
    lo, hi = fmt.batch(v.min()), fmt.batch(v.max())
    return lo if lo == hi else f"{lo}–{hi}"


def throughput_sentence(s: pd.DataFrame, base: str) -> str:
    """``base``: the baseline in words, e.g. "BS 4"."""
    gain = s["tput_change_output_throughput_tok_s_pct"]
    top = s.loc[gain.idxmax()]
    if gain.max() < 1.0:
        return f"No batch size beats {base} on output throughput by more than 1% in any series."
    lead = (f"For {top.series}, BS {fmt.batch(top.tput_batch_size)} gives the highest output throughput"
            if len(s) == 1 else
            f"Across {len(s)} series the best-throughput batch size is {_bs_span(s['tput_batch_size'])}; output "
            f"throughput changes by {_span(gain)} over {base}, most for {top.series}")
    return (f"{lead}: {fmt.num(top.base_output_throughput_tok_s)} → {fmt.num(top.tput_output_throughput_tok_s)} tok/s "
            f"({fmt.pct(top.tput_change_output_throughput_tok_s_pct)}, "
            f"{fmt.ratio(top.tput_output_throughput_tok_s / top.base_output_throughput_tok_s)}) at BS "
            f"{fmt.batch(top.tput_batch_size)}.")


def rate_sentences(s: pd.DataFrame, base: str) -> list[str]:
    """Open-loop workloads: is the baseline saturated, or is the arrival rate the bound?"""
    if s["base_arrival"].iloc[0] == "offline" or s["base_offered_rate_rps"].isna().all():
        return []
    rate = fmt.num(s["base_offered_rate_rps"].iloc[0])
    out = []
    sat = s[s["base_saturated"].eq(True)]
    if len(sat):
        out.append(f"At {base}, {len(sat)} of {len(s)} series cannot keep up with the offered {rate} req/s "
                   f"(saturated; {'it completes' if len(sat) == 1 else 'they complete'} "
                   f"{_span(sat['base_request_throughput_rps'], fmt.num)} req/s).")
    calm = s[~s["base_saturated"].eq(True) & ~s["tput_saturated"].eq(True)]
    bound = calm[calm["tput_change_request_throughput_rps_pct"].abs() < RATE_BOUND_PCT]
    if len(bound):
        out.append(f"For {len(bound)} series request throughput stays within {RATE_BOUND_PCT:.0f}% of the baseline's "
                   f"({_span(bound['base_request_throughput_rps'], fmt.num)} req/s, {rate} offered): the arrival "
                   "rate, not the GPU, bounds requests, so batching shows in tokens and latency.")
    still = s[s["tput_saturated"].eq(True)]
    if len(still):
        out.append(f"{series_count(len(still), 'stays', 'stay')} saturated even at the best-throughput batch size: "
                   "the offered load "
                   "exceeds what that configuration serves at any swept batch size.")
    return out


def latency_sentence(s: pd.DataFrame) -> str:
    ttft, tpot = s["tput_change_ttft_p50_ms_pct"], s["tput_change_tpot_p50_ms_pct"]
    if len(s) == 1:
        return (f"At that batch size TPOT p50 changes by {fmt.pct(tpot.iloc[0])} and TTFT p50 by "
                f"{fmt.pct(ttft.iloc[0])}.")
    return (f"At the best-throughput batch size TPOT p50 changes by {fmt.pct(tpot.median())} (median; "
            f"{_span(tpot)}) and TTFT p50 by {fmt.pct(ttft.median())} ({_span(ttft)}).")


def energy_sentence(s: pd.DataFrame, base: str) -> str:
    e = s[s["energy_batch_size"].notna() & s["base_energy_per_request_j"].notna()]
    if e.empty:
        return "Energy was not measured for this workload (or not at the baseline): no energy ranking."
    saving = -e["energy_change_energy_per_request_j_pct"]
    top = e.loc[saving.idxmax()]
    return (f"Gross energy per request is lowest at BS {_bs_span(e['energy_batch_size'])}, "
            f"{_span(e['energy_change_energy_per_request_j_pct'])} against {base}; the largest saving is "
            f"{top.series}: {fmt.num(top.base_energy_per_request_j)} → {fmt.num(top.energy_energy_per_request_j)} "
            f"J/request at BS {fmt.batch(top.energy_batch_size)} "
            f"({fmt.pct(top.energy_change_energy_per_request_j_pct)}).")


def flag_sentence(cells: pd.DataFrame) -> str:
    flagged = cells[cells["flags"] != ""]
    if flagged.empty:
        return f"None of the {len(cells)} cells of this workload is flagged."
    parts = [f"{int(cells[c].eq(True).sum())} {code}" for c, (code, _) in FLAGS.items() if cells[c].eq(True).any()]
    verb = "is" if len(flagged) == 1 else "are"
    return f"{len(flagged)} of the {len(cells)} cells of this workload {verb} flagged ({', '.join(parts)})."


def _cell(row, role: str, metric: str) -> str:
    return fmt.num(getattr(row, f"{role}_{metric}"))


def _bs_cell(row, role: str) -> str:
    b = getattr(row, f"{role}_batch_size")
    flags = getattr(row, f"{role}_flags")
    if fmt.is_missing(b):
        return fmt.MISSING
    return fmt.batch(b) + (f" [{flags}]" if isinstance(flags, str) and flags else "")


def _true(value) -> bool:
    """True for a true bool (numpy or not); False for False, None or NaN (no such point)."""
    return not fmt.is_missing(value) and bool(value)


def series_rows(s: pd.DataFrame) -> list[str]:
    lines = ["| series | metric | baseline | best throughput | change | best energy | change |",
             "|---|---|---|---|---|---|---|"]
    for r in s.itertuples(index=False):
        sim = _true(r.base_simulated) or _true(r.tput_simulated) or _true(r.energy_simulated)
        label = r.series + (SIM_MARK if sim else "")
        lines.append(f"| {label} | batch size [flags] | {_bs_cell(r, 'base')} | {_bs_cell(r, 'tput')} | | "
                     f"{_bs_cell(r, 'energy')} | |")
        for m in SUMMARY_METRICS:
            lines.append(f"| | {METRIC_NAMES[m]} | {_cell(r, 'base', m)} | {_cell(r, 'tput', m)} | "
                         f"{fmt.pct(getattr(r, f'tput_change_{m}_pct'))} | {_cell(r, 'energy', m)} | "
                         f"{fmt.pct(getattr(r, f'energy_change_{m}_pct'))} |")
    return lines + [""]


def _base_words(with_base: pd.DataFrame) -> str:
    """The baseline of these series in words: "BS 4", or "each series' smallest batch (BS 1/4)"."""
    label = baseline_label(with_base["base_batch_size"])
    return f"each series' smallest batch ({label})" if "/" in label else label


def section(a: Analysis) -> list[str]:
    out = heading(2, SECTION_TITLE)
    ok = a.data.ok
    out += para(f"{len(ok)} ok cells form {a.points[['series', 'workload']].drop_duplicates().shape[0]} series "
                f"(model/quantization/GPU under one workload) over batch sizes "
                f"{', '.join(fmt.batch(b) for b in sorted(a.points['batch_size'].unique()))}. Per series, the "
                f"baseline — {a.baseline_phrase()} — is compared with the batch size of highest output throughput "
                "and that of lowest gross J/request; every change below is relative to it.")
    out += sim_legend(a.summary.rename(columns={"base_simulated": "simulated"}))
    for wl in sorted(a.points["workload"].unique()):
        s = a.summary[a.summary["workload"] == wl]
        out += heading(3, workload_title(a.points, wl))
        with_base = s[s["base_batch_size"].notna()]
        missing = len(s) - len(with_base)
        if with_base.empty:
            out += para(f"No series of this workload ran BS {a.options.baseline_batch}: nothing to compare against.")
            continue
        base = _base_words(with_base)
        out += para(throughput_sentence(with_base, base), *rate_sentences(with_base, base),
                    latency_sentence(with_base), energy_sentence(with_base, base),
                    flag_sentence(ok[ok["workload"] == wl]),
                    f"{missing} series lack BS {a.options.baseline_batch} and are left out here." if missing else "")
        out += series_rows(with_base)
    return out


SECTION_TITLE = "1. Executive summary"
