"""Per-request energy (the window's energy attributed to steps and requests, ``docs/energy_attribution.md``):
its distribution per cell and what a typical request costs, per series.

- ``measured_ok(data)``: the measured ok requests of the ok cells with attributed energy
  (``energy_j`` not null) that ended inside the window (not ``drained``: a request still running
  when the window closed has only its part inside the window attributed): ``cell_id``, input and
  output tokens and ``REQUEST_ENERGY_COLUMNS`` (NaN where not attributed, e.g. net where there is
  no idle baseline); an empty frame for a store written before attribution;
- ``distribution_table(requests, ok)``: one row per ok cell with attributed requests:
  ``n_requests_attributed``, ``step_source`` and, for ``energy_j``, ``energy_prefill_j`` and
  ``energy_decode_j``, ``<column>_p10`` / ``_p50`` / ``_p90`` (linear interpolation, as numpy's
  ``percentile``), with the cell's axes; rows in ``ok``'s order;
- ``typical_requests(requests, ok)``: per series (series × workload × GPU, as the report groups
  cells) a ``TypicalRequest``: the **median request** of the series' cell with the most attributed
  requests (ties: the smaller batch size, then the first repeat) — the request at rank ⌈n/2⌉ by
  ``energy_j`` (the lower median: for odd n exactly numpy's median), with its own gross, net,
  prefill and decode energy, so that prefill + decode = its energy; beside it the prefill share
  of all those requests' energy (``cell_prefill_pct``: the median request's own split need not
  be typical).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.analysis.dataset import SweepData
from orchestrator.store.schema import REQUEST_ENERGY_COLUMNS, STEP_SOURCE

ENERGY, PREFILL, DECODE = "energy_j", "energy_prefill_j", "energy_decode_j"
NET = "net_energy_j"
DISTRIBUTED = (ENERGY, PREFILL, DECODE)
STATS = (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))
N_ATTRIBUTED = "n_requests_attributed"
INPUT_TOKENS, OUTPUT_TOKENS = "input_tokens", "output_tokens"
COLUMNS = ["cell_id", "phase", "status", "drained", INPUT_TOKENS, OUTPUT_TOKENS, *REQUEST_ENERGY_COLUMNS]
CELL_COLUMNS = ["cell_id", "workload", "gpu", "model", "quantization", "series", "batch_size", "repeat", "engine",
                "simulated"]


def stat_columns(column: str) -> list[str]:
    """``<column>_p10``, ``_p50``, ``_p90``."""
    return [f"{column}_{name}" for name, _ in STATS]


def measured_ok(data: SweepData) -> pd.DataFrame:
    """See the module doc."""
    req = data.requests(COLUMNS, cells=set(data.ok["cell_id"])).to_pandas()
    good = req[(req["phase"] == "measured") & (req["status"] == "ok") & req[ENERGY].notna() & ~req["drained"].fillna(False)]
    good = good.drop(columns=["phase", "status", "drained"]).astype({c: float for c in (INPUT_TOKENS, OUTPUT_TOKENS,
                                                                            *REQUEST_ENERGY_COLUMNS)})
    return good.assign(cell_id=good["cell_id"].astype(str)).reset_index(drop=True)


def _cells(ok: pd.DataFrame) -> pd.DataFrame:
    cols = CELL_COLUMNS + ([STEP_SOURCE] if STEP_SOURCE in ok else [])
    return ok[cols].reset_index(drop=True)


def distribution_table(requests: pd.DataFrame, ok: pd.DataFrame) -> pd.DataFrame:
    """See the module doc (an empty frame with the columns where no request is attributed)."""
    columns = CELL_COLUMNS + [STEP_SOURCE, N_ATTRIBUTED] + [c for x in DISTRIBUTED for c in stat_columns(x)]
    if requests.empty:
        return pd.DataFrame(columns=columns)
    by = requests.groupby("cell_id", sort=False)
    parts = [by.size().rename(N_ATTRIBUTED)]
    for column in DISTRIBUTED:
        parts += [by[column].quantile(q).rename(c) for (_, q), c in zip(STATS, stat_columns(column))]
    stats = pd.concat(parts, axis=1).rename_axis("cell_id").reset_index()
    out = _cells(ok).merge(stats, on="cell_id", how="inner")
    if STEP_SOURCE not in out:
        out[STEP_SOURCE] = None
    return out[columns].reset_index(drop=True)


@dataclass(frozen=True)
class TypicalRequest:
    """The median request of one series (see the module doc); ``net_j``: NaN where not known;
    ``n_requests``: the attributed requests of its cell."""

    series: str
    workload: str
    gpu: str
    model: str
    quantization: str
    simulated: bool
    cell_id: str
    batch_size: int
    n_requests: int
    step_source: str
    energy_j: float
    net_j: float
    prefill_j: float
    decode_j: float
    cell_prefill_pct: float = float("nan")

    @property
    def prefill_pct(self) -> float:
        return self.prefill_j / self.energy_j * 100.0 if self.energy_j else float("nan")


def median_request(energies: pd.DataFrame) -> pd.Series:
    """The row of ``energies`` at rank ⌈n/2⌉ by ``energy_j`` (a stable sort)."""
    ranked = energies.sort_values(ENERGY, kind="stable")
    return ranked.iloc[(len(ranked) - 1) // 2]


def _typical(cell: pd.Series, req: pd.DataFrame) -> TypicalRequest:
    m = median_request(req)
    source = cell.get(STEP_SOURCE)
    return TypicalRequest(
        series=str(cell["series"]), workload=str(cell["workload"]), gpu=str(cell["gpu"]), model=str(cell["model"]),
        quantization=str(cell["quantization"]), simulated=bool(cell["simulated"]), cell_id=str(cell["cell_id"]),
        batch_size=int(cell["batch_size"]), n_requests=len(req),
        step_source="" if source is None or pd.isna(source) else str(source),
        energy_j=float(m[ENERGY]), net_j=float(m[NET]), prefill_j=float(m[PREFILL]), decode_j=float(m[DECODE]),
        cell_prefill_pct=float(req[PREFILL].sum() / req[ENERGY].sum() * 100.0) if req[ENERGY].sum() else float("nan"))


def typical_requests(requests: pd.DataFrame, ok: pd.DataFrame) -> list[TypicalRequest]:
    """See the module doc: one per series with attributed requests, sorted by workload, GPU, series."""
    if requests.empty:
        return []
    counts = requests.groupby("cell_id", sort=False).size().rename("_n")
    cells = _cells(ok).merge(counts, left_on="cell_id", right_index=True, how="inner")
    cells = cells.sort_values(["_n", "batch_size", "repeat"], ascending=[False, True, True], kind="stable")
    chosen = cells.drop_duplicates(["workload", "gpu", "series"]).sort_values(["workload", "gpu", "series"])
    by_cell = dict(tuple(requests.groupby("cell_id", sort=False)))
    return [_typical(cell, by_cell[cell["cell_id"]]) for _, cell in chosen.iterrows()]


def cdf_points(values: np.ndarray, n: int = 101) -> list[float]:
    """``n`` evenly spaced percentiles (0 … 100, linear interpolation) of ``values``: its CDF."""
    return [float(v) for v in np.percentile(values, np.linspace(0, 100, n))] if len(values) else []
