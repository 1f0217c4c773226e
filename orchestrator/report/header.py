"""The report's head: provenance, what is simulated or unmeasured, flag counts, contents."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd

from orchestrator.analysis import format as fmt
from orchestrator.analysis.dataset import CPU, FLAGS, flag_counts
from orchestrator.report.analyse import Analysis
from orchestrator.report.markdown import SIM_LEGEND, bullets, heading, para
from orchestrator.report.whole_grid import TITLE as WHOLE_GRID
from orchestrator.store.schema import ENERGY_NOTE, WORKLOAD_SOURCE

SECTIONS = [
    "1. Executive summary", "2. Detailed results", "3. Energy per batch size", "4. Scaling laws",
    "5. Roofline", "6. VRAM budget", "7. Cost and carbon", "8. Recommendations", "9. Plots",
    "Appendix A. Cells without measurements", "Appendix B. Data checks", "Appendix C. Definitions",
]


def _counts(series) -> str:
    return ", ".join(f"{n} {k}" for k, n in series.value_counts().items())


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _when(runs) -> str:
    t0, t1 = runs["started_unix_s"].min(), runs["finished_unix_s"].max()
    if pd.isna(t0) or pd.isna(t1):
        return ""
    return f" Cells ran between {_utc(t0)} and {_utc(t1)}."


def _units(ok) -> str:
    """The physical GPUs the ok cells ran on (by NVML UUID) and how many cells each: cells of one
    sweep may run on several cards of one type, whose power at the same settings differs (a cell
    measured over several GPUs counts for each)."""
    if "gpu_uuid" not in ok:
        return ""
    uuids = pd.Series([u for value in ok["gpu_uuid"] for u in fmt.gpu_uuids(value)], dtype=object)
    if uuids.empty:
        return ""
    parts = [f"{fmt.gpus(u)}: {n} cell{'s' * (n > 1)}" for u, n in uuids.value_counts().sort_index().items()]
    return f" Physical GPUs (NVML UUID): {len(parts)} ({', '.join(parts)})."


def _versions(ok) -> str:
    seen = sorted({v for v in ok["engine_versions"].dropna() if v and v != "{}"})
    if not seen:
        return ""
    pretty = []
    for text in seen[:4]:
        try:
            pretty.append("; ".join(f"{k} {v}" for k, v in json.loads(text).items()))
        except (ValueError, AttributeError):
            pretty.append(text)
    return "Engine versions: " + " | ".join(pretty) + ("" if len(seen) <= 4 else f" (+{len(seen) - 4} more)") + "."


METHODS = [("api", "API"), ("prompt_mode", "prompts sent as"), ("token_times_source", "token times from"),
           ("token_count_source", "output tokens counted from"), ("itl_basis", "inter-token latency per"),
           ("request_dialect", "request fields"), ("output_lengths_forced", "output lengths forced"),
           (WORKLOAD_SOURCE, "workload source")]
"""Runs columns that say how a cell was measured (endpoint and client modes, what its traffic was
made of), as the report names them."""


def _methods(ok) -> str:
    """How the ok cells were measured, where their rows say (each mode with its cell count), and
    what follows from it: prompt counts the server reported otherwise than built, lengths not forced."""
    parts = [f"{what} {_counts(ok[col].dropna())}" for col, what in METHODS if col in ok and ok[col].notna().any()]
    if not parts:
        return ""
    notes = []
    if "n_prompt_tokens_mismatch" in ok and ok["n_prompt_tokens_mismatch"].fillna(0).sum() > 0:
        n = int((ok["n_prompt_tokens_mismatch"].fillna(0) > 0).sum())
        notes.append(f"{n} cells had requests whose server-reported prompt tokens differ from the count built "
                     "(text prompts re-tokenized by the server, or a chat template other than the tokenizer's): "
                     "their input_tokens are the server's count")
    if "output_lengths_forced" in ok and (ok["output_lengths_forced"] == False).any():  # noqa: E712 (nullable)
        n = int((ok["output_lengths_forced"] == False).sum())  # noqa: E712
        notes.append(f"{n} cells could not force output lengths (the server refused vLLM's fields): max_tokens only "
                     "bounded them, so their T flag is expected")
    return "How measured: " + "; ".join(parts) + "." + "".join(f" {n[0].upper()}{n[1:]}." for n in notes)


def caveats(a: Analysis) -> list[str]:
    """Blockquotes for simulated rows and unmeasured energy (never shown as measurements)."""
    ok = a.data.ok
    out: list[str] = []
    sim = ok[ok["simulated"]]
    if len(sim):
        out += para(f"> **Simulated data — not measurements.** {len(sim)} of {len(ok)} ok cells ran on the "
                    "simulated engine (`engine=simulated`, `energy_source=simulated`): their throughput, latency "
                    "and energy are modeled by the roofline simulator, not measured on a GPU. Series from them "
                    "are marked † in every table, including the cost and recommendation tables; their modeled "
                    "energy is shown (marked †) but never counted as measured (`energy_measured` is false), and "
                    "the energy-measurement flags (W, E, X) are not raised for them.")
    cpu = ok[ok["device"] == CPU] if "device" in ok else ok.iloc[:0]
    if len(cpu):
        out += para(f"> **Ran on the CPU.** {len(cpu)} of {len(ok)} ok cells ran on the CPU "
                    f"(engine {_counts(cpu['engine'])}: no GPU of their config's type on the node): their GPU reads "
                    "`cpu` in every table and plot, and no GPU roofline applies to them.")
    none = ok[~ok["energy_available"]]
    if len(none):
        notes = "; ".join(sorted({str(n) for n in none[ENERGY_NOTE].dropna() if n}))[:300]
        out += para(f"> **Energy was not measured** for {len(none)} of {len(ok)} ok cells "
                    f"(energy_source: {_counts(none['energy_source'].fillna('none'))}{'; ' + notes if notes else ''}). "
                    "Energy, cost and fit sections say so for them instead of showing numbers.")
    return out


def flag_summary(a: Analysis) -> list[str]:
    ok = a.data.ok
    counts = flag_counts(ok)
    flagged = int((ok["flags"] != "").sum())
    parts = ", ".join(f"{n} {col.replace('_', ' ')} ({FLAGS[col][0]})" for col, n in counts.items())
    legend = [f"**{code}** — {meaning}" for code, meaning in FLAGS.values()]
    if ok["simulated"].any():
        legend.append(f"**†** — {SIM_LEGEND[2:]}")
    return para(f"**Flags.** {flagged} of {len(ok)} ok cells are flagged: {parts}. A flagged cell is marked "
                "with its codes in every table it appears in:") + bullets(legend)


def _lacking(a: Analysis) -> str:
    """Series that did not run the given --baseline-batch (their changes are empty)."""
    lacking = a.series_without_baseline()
    if not lacking:
        return ""
    return (f"{len(lacking)} series did not run BS {a.options.baseline_batch}, so their change columns are empty: "
            f"{'; '.join(lacking[:6])}{' …' if len(lacking) > 6 else ''}.")


def header(a: Analysis) -> list[str]:
    runs, ok, opts = a.data.runs, a.data.ok, a.options
    out = heading(1, f"Batch-size report: {a.data.name}")
    out += para(f"Generated by `python -m orchestrator.report` from `{a.data.path}`: {len(runs)} cells "
                f"({_counts(runs['status'])}).{_when(runs)} Every number below is computed from the sweep's "
                "Parquet tables (runs, requests, power); every sentence is generated from them.")
    if opts.write_html:
        out += para("Interactive version (filters, hover, per-cell drill-down; opens from disk): "
                    "[report.html](report.html).")
    out += caveats(a)
    out += para(f"Engines: {_counts(ok['engine'])}. Energy sources: {_counts(ok['energy_source'].fillna('none'))}. "
                f"GPUs: {', '.join(sorted(ok['gpu'].unique()))}.{_units(ok)} "
                f"Models: {', '.join(sorted(ok['model'].unique()))}. "
                f"Workloads: {', '.join(a.workload_name(w) for w in sorted(ok['workload'].unique()))}. "
                f"{_versions(ok)}", _methods(ok))
    how = "" if opts.baseline_batch is not None else "; set one batch size for all with --baseline-batch"
    out += para(f"Baseline: **{a.baseline_phrase()}** (every change is relative to it, within the same "
                f"model/quantization/GPU/workload series{how}). Latency SLOs for recommendations: "
                f"{opts.slo.describe()}.", _lacking(a))
    out += flag_summary(a)
    first = [WHOLE_GRID] if a.whole_grid is not None else []
    return out + para("Contents: " + " · ".join(first + SECTIONS) + ".")
