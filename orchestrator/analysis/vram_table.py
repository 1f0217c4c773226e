"""VRAM budgets of a sweep's model x quantization x GPU x context combinations (maths in
``vram.py``), cross-checked against the cells' statuses and the engine's memory reading.

``context_tokens`` = the workload's mean input + mean output tokens (a sequence's final
context), as the grid's feasibility filter uses. Cross-checks, per combination:

- ``measured_memory_gib``: the largest ``memory_used_max_mib`` of its ok cells (GiB; NaN when
  the engine/sampler reported none). vLLM reserves ``gpu_memory_utilization`` of the GPU up
  front, so its reading sits near ``capacity_gib`` whatever the batch.
- ``memory_check``: ``not reported`` | ``above capacity`` (reading > 102% of the usable
  budget) | ``below prediction`` (reading < 85% of the predicted need at that batch: the
  calculator overestimates) | ``consistent``.
- ``n_oom_within_fit``: cells that ran out of memory (``oom``/``kv_cache_too_small``) at a batch
  the calculator says fits (it underestimates); ``n_ok_beyond_fit``: ok cells at a batch it says
  does not fit (it overestimates).
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd

from orchestrator.config.engine import EngineConfig
from orchestrator.config.root import CellConfig
from orchestrator.perf.vram import vram_budget
from orchestrator.store.schema import MEMORY_USED_MAX_MIB

MIB_PER_GIB = 1024.0
OOM_STATUSES = ("oom", "kv_cache_too_small")
COMBO_KEYS = ["model", "quantization", "gpu", "context_tokens", "memory_utilization"]


def cell_axes(runs: pd.DataFrame, configs: Mapping[str, CellConfig]) -> pd.DataFrame:
    """Per cell (not ``unsupported``): combination keys, batch size, status, memory reading."""
    rows = []
    for r in runs.itertuples(index=False):
        cfg = configs.get(r.cell_id)
        if not cfg or r.status == "unsupported":
            continue
        wl = cfg.workload
        rows.append({
            "model": r.model, "quantization": r.quantization, "gpu": r.gpu, "workload": r.workload,
            "context_tokens": int(wl.input.mean_tokens + wl.output.mean_tokens),
            "memory_utilization": memory_fraction(cfg, r.engine),
            "batch_size": int(r.batch_size), "status": r.status, "cell_id": r.cell_id,
            MEMORY_USED_MAX_MIB: r.memory_used_max_mib, "simulated": bool(r.simulated),
        })
    return pd.DataFrame(rows)


def memory_fraction(cfg: CellConfig, engine: str) -> float:
    """The memory fraction the engine that ran the cell may use (the grid's VRAM capacity)."""
    if engine not in EngineConfig.blocks():  # an engine this code no longer has (older stores)
        return float(cfg.engine.vllm.gpu_memory_utilization)
    return float(cfg.engine.options(engine).memory_fraction())


def _budget(configs: Mapping[str, CellConfig], cell_id: str, batch: int, context: int, util: float):
    cfg = configs[cell_id]
    return vram_budget(cfg.model, cfg.quantization, cfg.gpu, batch, context, util)


def vram_table(runs: pd.DataFrame, configs: Mapping[str, CellConfig]) -> pd.DataFrame:
    """One row per combination: budget terms (GiB) at the largest swept batch, the largest batch
    that fits, the cross-checks of the module doc, and ``simulated`` (any of its cells ran on the
    simulated engine: its statuses are the simulator's, not a GPU's)."""
    cells = cell_axes(runs, configs)
    if cells.empty:
        return pd.DataFrame()
    rows = []
    for key, grp in cells.groupby(COMBO_KEYS, sort=True):
        bs_max = int(grp["batch_size"].max())
        b = _budget(configs, grp["cell_id"].iloc[0], bs_max, key[3], key[4])
        row = dict(zip(COMBO_KEYS, key), workloads=",".join(sorted(grp["workload"].unique())),
                   simulated=bool(grp["simulated"].any()))
        row.update(weights_gib=b.weights_gib, kv_per_request_gib=b.kv_per_request_gib,
                   activations_gib=b.activations_gib, overhead_gib=b.overhead_gib, capacity_gib=b.capacity_gib,
                   max_batch=b.max_batch, bs_max_swept=bs_max, total_at_bs_max_gib=b.total_gib, fits_at_bs_max=b.fits)
        row.update(_cross_check(grp, configs, b.max_batch, key[3], key[4], b.capacity_gib))
        rows.append(row)
    return pd.DataFrame(rows)


def _cross_check(grp: pd.DataFrame, configs, max_batch: int, context: int, util: float, capacity: float) -> dict:
    ok = grp[grp["status"] == "ok"]
    oom = grp[grp["status"].isin(OOM_STATUSES)]
    out = {
        "n_ok": len(ok), "n_infeasible": int((grp["status"] == "infeasible").sum()), "n_oom": len(oom),
        "n_oom_within_fit": int((oom["batch_size"] <= max_batch).sum()),
        "n_ok_beyond_fit": int((ok["batch_size"] > max_batch).sum()),
        "measured_memory_gib": float("nan"), "predicted_at_measured_gib": float("nan"),
        "memory_check": "not reported",
    }
    reported = ok[ok[MEMORY_USED_MAX_MIB].notna()]
    if reported.empty:
        return out
    top = reported.loc[reported[MEMORY_USED_MAX_MIB].idxmax()]
    measured = float(top[MEMORY_USED_MAX_MIB]) / MIB_PER_GIB
    predicted = _budget(configs, top["cell_id"], int(top["batch_size"]), context, util).total_gib
    out.update(measured_memory_gib=measured, predicted_at_measured_gib=predicted,
               memory_check=_verdict(measured, predicted, capacity))
    return out


def _verdict(measured_gib: float, predicted_gib: float, capacity_gib: float) -> str:
    if measured_gib > 1.02 * capacity_gib:
        return "above capacity"
    if measured_gib < 0.85 * predicted_gib:
        return "below prediction"
    return "consistent"


def vram_by_batch(runs: pd.DataFrame, configs: Mapping[str, CellConfig],
                  batch_sizes: list[int] | None = None) -> pd.DataFrame:
    """Wide table: per combination, the predicted total GiB at each batch size (columns
    ``bs_<n>_gib``), with ``capacity_gib`` to compare against."""
    cells = cell_axes(runs, configs)
    if cells.empty:
        return pd.DataFrame()
    sizes = sorted(batch_sizes or cells["batch_size"].unique())
    rows = []
    for key, grp in cells.groupby(COMBO_KEYS, sort=True):
        cid = grp["cell_id"].iloc[0]
        row = dict(zip(COMBO_KEYS, key), simulated=bool(grp["simulated"].any()))
        for bs in sizes:
            b = _budget(configs, cid, int(bs), key[3], key[4])
            row[f"bs_{int(bs)}_gib"] = b.total_gib
        row["capacity_gib"] = b.capacity_gib
        rows.append(row)
    return pd.DataFrame(rows)
