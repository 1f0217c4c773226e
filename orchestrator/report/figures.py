"""Section 9: the PNGs (written next to report.md) and their captions."""
from __future__ import annotations

from concurrent.futures import Executor, Future
from pathlib import Path

import pandas as pd

from orchestrator.analysis import plots, request_plots
from orchestrator.analysis.dataset import SweepError
from orchestrator.report.analyse import Analysis
from orchestrator.report.markdown import heading, image, para
from orchestrator.report.parallel import InProcess
from orchestrator.store.schema import ENERGY_PER_1K_OUTPUT_TOKENS_J, OUTPUT_THROUGHPUT_TOK_S

POWER_CANDIDATES = 8


def _note(a: Analysis) -> str:
    return " — simulated, not measured" if a.points["simulated"].all() else ""


def power_cell(a: Analysis) -> pd.Series | None:
    """The ok cell of ``--power-cell`` (id or unique prefix; ``SweepError`` if unknown), else the
    highest-throughput ok cell that has power samples (None when none of the top few has)."""
    ok = a.data.ok
    wanted = a.options.power_cell
    if wanted:
        hits = ok[ok["cell_id"].str.startswith(wanted)]
        if len(hits) != 1:
            raise SweepError(f"--power-cell {wanted}: {'no' if hits.empty else 'more than one'} ok cell matches")
        return hits.iloc[0]
    for _, row in ok.sort_values(OUTPUT_THROUGHPUT_TOK_S, ascending=False).head(POWER_CANDIDATES).iterrows():
        if not a.data.power(row["cell_id"]).empty:
            return row
    return None


FILES = {
    "throughput": "throughput_vs_batch.png", "energy": "energy_per_token_vs_batch.png",
    "pareto": "latency_throughput_pareto.png", "roofline": "roofline.png", "power": "power_timeline.png",
    "ttft_input": "ttft_vs_input_tokens.png",
}


def figure_jobs(a: Analysis, out: Path) -> dict[str, tuple]:
    """name -> (plot function, arguments) of every PNG this sweep can have, largest first."""
    note = _note(a)
    jobs: dict[str, tuple] = {}  # name -> (plot function, *its arguments)
    if a.any_energy:
        jobs["energy"] = (plots.plot_energy_per_token, a.points, a.fits[ENERGY_PER_1K_OUTPUT_TOKENS_J],
                          out / FILES["energy"], note)
    jobs["throughput"] = (plots.plot_throughput, a.points, out / FILES["throughput"], note)
    jobs["pareto"] = (plots.plot_pareto, a.points, out / FILES["pareto"], note)
    jobs["roofline"] = (plots.plot_roofline, a.roofline, a.roofs, out / FILES["roofline"], note)
    sample = request_plots.varied(a.request_sample)
    if len(sample):
        jobs["ttft_input"] = (request_plots.plot_ttft_vs_input, sample, out / FILES["ttft_input"], note)
    cell = power_cell(a)
    if cell is not None:
        jobs["power"] = (plots.plot_power_timeline, a.data.power(cell["cell_id"]), cell, out / FILES["power"])
    return jobs


def submit_figures(a: Analysis, out: Path, executor: Executor) -> dict[str, Future]:
    """Start drawing every PNG on ``executor``; name -> future of its path."""
    return {name: executor.submit(fn, *args) for name, (fn, *args) in figure_jobs(a, out).items()}


def make_figures(a: Analysis, out: Path) -> dict[str, str]:
    """Draw every PNG here and now; name -> file name (relative to ``out``)."""
    return {name: Path(f.result()).name for name, f in submit_figures(a, out, InProcess()).items()}


CAPTIONS = {
    "throughput": ("Output throughput vs batch size",
                   "per workload and GPU, a line per model/quantization (hollow markers: flagged cells)."),
    "energy": ("Energy per output token vs batch size",
               ("gross J per output token, log-log, with the power-law fit (dashed) over the range where it "
                "holds, annotated with its α.")),
    "pareto": ("Latency-throughput Pareto front",
               ("TTFT p99 against output tok/s for every point; the black line is the Pareto front (no other "
                "point has both more throughput and lower TTFT p99), labelled with batch sizes.")),
    "roofline": ("Roofline",
                 ("per GPU, the memory roof (bandwidth × AI) and compute roof (peak) of each matmul dtype, ridge "
                  "points dotted, and each point at its effective batch's decode intensity.")),
    "ttft_input": ("TTFT against prompt length",
                   ("TTFT of measured ok requests (at most a few hundred per cell, evenly spaced) against their input "
                    "tokens, per workload whose input lengths vary, coloured by prefix caching off or on; where the "
                    "engine reported cached tokens, also against the uncached ones (input − cached): what prefill had "
                    "left to compute.")),
    "power": ("Power timeline",
              ("instant power of one cell (choose it with --power-cell), the measured window (shaded), the idle "
               "baseline and the window's mean power.")),
}


def figures_section(a: Analysis, figures: dict[str, str]) -> list[str]:
    out = heading(2, "9. Plots")
    if "energy" not in figures:
        out += para("Energy was not measured: no energy-per-token plot.")
    if "power" not in figures:
        out += para("No power samples in this sweep's top cells: no power timeline.")
    for key in ("throughput", "energy", "pareto", "roofline", "ttft_input", "power"):
        if key in figures:
            alt, caption = CAPTIONS[key]
            out += heading(3, alt) + para(f"`{figures[key]}`: {caption}") + image(figures[key], alt)
    return out
