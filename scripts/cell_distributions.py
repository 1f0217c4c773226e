"""Per-request latency distributions of chosen cells, side by side: one PNG with the empirical
CDFs of TPOT and TTFT (ms, log axis) of each cell's ok measured requests, and each cell's mean
power in the legend.

    python scripts/cell_distributions.py --cell STORE CELL_ID LABEL [--cell ...] --out PLOT.png

Cells may come from different stores (e.g. a benchmark's cell beside a study's). Reads each
store's runs and only the chosen cells' requests (``orchestrator.analysis.read_sweep``); prints
each cell's request count and TPOT p50/p90 so the plot can be checked against the runs row.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

METRICS = (("tpot_ms", "TPOT per request (ms)"), ("ttft_ms", "TTFT (ms, from the scheduled arrival)"))


def cell_requests(store: str, cell_id: str):
    """(ok measured requests of the cell as a DataFrame, its runs row as a dict); reads the
    store's runs and only this cell's requests."""
    from orchestrator.analysis import SweepError, read_sweep

    try:
        data = read_sweep(store)
    except SweepError as e:
        raise SystemExit(f"error: {e}")
    runs = data.runs[data.runs["cell_id"] == cell_id]
    if runs.empty:
        raise SystemExit(f"error: {store}: no complete cell {cell_id}")
    req = data.requests(cells={cell_id}).to_pandas()
    req = req[(req["phase"] == "measured") & (req["status"] == "ok")]
    return req, runs.iloc[0].to_dict()


def _legend(label: str, run) -> str:
    from orchestrator.analysis import format as fmt

    return (f"{label} ({fmt.num(run['mean_power_w'])} W, "
            f"{fmt.num(run['energy_per_1k_output_tokens_j'])} mJ/token)")


def plot(cells: List[Tuple[str, str, str]], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib import ticker

    fig, axes = plt.subplots(1, len(METRICS), figsize=(12, 4.2))
    for store, cell_id, label in cells:
        req, run = cell_requests(store, cell_id)
        name = _legend(label, run)
        for ax, (column, _) in zip(axes, METRICS):
            values = np.sort(req[column].dropna().to_numpy())
            ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post", label=name)
        tpot = req["tpot_ms"].dropna()
        print(f"{label}: {len(req)} ok measured requests, TPOT p50 {tpot.quantile(0.5):.2f} ms, "
              f"p90 {tpot.quantile(0.9):.2f} ms (runs row: p50 {run['tpot_p50_ms']:.2f}, p90 {run['tpot_p90_ms']:.2f})")
    for ax, (_, title) in zip(axes, METRICS):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 3, 5, 7)))
        ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel(title)
        ax.set_ylabel("fraction of requests")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", nargs=3, action="append", metavar=("STORE", "CELL_ID", "LABEL"), required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    plot([tuple(c) for c in args.cell], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
