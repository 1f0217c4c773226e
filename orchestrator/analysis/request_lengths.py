"""Per-request lengths and TTFT of a sweep's measured ok requests: their distribution per cell, and
a sample of them for the TTFT-against-length plots.

- ``measured_ok(data)``: the measured ok requests of the ok cells (``cell_id``, input, output and
  cached tokens, TTFT in ms); ``cached_tokens`` is NaN where the engine did not report it;
- ``length_table(requests, ok)``: one row per ok cell: ``n_requests_measured_ok`` and, for input,
  output and cached tokens, ``<tokens>_p50`` / ``_p90`` (linear interpolation, as numpy's
  ``percentile``) and ``_max`` (cached: over the requests that report it, NaN where none does),
  with the cell's axes, ``prefix_caching`` and ``prefix_cache_hit_rate``;
- ``request_sample(requests, ok)``: at most ``sample_size(n cells)`` requests per cell (``SAMPLE_PER_CELL``,
  fewer in a sweep of many cells: about ``SAMPLE_TOTAL`` in all, never under ``SAMPLE_MIN`` a cell),
  evenly spaced in request order, with the cell's workload, GPU, series and ``prefix_caching``, and
  ``uncached_tokens`` (input − cached; NaN where cached is unknown).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.analysis.dataset import SweepData
from orchestrator.analysis.prefix_cache import PREFIX_CACHING
from orchestrator.store.schema import CACHED_TOKENS, PREFIX_CACHE_HIT_RATE, TTFT_MS, WORKLOAD_SOURCE

INPUT_TOKENS = "input_tokens"
OUTPUT_TOKENS = "output_tokens"
UNCACHED_TOKENS = "uncached_tokens"
LENGTHS = (INPUT_TOKENS, OUTPUT_TOKENS, CACHED_TOKENS)
STATS = (("p50", 0.5), ("p90", 0.9), ("max", 1.0))
N_MEASURED_OK = "n_requests_measured_ok"
COLUMNS = ["cell_id", "phase", "status", INPUT_TOKENS, OUTPUT_TOKENS, CACHED_TOKENS, TTFT_MS]
CELL_COLUMNS = ["cell_id", "workload", "gpu", "model", "quantization", "series", "batch_size", "repeat", "engine",
                "simulated", "flags"]
SAMPLE_PER_CELL, SAMPLE_TOTAL, SAMPLE_MIN = 300, 30_000, 20


def stat_columns(tokens: str) -> list[str]:
    """``<tokens>_p50``, ``_p90``, ``_max``."""
    return [f"{tokens}_{name}" for name, _ in STATS]


def measured_ok(data: SweepData) -> pd.DataFrame:
    """See the module doc (an empty frame with the columns when there are no request rows)."""
    req = data.requests(COLUMNS, cells=set(data.ok["cell_id"])).to_pandas(strings_to_categorical=True)
    good = req[(req["phase"] == "measured") & (req["status"] == "ok")]
    good = good.drop(columns=["phase", "status"]).astype({c: float for c in LENGTHS + (TTFT_MS,)})
    return good.assign(cell_id=good["cell_id"].astype(str)).reset_index(drop=True)


def _cells(ok: pd.DataFrame) -> pd.DataFrame:
    cols = CELL_COLUMNS + [c for c in (PREFIX_CACHING, PREFIX_CACHE_HIT_RATE, WORKLOAD_SOURCE) if c in ok]
    return ok[cols].reset_index(drop=True)


def length_table(requests: pd.DataFrame, ok: pd.DataFrame) -> pd.DataFrame:
    """See the module doc: rows in ``ok``'s order (a cell without measured ok requests: NaN)."""
    by = requests.groupby("cell_id", sort=False)
    parts = [by.size().rename(N_MEASURED_OK)]
    for tokens in LENGTHS:
        for (name, q), column in zip(STATS, stat_columns(tokens)):
            stat = by[tokens].max() if name == "max" else by[tokens].quantile(q)
            parts.append(stat.rename(column))
    stats = pd.concat(parts, axis=1).rename_axis("cell_id").reset_index() if len(requests) else \
        pd.DataFrame(columns=["cell_id", N_MEASURED_OK] + [c for t in LENGTHS for c in stat_columns(t)])
    out = _cells(ok).merge(stats, on="cell_id", how="left")
    out[N_MEASURED_OK] = out[N_MEASURED_OK].fillna(0).astype(int)
    return out


def sample_size(n_cells: int) -> int:
    """Requests per cell in the sample of a sweep of ``n_cells`` ok cells (see the module doc)."""
    return max(SAMPLE_MIN, min(SAMPLE_PER_CELL, SAMPLE_TOTAL // max(n_cells, 1)))


def request_sample(requests: pd.DataFrame, ok: pd.DataFrame) -> pd.DataFrame:
    """See the module doc."""
    per_cell = sample_size(len(ok))
    req = requests[requests[TTFT_MS].notna() & requests[INPUT_TOKENS].notna()]
    by = req.groupby("cell_id", sort=False)
    position, size = by.cumcount().to_numpy(), by[TTFT_MS].transform("size").to_numpy()
    step = np.maximum(1, np.ceil(size / per_cell)).astype(int)
    picked = req[position % step == 0]
    out = picked.merge(_cells(ok), on="cell_id", how="inner")
    out[UNCACHED_TOKENS] = out[INPUT_TOKENS] - out[CACHED_TOKENS]
    return out.reset_index(drop=True)
