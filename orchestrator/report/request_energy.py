"""Per-request energy, where the store attributed the window's energy to steps and requests
(``analysis.request_energy``; nothing at all for a store without attribution):

- section 2's "Per-request energy" (after "Request lengths"): per cell, the p10 / p50 / p90 of its
  measured ok requests' energy, prefill and decode energy, and where its steps came from (``distribution_section``);
- the key answer "What a typical request costs": per series, its median request's energy and split,
  a table in report.md (``typical_table``), a sentence per series on the HTML page (``typical_sentence``);
- the HTML page's data (``html_payload``): per cell the CDF of its requests' energy and a sample of
  (input tokens, output tokens, energy) for the scatter plots.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from orchestrator.analysis import format as fmt
from orchestrator.analysis.request_energy import (
    DECODE,
    DISTRIBUTED,
    ENERGY,
    INPUT_TOKENS,
    N_ATTRIBUTED,
    OUTPUT_TOKENS,
    PREFILL,
    STATS,
    TypicalRequest,
    cdf_points,
    stat_columns,
)
from orchestrator.analysis.request_lengths import sample_size
from orchestrator.report.analyse import Analysis
from orchestrator.report.markdown import SIM_MARK, Col, col, heading, para, rows_table, series_label, sim_legend, table
from orchestrator.store.schema import STEP_SOURCE

SHORT = {ENERGY: "J/request", PREFILL: "prefill J", DECODE: "decode J"}
LEAD = ("**What a typical request costs** (per series, the median request by energy — the lower median — of its "
        "cell with the most attributed requests: the window's energy attributed to its steps and requests, "
        "docs/energy_attribution.md).")
NOTE = ("Gross counts the GPU's whole draw, net only what is above the idle baseline; prefill % is the median "
        "request's prefill energy ÷ its gross energy, cell prefill % the same over all the cell's requests (the "
        "median request's own split need not be typical). Requests that ended inside the window only. Other "
        "requests of the cell cost more or less: see *Per-request energy* in section 2.")


def _stats(column: str) -> list[Col]:
    return [col(f"{SHORT[column]} {name}", c) for (name, _), c in zip(STATS, stat_columns(column))]


def distribution_section(a: Analysis) -> list[str]:
    """Section 2's table (nothing where no request's energy was attributed)."""
    dist = a.request_energy.sort_values(["workload", "gpu", "series", "batch_size", "repeat"], kind="stable")
    if dist.empty:
        return []
    cols = [Col("workload", lambda r: a.workload_name(r.workload)), col("GPU", "gpu", "text"),
            Col("series", series_label), col("BS", "batch_size", "batch")]
    cols += [col("repeat", "repeat", "batch")] if dist["repeat"].nunique() > 1 else []
    cols += [col("steps", STEP_SOURCE, "text"), col("requests", N_ATTRIBUTED, "batch")]
    cols += [c for column in DISTRIBUTED for c in _stats(column)]
    out = heading(3, "Per-request energy")
    out += para("Per ok cell (repeats apart), over its measured ok requests whose energy was attributed and that "
                "ended inside the window: the 10th, "
                "50th and 90th percentiles (linear interpolation) of each request's gross energy in J and of its "
                "prefill and decode parts (the window's energy split over the engine's steps, each step's over its "
                "requests, docs/energy_attribution.md). *Steps*: engine (the engine's own log), simulated, or "
                "reconstructed (from the requests' token times). The HTML page plots each cell's CDF and the "
                "energy against input and output tokens.")
    return out + sim_legend(dist) + table(dist, cols)


def _net(t: TypicalRequest) -> str:
    return fmt.MISSING if fmt.is_missing(t.net_j) else fmt.num(t.net_j)


def typical_sentence(t: TypicalRequest, workload: str) -> str:
    """One series in words; ``workload``: how it is named inside parentheses."""
    net = "" if fmt.is_missing(t.net_j) else f" ({fmt.num(t.net_j)} J net)"
    return (f"**{t.series}** ({workload}): the median request at BS {t.batch_size} (of {t.n_requests}, "
            f"{t.step_source or 'unknown'} steps) costs {fmt.num(t.energy_j)} J gross{net}: {fmt.num(t.prefill_j)} "
            f"J prefill + {fmt.num(t.decode_j)} J decode ({fmt.num(t.prefill_pct)}% prefill; the cell's requests: "
            f"{fmt.num(t.cell_prefill_pct)}% prefill)."
            f"{SIM_MARK if t.simulated else ''}")


def typical_table(typical: list[TypicalRequest], name: Callable[[str], str]) -> list[str]:
    """report.md's table of the key answer; ``name``: how a workload is named."""
    return rows_table(typical, [
        Col("workload", lambda t: name(t.workload)), Col("GPU", lambda t: t.gpu), Col("series", series_label),
        Col("BS", lambda t: str(t.batch_size)), Col("requests", lambda t: str(t.n_requests)),
        Col("steps", lambda t: t.step_source or fmt.MISSING),
        Col("J/request gross", lambda t: fmt.num(t.energy_j)), Col("J/request net", _net),
        Col("prefill J", lambda t: fmt.num(t.prefill_j)), Col("decode J", lambda t: fmt.num(t.decode_j)),
        Col("prefill %", lambda t: fmt.num(t.prefill_pct)), Col("cell prefill %", lambda t: fmt.num(t.cell_prefill_pct)),
        Col("cell", lambda t: t.cell_id[:8]),
    ])


def _spaced(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, num=min(n, k)).round().astype(int)) if n else np.zeros(0, dtype=int)


def html_payload(a: Analysis, rounded: Callable) -> dict:
    """cell_id -> {"n", "cdf_j": 101 percentiles of its requests' energy, "input_tokens",
    "output_tokens", "energy_j": a sample of its requests, evenly spaced in request order}
    (``rounded``: how a value is written); {} where no request's energy was attributed."""
    req: pd.DataFrame = a.attributed_requests
    if req.empty:
        return {}
    per_cell = sample_size(req["cell_id"].nunique())
    out = {}
    for cell, rows in req.groupby("cell_id", sort=False):
        picked = rows.iloc[_spaced(len(rows), per_cell)]
        out[str(cell)] = {"n": len(rows), "cdf_j": [rounded(v) for v in cdf_points(rows[ENERGY].to_numpy())],
                          **{c: [rounded(v) for v in picked[c]] for c in (INPUT_TOKENS, OUTPUT_TOKENS, ENERGY)}}
    return out
