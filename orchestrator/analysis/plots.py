"""PNG plots of a sweep (matplotlib's Agg canvas on ``Figure`` objects: no pyplot, no global state).

Each function takes the analysis DataFrames, writes one PNG to ``path`` and returns it.
Hollow markers are flagged points (any of the ``dataset.FLAGS``); axes carry units.
"""
from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from orchestrator.analysis.scaling import power_law
from orchestrator.analysis.series_labels import series_suffixes
from orchestrator.store.schema import (
    ENERGY_PER_1K_OUTPUT_TOKENS_J,
    ENERGY_PER_REQUEST_J,
    ENERGY_SOURCE,
    IDLE_POWER_W,
    MEAN_POWER_W,
    OUTPUT_THROUGHPUT_TOK_S,
    TTFT_P99_MS,
    WINDOW_S,
)

MARKERS = "osD^v<>ph*"
DPI = 96


LEFT_IN, BOTTOM_IN, TOP_IN, GAP_IN = 0.75, 0.55, 0.85, 0.8
"""Fixed margins (inches): a computed layout instead of tight_layout, which costs seconds per
figure once there are dozens of panels."""


def new_figure(width_in: float, height_in: float) -> Figure:
    """A Figure drawn by the Agg canvas (whatever backend pyplot may be using elsewhere)."""
    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def panel_figure(n_rows: int, n_cols: int, panel_w_in: float = 4.4, panel_h_in: float = 3.0,
                 legend_in: float = 2.0):
    """A figure of ``n_rows x n_cols`` axes of the given size (inches) with a legend column on
    the right; returns (figure, 2-D array of axes)."""
    width = LEFT_IN + n_cols * panel_w_in + (n_cols - 1) * GAP_IN + legend_in
    height = TOP_IN + n_rows * panel_h_in + (n_rows - 1) * GAP_IN + BOTTOM_IN
    fig = new_figure(width, height)
    axes = fig.subplots(n_rows, n_cols, squeeze=False, gridspec_kw={
        "left": LEFT_IN / width, "right": (width - legend_in) / width, "bottom": BOTTOM_IN / height,
        "top": (height - TOP_IN) / height, "wspace": GAP_IN / panel_w_in, "hspace": GAP_IN / panel_h_in})
    return fig, axes


LEGEND_CHAR_IN = 0.055
"""Width (inches) of one character of a 7-point legend label, to size the legend column."""


def _grid(points: pd.DataFrame, rows: str, cols: str, labels=()):
    """A figure with one axes per (row value, column value) present in ``points``, its legend
    column wide enough for the longest of ``labels``."""
    rv, cv = sorted(points[rows].unique()), sorted(points[cols].unique())
    longest = max((len(str(lab)) for lab in labels), default=0)
    fig, axes = panel_figure(len(rv), len(cv), legend_in=max(2.0, 0.5 + LEGEND_CHAR_IN * longest))
    cells = {(r, c): axes[i][j] for i, r in enumerate(rv) for j, c in enumerate(cv)}
    present = set(zip(points[rows], points[cols]))
    for (r, c), ax in cells.items():
        ax.set_visible((r, c) in present)
        ax.set_title(f"{r} · {c}", fontsize=9, y=1.0)  # fixed y: no per-draw title placement
    return fig, cells


def _compact(v: float, _pos=None) -> str:
    """Tick label: 0.5, 20, 1000, 20k, 3M."""
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e4:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


PLAIN = FuncFormatter(_compact)
ANNOTATE_MAX_SERIES = 4


def _log_axes(ax, y_log: bool) -> None:
    """log2 batch-size x axis (and log y) with plain numbers as tick labels."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(PLAIN)
    if y_log:
        log_y(ax)


def log_y(ax, decades: float = 3.0) -> None:
    """Log y with labelled 1-2-5 ticks (1 only over more than 3 decades) and no minor ticks
    (tick objects cost draw time)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
    ax.yaxis.set_major_formatter(PLAIN)
    ax.yaxis.set_minor_locator(NullLocator())


def decade_span(values: pd.Series) -> float:
    v = values[values > 0]
    return float(np.log10(v.max() / v.min())) if len(v) else 0.0


def _styles(labels: list[str]) -> dict[str, tuple[str, str]]:
    colors = [f"C{i}" for i in range(10)]
    combos = list(itertools.product(MARKERS, colors))
    return {lab: (combos[i % len(combos)][1], combos[i % len(combos)][0]) for i, lab in enumerate(sorted(labels))}


def _short(points: pd.DataFrame) -> pd.Series:
    """``model/quantization`` (+ what tells its variant apart, `` [enforce_eager=true]``, + `` †``
    when simulated)."""
    dagger = points["simulated"].map(lambda s: " †" if s else "") if "simulated" in points else ""
    return points["model"] + "/" + points["quantization"] + series_suffixes(points) + dagger


def _plot_series(ax, g: pd.DataFrame, x: str, y: str, color: str, marker: str, label: str | None) -> None:
    """A line with filled markers; flagged points hollow (Line2D markers: cheaper than scatter)."""
    g = g.sort_values(x)
    ax.plot(g[x], g[y], "-", color=color, lw=1.2, alpha=0.85, label=label, marker=marker, ms=4.5,
            markevery=list(np.flatnonzero((g["flags"] == "").to_numpy())))
    flagged = g[g["flags"] != ""]
    if len(flagged):
        ax.plot(flagged[x], flagged[y], linestyle="none", marker=marker, ms=5.5, mfc="white", mec=color, zorder=3)


def figure_legend(fig: Figure, cells: dict, title: str) -> None:
    handles: dict[str, Artist] = {}  # label -> the first handle of that label
    labels: dict[str, str] = {}  # the labels in order of first appearance
    for ax in cells.values():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
            labels[lab] = lab
    if handles:
        fig.legend(list(handles.values()), list(labels), loc="center left", fontsize=7, title=title,
                   title_fontsize=8, frameon=False, bbox_to_anchor=(_right_edge(fig, cells) + 0.02, 0.5))


def _right_edge(fig: Figure, cells: dict) -> float:
    """Figure fraction of the rightmost axes' right edge."""
    return max(ax.get_position().x1 for ax in cells.values())


def finish_figure(fig: Figure, path: Path, title: str, note: str = "") -> Path:
    """Title (wrapped to the figure's width, ``note`` on its own line) and save."""
    text = textwrap.fill(title, width=int(fig.get_figwidth() * 13)) + (f"\n{note.strip(' —')}" if note else "")
    fig.suptitle(text, fontsize=10, y=0.995, va="top")
    fig.savefig(path)
    return path


def batch_axis(points: pd.DataFrame) -> str:
    """The batch-size axis title: what batch size sets in the engines of ``points``
    (``batch_knob``), e.g. ``batch size (max-num-seqs)``."""
    knobs = sorted({k for k in points.get("batch_knob", pd.Series(dtype=object)).dropna() if k and k != "batch size"})
    return "batch size" + (f" ({' / '.join(knobs)})" if knobs else "")


def plot_throughput(points: pd.DataFrame, path: Path, note: str = "") -> Path:
    """Output tok/s vs batch size (log2 x), one panel per workload x GPU, a line per series."""
    pts = points.assign(short=_short(points))
    fig, cells = _grid(points, "workload", "gpu", pts["short"].unique())
    styles = _styles(pts["short"].unique())
    for (wl, gpu), ax in cells.items():
        for (short, _series), g in pts[(pts["workload"] == wl) & (pts["gpu"] == gpu)].groupby(["short", "series"]):
            _plot_series(ax, g, "batch_size", OUTPUT_THROUGHPUT_TOK_S, *styles[short], short)
        _log_axes(ax, y_log=False)
        ax.set_xlabel(batch_axis(pts), fontsize=8)
        ax.set_ylabel("output throughput (tok/s)", fontsize=8)
        ax.grid(alpha=0.3)
    figure_legend(fig, cells, "model/quantization")
    return finish_figure(fig, path, "Output throughput vs batch size (hollow = flagged cell)", note=note)


def plot_energy_per_token(points: pd.DataFrame, fits: pd.DataFrame, path: Path, note: str = "") -> Path:
    """Gross J per output token vs batch size, log-log, with the power-law fit (dashed, over the
    range where it holds) and its α in the legend."""
    pts = points[points["energy_available"] & (points[ENERGY_PER_1K_OUTPUT_TOKENS_J] > 0)]
    pts = pts.assign(short=_short(pts), j_per_token=pts[ENERGY_PER_1K_OUTPUT_TOKENS_J] / 1000.0)
    fig, cells = _grid(pts, "workload", "gpu", pts["short"].unique())
    styles = _styles(pts["short"].unique())
    fit_by = {(f.workload, f.gpu, f.series): f for f in fits.itertuples(index=False)} if not fits.empty else {}
    for (wl, gpu), ax in cells.items():
        panel = pts[(pts["workload"] == wl) & (pts["gpu"] == gpu)]
        label_alpha = panel["series"].nunique() <= ANNOTATE_MAX_SERIES
        for (short, series), g in panel.groupby(["short", "series"]):
            color, marker = styles[short]
            fit = fit_by.get((wl, gpu, series))
            _plot_series(ax, g, "batch_size", "j_per_token", color, marker, short)
            if fit is not None:
                _draw_fit(ax, fit, color, label_alpha)
        _log_axes(ax, y_log=True)
        ax.set_xlabel(batch_axis(pts), fontsize=8)
        ax.set_ylabel("energy per output token (J, gross)", fontsize=8)
        ax.grid(alpha=0.3)
    figure_legend(fig, cells, "model/quantization")
    return finish_figure(fig, path, "Energy per output token vs batch size (log-log); dashed: fit J/tok ≈ C/BS^α",
                   note=note)


def _draw_fit(ax, fit, color: str, label_alpha: bool) -> None:
    c, k = (fit.holds_c, fit.holds_exponent) if pd.notna(fit.holds_c) else (fit.c, fit.exponent)
    hi = fit.holds_bs_max if pd.notna(fit.holds_bs_max) else fit.bs_max
    xs = np.geomspace(fit.bs_min, hi, 20)
    ys = [y / 1000.0 for y in power_law(c, k, xs)]
    ax.plot(xs, ys, "--", color=color, lw=1.0, alpha=0.9)
    if label_alpha:
        ax.annotate(f"α={-k:.2f}", (xs[-1], ys[-1]), fontsize=7, color=color,
                    xytext=(4, 2), textcoords="offset points")


def pareto_front(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Rows not dominated by another (higher or equal ``x`` and lower or equal ``y``, one strictly),
    sorted by ``x``."""
    d = df.dropna(subset=[x, y]).sort_values([x, y], ascending=[False, True])
    best, keep = np.inf, []
    for idx, val in zip(d.index, d[y]):
        if val < best:
            keep.append(idx)
            best = val
    return d.loc[keep].sort_values(x)


def plot_pareto(points: pd.DataFrame, path: Path, note: str = "") -> Path:
    """TTFT p99 (log) vs output tok/s per workload; colour = GPU, marker = quantization; the
    Pareto front (black) is labelled with batch sizes."""
    workloads = sorted(points["workload"].unique())
    fig, axes = panel_figure(1, len(workloads), 4.8, 3.6)
    axes = axes[0]
    gpus = {g: f"C{i}" for i, g in enumerate(sorted(points["gpu"].unique()))}
    quants = {q: MARKERS[i % len(MARKERS)] for i, q in enumerate(sorted(points["quantization"].unique()))}
    for ax, wl in zip(axes, workloads):
        p = points[points["workload"] == wl]
        for (gpu, q), g in p.groupby(["gpu", "quantization"]):
            ax.plot(g[OUTPUT_THROUGHPUT_TOK_S], g[TTFT_P99_MS], linestyle="none", color=gpus[gpu],
                    marker=quants[q], ms=4, alpha=0.75, label=f"{gpu} · {q}")
        front = pareto_front(p, OUTPUT_THROUGHPUT_TOK_S, TTFT_P99_MS)
        ax.plot(front[OUTPUT_THROUGHPUT_TOK_S], front[TTFT_P99_MS], "k-", lw=1.0, label="Pareto front")
        for r in front.itertuples(index=False):
            ax.annotate(f"{r.batch_size}", (r.output_throughput_tok_s, r.ttft_p99_ms), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
        log_y(ax, decade_span(p[TTFT_P99_MS]))
        ax.set_title(wl, fontsize=9, y=1.0)
        ax.set_xlabel("output throughput (tok/s)", fontsize=8)
        ax.set_ylabel("TTFT p99 (ms)", fontsize=8)
        ax.grid(alpha=0.3)
    figure_legend(fig, dict(enumerate(axes)), "GPU · quantization")
    return finish_figure(fig, path, "Latency–throughput trade-off (Pareto front labelled with batch size)", note=note)


def plot_roofline(roof: pd.DataFrame, roofs: pd.DataFrame, path: Path, note: str = "") -> Path:
    """Per GPU: the roofline of each matmul dtype (TFLOPS vs FLOP/byte, log-log) with its ridge
    point, and every point of the sweep at its effective batch's decode intensity."""
    gpus = sorted(roof["gpu"].unique())
    fig, axes = panel_figure(1, len(gpus), 4.8, 3.6)
    axes = axes[0]
    quants = {q: f"C{i}" for i, q in enumerate(sorted(roof["quantization"].unique()))}
    workloads = {w: MARKERS[i % len(MARKERS)] for i, w in enumerate(sorted(roof["workload"].unique()))}
    for ax, gpu in zip(axes, gpus):
        pts = roof[roof["gpu"] == gpu]
        lo, hi = max(0.1, pts["intensity_flop_per_byte"].min() / 3), pts["intensity_flop_per_byte"].max() * 3
        gpu_roofs = roofs[roofs["gpu"] == gpu]
        for (bw, peak, ridge), same in gpu_roofs.groupby(["bandwidth_gb_s", "peak_tflops", "ridge_flop_per_byte"]):
            hi = max(hi, ridge * 4)
            xs = np.geomspace(lo, hi, 200)
            ax.plot(xs, np.minimum(peak, xs * bw / 1000.0), "-", color="0.3", lw=1.0)
            ax.axvline(ridge, color="0.5", ls=":", lw=0.8)
            ax.annotate(f"{'/'.join(same['activation_dtype'])} ridge {ridge:.0f}", (ridge, peak), fontsize=6,
                        xytext=(3, -10), textcoords="offset points")
        for (q, wl), g in pts.groupby(["quantization", "workload"]):
            ax.plot(g["intensity_flop_per_byte"], g["achieved_tflops"], linestyle="none", color=quants[q],
                    marker=workloads[wl], ms=4, alpha=0.8, label=f"{q} · {wl}")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(PLAIN)
        ax.xaxis.set_minor_locator(NullLocator())
        log_y(ax, decade_span(pts["achieved_tflops"]))
        ax.set_title(gpu, fontsize=9, y=1.0)
        ax.set_xlabel("decode arithmetic intensity (FLOP/byte)", fontsize=8)
        ax.set_ylabel("achieved (TFLOP/s)", fontsize=8)
        ax.grid(alpha=0.3)
    figure_legend(fig, dict(enumerate(axes)), "quantization · workload")
    return finish_figure(fig, path, "Roofline: decode steps against the GPU's roofs", note=note)


DRAIN_SHOWN = 0.25
"""The power timeline shows the window and at most this fraction of it after its end."""


def plot_power_timeline(power: pd.DataFrame, run: pd.Series, path: Path) -> Path:
    """Instant power (W) over the cell's time (s from the window's start), window shaded, with
    the idle baseline and the window's mean power. A long drain after the window is cut at
    ``DRAIN_SHOWN`` x window (and said so)."""
    fig = new_figure(9, 3.8)
    ax = fig.subplots()
    window_s = float(run[WINDOW_S])
    p = power.sort_values("t_rel_s")
    end = window_s * (1 + DRAIN_SHOWN) + 1.0
    cut = p["t_rel_s"].max() > end
    p = p[p["t_rel_s"] <= end]
    ax.plot(p["t_rel_s"], p["power_w"], "-", color="C0", lw=0.8, label="instant power")
    ax.axvspan(0.0, window_s, color="C2", alpha=0.12, label="measured window")
    if pd.notna(run.get(IDLE_POWER_W)):
        ax.axhline(run[IDLE_POWER_W], color="0.4", ls="--", lw=0.9,
                   label=f"idle baseline {run['idle_power_w']:.0f} W")
    if pd.notna(run.get(MEAN_POWER_W)):
        ax.axhline(run[MEAN_POWER_W], color="C3", ls=":", lw=1.1, label=f"window mean {run['mean_power_w']:.0f} W")
    xlabel = "time from the measured window's start (s)"
    ax.set_xlabel(xlabel + (f"; the drain goes on to {power['t_rel_s'].max():,.0f} s (not shown)" if cut else ""))
    ax.set_ylabel("GPU power (W)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    source = f" — {run['energy_source']} power, not measured" if run.get(ENERGY_SOURCE) == "simulated" else ""
    title = f"Power of cell {run['cell_id']}: {run['series']} · {run['workload']} · BS {run['batch_size']}{source}"
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.86)
    return finish_figure(fig, path, title)


def plot_compare(table: pd.DataFrame, label_a: str, label_b: str, path: Path) -> Path:
    """Output tok/s and gross J/request of B against A per matched cell (log-log), y = x dashed."""
    fig = new_figure(10, 4.4)
    axes = fig.subplots(1, 2)
    for ax, metric, unit in zip(axes, (OUTPUT_THROUGHPUT_TOK_S, ENERGY_PER_REQUEST_J), ("tok/s", "J/request")):
        a, b = table.get(f"{metric}_a"), table.get(f"{metric}_b")
        if a is None or a.dropna().empty or b.dropna().empty:
            ax.set_visible(False)
            continue
        for i, (wl, g) in enumerate(table.groupby("workload")):
            ax.scatter(g[f"{metric}_a"], g[f"{metric}_b"], s=18, color=f"C{i}", label=wl)
        both = pd.concat([a, b]).dropna()
        lims = (both[both > 0].min() / 1.5, both.max() * 1.5)
        ax.plot(lims, lims, "k--", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(PLAIN)
        ax.xaxis.set_minor_locator(NullLocator())
        log_y(ax, float(np.log10(lims[1] / lims[0])))
        ax.set_xlabel(f"{label_a} ({unit})", fontsize=8)
        ax.set_ylabel(f"{label_b} ({unit})", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.88, wspace=0.25)
    return finish_figure(fig, path, f"{label_b} against {label_a} (above the dashed line: B is higher)")
