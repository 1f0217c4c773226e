"""Appendices: cells without measurements (status table), data checks, definitions."""
from __future__ import annotations

from orchestrator.analysis import format as fmt
from orchestrator.report.analyse import Analysis
from orchestrator.report.markdown import Col, bullets, col, dagger, heading, para, sim_legend, table
from orchestrator.store.schema import N_REQUESTS_OK, N_REQUESTS_TOTAL, TTFT_P50_MS

REASON_CHARS = 160

STATUS_COLS = [
    col("workload", "workload", "text"), col("GPU", "gpu", "text"), Col("model", lambda r: f"{r.model}{dagger(r)}"),
    col("quantization", "quantization", "text"), col("BS", "batch_size", "batch"), col("repeat", "repeat", "batch"),
    col("status", "status", "text"), Col("cell", lambda r: r.cell_id[:8]),
    Col("reason", lambda r: r.reason[:REASON_CHARS] + ("…" if len(r.reason) > REASON_CHARS else "")),
]


def status_section(a: Analysis) -> list[str]:
    out = heading(2, "Appendix A. Cells without measurements")
    st = a.status
    if st.empty:
        return out + para("Every cell of the sweep finished ok.")
    counts = st["status"].value_counts()
    out += para(f"{len(st)} cells have no metrics ({', '.join(f'{n} {s}' for s, n in counts.items())}); they appear "
                "only here, never in the metric tables.")
    return out + sim_legend(st) + table(st, STATUS_COLS)


CHECK_COLS = [
    Col("cell", lambda r: r.cell_id[:8]), Col("series", lambda r: f"{r.series}{dagger(r)}"),
    col("workload", "workload", "text"),
    col("BS", "batch_size", "batch"), col("flags", "flags", "text"), col("request rows", "rows", "batch"),
    col("runs n_requests_total", N_REQUESTS_TOTAL, "batch"),
    col("measured ok rows", "measured_ok", "batch"), col("runs n_requests_ok", N_REQUESTS_OK, "batch"),
    col("TTFT p50 from requests", "ttft_p50_ms_requests"), col("runs TTFT p50", TTFT_P50_MS),
]


def checks_section(a: Analysis) -> list[str]:
    out = heading(2, "Appendix B. Data checks")
    c = a.checks
    bad = c[~c["agrees"]]
    out += para(f"Each ok cell's request rows were re-aggregated and compared with its runs row (row count, measured "
                f"ok requests, TTFT p50 and E2E p99 to 1e-6): {len(c) - len(bad)} of {len(c)} cells agree.")
    return out + sim_legend(bad) + table(bad, CHECK_COLS)


def definitions_section(a: Analysis) -> list[str]:
    out = heading(2, "Appendix C. Definitions")
    return out + bullets([
        ("TTFT = first token − **scheduled** arrival; TPOT = (end − first token) ÷ (output tokens − 1); "
         "E2E = end − scheduled arrival; ITL = gaps between tokens (orchestrator.client.metrics)."),
        ("Throughputs count measured requests completed (warm-up is never served) and output tokens emitted "
         "inside the measured window, ÷ its length."),
        "Output tokens come from the engine (token ids / usage), never from stream chunks.",
        ("Mean running batch: the engine's own metric when it reports one, else the mean number of requests "
         "decoding in the window."),
        ("Repeats of one configuration are folded: means of latencies, throughputs and energies; sums of request "
         "counts; union of flags. Their spread: the Student-t 95% confidence interval of the mean (mean ± "
         "t(0.975, n − 1) × s ÷ √n) and the coefficient of variation s ÷ mean (s: sample standard "
         "deviation); none with one repeat."),
        (f"Baseline: every change (Δ, ×, saving) is relative to {a.baseline_phrase()}; the *base BS* column says "
         "which batch size each row is compared with."),
        ("Energy: *measured* only when read from the hardware (e.g. energy_source nvml); the simulated engine's "
         "energy is modeled (energy_source simulated), shown marked † and never flagged W, E or X (those flags are "
         "about a measurement)."),
        (f"Numbers are shown with at most 4 significant figures ({fmt.num(5781.3)}, {fmt.num(548.23)}, "
         f"{fmt.num(18.094)}, {fmt.num(0.6123)}); CSV copies of every table (full precision) are in tables/."),
    ])
