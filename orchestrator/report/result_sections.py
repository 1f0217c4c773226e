"""Sections 2 (detailed results) and 3 (energy per batch size), per workload and GPU."""
from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from orchestrator.analysis import format as fmt
from orchestrator.analysis.energy import PREFILL_ENERGY_PCT, gpu_shares
from orchestrator.analysis.tables import PREFIX_CACHE_HIT_PCT
from orchestrator.report.analyse import Analysis
from orchestrator.report.markdown import Col, col, heading, para, series_label, sim_legend, table
from orchestrator.report.summary import workload_title
from orchestrator.store.schema import (
    E2E_P50_MS,
    E2E_P99_MS,
    ENERGY_J,
    ENERGY_NOTE,
    ENERGY_PER_1K_OUTPUT_TOKENS_J,
    ENERGY_PER_1K_PROMPT_TOKENS_J,
    ENERGY_PER_REQUEST_J,
    ENERGY_SOURCE,
    GPU_UTIL_MEAN_PCT,
    IDLE_POWER_W,
    MEAN_POWER_W,
    MEAN_RUNNING_BATCH,
    N_REQUESTS_MEASURED,
    NET_ENERGY_PER_1K_OUTPUT_TOKENS_J,
    NET_ENERGY_PER_REQUEST_J,
    OUTPUT_THROUGHPUT_TOK_S,
    OUTPUT_TOK_S_PER_GPU,
    OUTPUT_TOKENS_PER_REQUEST_MEAN,
    REQUEST_THROUGHPUT_RPS,
    TENSOR_PARALLEL_SIZE,
    TPOT_P50_MS,
    TPOT_P99_MS,
    TTFT_P50_MS,
    TTFT_P99_MS,
)

SERIES = Col("series", series_label)
BATCH = col("BS", "batch_size", "batch")
FLAGS = col("flags", "flags", "text")
BASE = col("base BS", "baseline_batch_size", "batch")
"""The batch size the row's Δ / × columns are relative to."""


def groups(df: pd.DataFrame) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """(workload, gpu, rows) in sorted order."""
    for (wl, gpu), g in df.groupby(["workload", "gpu"], sort=True):
        yield wl, gpu, g


DETAIL_COLS = [
    SERIES, BATCH, FLAGS, col("repeats", "n_repeats", "batch"),
    col("requests", N_REQUESTS_MEASURED), col("ok %", "success_pct"),
    col("req/s", REQUEST_THROUGHPUT_RPS), col("output tok/s", OUTPUT_THROUGHPUT_TOK_S), BASE,
    col("Δ tok/s", "change_output_throughput_tok_s_pct", "pct"),
    col("TTFT p50 (ms)", TTFT_P50_MS), col("TTFT p99 (ms)", TTFT_P99_MS),
    col("Δ TTFT p50", "change_ttft_p50_ms_pct", "pct"),
    col("TPOT p50 (ms)", TPOT_P50_MS), col("TPOT p99 (ms)", TPOT_P99_MS),
    col("Δ TPOT p50", "change_tpot_p50_ms_pct", "pct"),
    col("E2E p50 (ms)", E2E_P50_MS), col("E2E p99 (ms)", E2E_P99_MS),
    col("mean running batch", MEAN_RUNNING_BATCH), col("output tok/request", OUTPUT_TOKENS_PER_REQUEST_MEAN),
    Col("cell", lambda r: r.cell_id[:8] if "," not in r.cell_id else f"{r.cell_id.count(',') + 1} cells"),
]
HIT = col("prefix cache hit %", PREFIX_CACHE_HIT_PCT)
"""Where some point has a hit rate: cached ÷ prompt tokens of the measured ok requests (a mean over repeats)."""
HIT_TEXT = ("*Prefix cache hit %*: cached ÷ prompt tokens of the measured ok requests, as the engine reported "
            "them (— where it did not).")


GPUS = [col("GPUs", TENSOR_PARALLEL_SIZE, "batch"), col("tok/s per GPU", OUTPUT_TOK_S_PER_GPU)]
"""Where some cell spans several GPUs (tensor parallelism): how many, and output tok/s over them."""


def detail_cols(detail: pd.DataFrame) -> list[Col]:
    """``DETAIL_COLS``, with the GPUs and tok/s per GPU after tok/s where some cell spans several,
    and the prefix cache's hit rate before the cell where some point has one."""
    cols = list(DETAIL_COLS)
    if OUTPUT_TOK_S_PER_GPU in detail:
        at = next(i for i, c in enumerate(cols) if c.header == "output tok/s") + 1
        cols[at:at] = GPUS
    return cols[:-1] + ([HIT] if PREFIX_CACHE_HIT_PCT in detail else []) + cols[-1:]


def detail_section(a: Analysis) -> list[str]:
    out = heading(2, "2. Detailed results")
    out += para(f"Per workload and GPU, one row per series and batch size. Requests: measured requests (warm-up "
                f"excluded); ok %: of those, the share that succeeded. Δ columns: change relative to "
                f"{a.baseline_phrase()}; *base BS* is the batch size each row is compared with. Throughputs count "
                "what completed inside the measured window; TTFT is measured from the **scheduled** arrival, so "
                "queueing is not hidden.", HIT_TEXT if PREFIX_CACHE_HIT_PCT in a.detail else "")
    out += sim_legend(a.detail)
    for wl, gpu, g in groups(a.detail):
        out += heading(3, f"{workload_title(a.points, wl)} · {gpu}")
        folded = g[g["n_cells"] > 1]
        if len(folded):
            out += para(f"{len(folded)} rows fold repeats ({int(folded['n_cells'].max())} cells at most): means of "
                        "rates and latency percentiles, sums of request counts.")
        sat = g[g["flags"].str.contains("S")]
        if len(sat):
            out += para(f"{len(sat)} of {len(g)} rows are saturated (S): their queue grows, so their latencies "
                        "depend on the window's length.")
        out += table(g, detail_cols(a.detail))
    return out


ENERGY_COLS = [
    SERIES, BATCH, FLAGS, col("output tok/s", OUTPUT_THROUGHPUT_TOK_S), BASE,
    col("J/request gross", ENERGY_PER_REQUEST_J), col("J/request net", NET_ENERGY_PER_REQUEST_J),
    col("J/1k tok gross", ENERGY_PER_1K_OUTPUT_TOKENS_J), col("J/1k tok net", NET_ENERGY_PER_1K_OUTPUT_TOKENS_J),
    col("GPU util %", GPU_UTIL_MEAN_PCT), col("mean W", MEAN_POWER_W), col("idle W", IDLE_POWER_W),
    col("Δ energy gross", "change_energy_per_request_j_pct", "pct"),
    col("Δ energy net", "change_net_energy_per_request_j_pct", "pct"),
    col("throughput scaling", "throughput_scaling_x", "ratio"),
]
PROMPT_J = col("J/1k prompt tok gross", ENERGY_PER_1K_PROMPT_TOKENS_J)
PROMPT_TEXT = ("*J/1k prompt tok*: gross energy ÷ the prompt tokens of the requests whose first token came in the "
               "window (their prefill was done in it) × 1000, beside J per 1k output tokens for traffic with long "
               "prompts.")


PREFILL = col("prefill % of net", PREFILL_ENERGY_PCT)
PREFILL_TEXT = ("*Prefill % of net*: where the window's energy was attributed to the engine's steps "
                "(docs/energy_attribution.md), prefill's share of the steps' net energy (a mean over repeats); "
                "the per-request split is in section 2, *Per-request energy*.")


def energy_cols(energy: pd.DataFrame) -> list[Col]:
    """``ENERGY_COLS`` with gross J per 1k prompt tokens and prefill's share of the net energy after the
    per-1k-output-token columns and the prefix cache's hit rate last, where some point has them."""
    cut = [c.header for c in ENERGY_COLS].index("J/1k tok net") + 1
    prompt = [PROMPT_J] if ENERGY_PER_1K_PROMPT_TOKENS_J in energy else []
    prompt += [PREFILL] if PREFILL_ENERGY_PCT in energy else []
    return ENERGY_COLS[:cut] + prompt + ENERGY_COLS[cut:] + ([HIT] if PREFIX_CACHE_HIT_PCT in energy else [])


def _not_measured(g: pd.DataFrame) -> str:
    notes = sorted({str(n) for n in g[ENERGY_NOTE].dropna() if n})
    sources = ", ".join(sorted(g[ENERGY_SOURCE].fillna("none").unique()))
    return (f"Energy was not measured for these cells (energy_source={sources}"
            f"{': ' + '; '.join(notes) if notes else ''}); only throughput is shown.")


def energy_section(a: Analysis) -> list[str]:
    out = heading(2, "3. Energy per batch size")
    out += para("Gross = the GPU energy counter's delta over the measured window; net = gross − idle power × "
                "window (the idle baseline measured with the model loaded). Per request: ÷ the requests' worth of "
                "output tokens emitted in the window (those tokens ÷ mean output tokens of a measured request; "
                "stores written before 2026-12-06: ÷ requests completed in it); per 1k tokens: ÷ output tokens "
                "emitted in it × 1000. Δ energy: change of J/request "
                f"relative to {a.baseline_phrase()}; throughput scaling: output tok/s ÷ that of the row's base BS.",
                PROMPT_TEXT if ENERGY_PER_1K_PROMPT_TOKENS_J in a.energy else "",
                PREFILL_TEXT if PREFILL_ENERGY_PCT in a.energy else "", HIT_TEXT if PREFIX_CACHE_HIT_PCT in a.energy else "")
    out += sim_legend(a.energy)
    for wl, gpu, g in groups(a.energy):
        out += heading(3, f"{workload_title(a.points, wl)} · {gpu}")
        if not g["energy_available"].any():
            out += para(_not_measured(g))
        elif not g["energy_available"].all():
            missing = g[~g["energy_available"]]
            out += para(f"{len(missing)} rows have no energy: {_not_measured(missing)}")
        modeled = g[g["energy_available"] & g["simulated"]]
        if len(modeled):
            out += para(f"The energy of {len(modeled)} of {len(g)} rows (†) is modeled by the simulator "
                        "(energy_source=simulated), not measured.")
        out += para(_energy_sentence(g))
        out += table(g, energy_cols(a.energy))
    return out + gpu_share_lines(a)


GPU_SHARE_COLS = [
    col("workload", "workload", "text"), col("GPU", "gpu", "text"), SERIES, BATCH, col("repeat", "repeat", "batch"),
    col("GPUs", "gpus", "batch"), col("energy (J)", ENERGY_J), col("each GPU's share", "shares", "text"),
    col("largest share %", "max_share_pct"), col("counter ≠ power on", "mismatched_gpus", "text"),
    Col("cell", lambda r: r.cell_id[:8]),
]


def gpu_share_lines(a: Analysis) -> list[str]:
    """Where some cell's energy is summed over several GPUs: each GPU's share of it."""
    shares = gpu_shares(a.data.ok)
    if shares.empty:
        return []
    return (heading(3, "Energy per GPU") + para(
        f"{len(shares)} cells measured the energy of several GPUs (a cell over N GPUs, or a server's GPUs): the "
        "window's energy of each GPU (its own counter) as a share of the cell's, and any GPU whose counter and "
        "integrated power disagreed on their own (the cell is flagged E).") + table(shares, GPU_SHARE_COLS))


def _energy_sentence(g: pd.DataFrame) -> str:
    m = g[g["energy_available"] & g["change_energy_per_request_j_pct"].notna()]
    if m.empty:
        return ""
    best = m.loc[m["change_energy_per_request_j_pct"].idxmin()]
    share = (best[NET_ENERGY_PER_REQUEST_J] / best[ENERGY_PER_REQUEST_J] * 100.0
             if best[ENERGY_PER_REQUEST_J] else float("nan"))
    kind = "modeled (†) " if best["simulated"] else ""
    return (f"The lowest {kind}gross energy per request relative to BS {fmt.batch(best['baseline_batch_size'])} is "
            f"{fmt.num(best['energy_per_request_j'])} J ({fmt.pct(best['change_energy_per_request_j_pct'])}) "
            f"for {best['series']} at BS {fmt.batch(best['batch_size'])}; there {fmt.num(share)}% of the gross energy "
            "is above the idle baseline.")
