"""PNG of TTFT against prompt length per request (``request_lengths.request_sample``): a column
per workload whose input lengths vary (``varied``: a fixed length says nothing of how TTFT grows
with it); the first row against input tokens, the second (where some engine reported cached
tokens) against the uncached ones (input − cached); colour: prefix caching off, on, or unknown."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from orchestrator.analysis.plots import PLAIN, decade_span, figure_legend, finish_figure, log_y, panel_figure
from orchestrator.analysis.prefix_cache import PREFIX_CACHING
from orchestrator.analysis.request_lengths import INPUT_TOKENS, UNCACHED_TOKENS
from orchestrator.analysis.traffic import workload_names
from orchestrator.store.schema import TTFT_MS

CACHING_STYLES = ((False, "prefix caching off", "C3"), (True, "prefix caching on", "C2"),
                  (None, "prefix caching unknown", "0.5"))
X_TITLES = {INPUT_TOKENS: "input tokens", UNCACHED_TOKENS: "uncached prompt tokens (input − cached)"}


def _caching(sample: pd.DataFrame, value: bool | None) -> pd.Series:
    flags = sample[PREFIX_CACHING]
    return flags.isna() if value is None else flags.eq(value).fillna(False).astype(bool)


def _panel(ax, rows: pd.DataFrame, x: str) -> None:
    for value, label, color in CACHING_STYLES:
        part = rows[_caching(rows, value) & rows[x].notna()]
        if len(part):
            ax.plot(part[x], part[TTFT_MS], linestyle="none", marker="o", ms=2.2, alpha=0.4, color=color,
                    label=label)
    positive = rows.loc[rows[TTFT_MS] > 0, TTFT_MS]
    if len(positive) == len(rows) and len(rows):
        log_y(ax, decade_span(positive))
    ax.xaxis.set_major_formatter(PLAIN)
    ax.set_xlabel(X_TITLES[x], fontsize=8)
    ax.set_ylabel("TTFT (ms)", fontsize=8)
    ax.grid(alpha=0.3)


def varied(sample: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``sample`` whose workload's input lengths take more than one value."""
    if sample.empty:
        return sample
    kinds = sample.groupby("workload")[INPUT_TOKENS].transform("nunique")
    return sample[kinds > 1]


def plot_ttft_vs_input(sample: pd.DataFrame, path: Path, note: str = "") -> Path:
    """See the module doc."""
    workloads = sorted(sample["workload"].unique())
    names = workload_names(sample)
    xs = [INPUT_TOKENS] + ([UNCACHED_TOKENS] if sample[UNCACHED_TOKENS].notna().any() else [])
    fig, axes = panel_figure(len(xs), len(workloads), 4.4, 3.0)
    cells = {}
    for i, x in enumerate(xs):
        for j, wl in enumerate(workloads):
            ax = axes[i][j]
            _panel(ax, sample[sample["workload"] == wl], x)
            ax.set_title(names[wl], fontsize=9, y=1.0)
            cells[(i, j)] = ax
    figure_legend(fig, cells, "per request")
    most = int(sample.groupby("cell_id").size().max())
    return finish_figure(fig, path, f"TTFT against prompt length (measured ok requests, at most {most} per cell)",
                         note=note)
