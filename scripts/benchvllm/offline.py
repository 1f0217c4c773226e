"""Part ``offline``: the orchestrator itself (``python -m orchestrator -m batch_size=...``) in its
own process, then its Parquet rows: tok/s, window and energy per batch size, and (e) the time
the orchestrator adds per cell beyond vLLM's own start-up."""
from __future__ import annotations

import json
import shutil
import sys
import traceback
from pathlib import Path
from typing import Dict, List

from benchvllm.common import overrides
from benchvllm.procs import run_child

CELL_KEYS = ("status", "error", "output_throughput_tok_s", "window_s", "n_requests_measured", "output_tokens_in_window",
             "energy_j", "energy_integrated_j", "energy_mismatch", "short_window", "mean_power_w", "idle_power_w",
             "ttft_p50_ms", "tpot_p50_ms", "engine_start_s", "cell_wall_s", "started_unix_s", "finished_unix_s",
             "n_batches_measured", "batch_output_tok_s_cv", "energy_per_1k_output_tokens_j",
             "net_energy_per_1k_output_tokens_j", "counter_update_period_s", "repeat", "batch_size")
REPEAT_KEYS = ("output_throughput_tok_s", "energy_per_1k_output_tokens_j", "net_energy_per_1k_output_tokens_j")


def part_offline(args, work: Path, budget_s: float) -> Dict:
    store = work / "orch_offline"
    shutil.rmtree(store, ignore_errors=True)
    cmd = [sys.executable, "-m", "orchestrator", "-m", f"batch_size={args.batch_sizes}", *overrides(args, "offline"),
           f"store.dir={store}", "name=bench_vllm_offline", "dispatch.progress=false", f"repeats={args.repeats}"]
    res = run_child("offline", cmd, budget_s, work)
    res["command"] = " ".join(cmd[1:])
    try:
        res.update(offline_cells(store, res["wall_s"]))
    except Exception:
        res["read_error"] = traceback.format_exc()[-3000:]
    return res


def offline_cells(store: Path, wall_s: float) -> Dict:
    """Per batch size: tok/s, window, energy; and the orchestrator's overhead per cell (e)."""
    from orchestrator.store.sweep_store import load

    t = load(str(store))
    reqs = t.requests.to_pandas() if t.requests is not None else None
    rows = sorted(t.runs.to_pylist(), key=lambda r: r.get("started_unix_s") or 0)
    cells = {str(r["batch_size"]): {k: r.get(k) for k in CELL_KEYS} for r in rows if not r.get("repeat")}
    ok = [r for r in rows if r["status"] == "ok"]
    return {"cells": cells, "repeats": repeat_stats(ok), "all_cells": [{k: r.get(k) for k in CELL_KEYS} for r in rows],
            "overhead": cell_overheads(ok, reqs, wall_s) if ok else {}}


def repeat_stats(rows: List[Dict]) -> Dict:
    """Per batch size with >= 2 ok repeats: n, mean and CV (sample std / mean) of each REPEAT_KEYS."""
    import numpy as np

    out: Dict = {}
    for bs in sorted({r["batch_size"] for r in rows}):
        same = [r for r in rows if r["batch_size"] == bs]
        if len(same) < 2:
            continue
        stats = {"n": len(same)}
        for key in REPEAT_KEYS:
            v = np.array([float(r[key]) for r in same if r.get(key) is not None])
            if v.size >= 2:
                stats[key] = {"mean": float(v.mean()), "cv": float(v.std(ddof=1) / v.mean()), "values": v.tolist()}
        out[str(bs)] = stats
    return out


def cell_overheads(rows: List[Dict], reqs, wall_s: float) -> Dict:
    """(e): the sweep's wall time not spent in vLLM's own start-up (``import vllm`` +
    ``LLM(...)``), the measured windows, the warm-up batches or the idle baseline, per cell.
    ``rows``: ok runs rows in start order; ``reqs``: the requests table (pandas)."""
    starts = {}  # one engine start per unit: cells of a unit share engine_start_s
    for r in rows:
        extra = json.loads(r["engine_extra"] or "{}")
        starts[r["engine_start_s"]] = float(extra.get("vllm_start_s", r["engine_start_s"]))
    engine_start_s, vllm_start_s = sum(starts), sum(starts.values())
    per_cell = {_label(r): _in_cell(r, reqs, _idle_baseline_s(r) if i == 0 else 0.0)
                for i, r in enumerate(rows)}  # the first cell of the engine measures the idle baseline
    outside = wall_s - engine_start_s - sum(float(r["cell_wall_s"]) for r in rows)
    prestart = engine_start_s - vllm_start_s  # GPU check, memory wait, model dir (ours)
    shared = (outside + prestart) / len(rows)
    for v in per_cell.values():
        v["total_s"] = v["in_cell_s"] + shared
    return {"sweep_wall_s": wall_s, "vllm_start_s": vllm_start_s, "engine_start_s": engine_start_s,
            "engine_starts": len(starts), "outside_cells_s": outside, "prestart_s": prestart,
            "shared_per_cell_s": shared, "per_cell": per_cell,
            "max_per_cell_s": max(v["total_s"] for v in per_cell.values())}


def _label(row: Dict) -> str:
    """A cell's key: its batch size, with ``/r<k>`` for repeats after the first."""
    return f"{row['batch_size']}" + (f"/r{row['repeat']}" if row.get("repeat") else "")


def _idle_baseline_s(row: Dict) -> float:
    """The idle baseline a cell's sampler measured (``config_json``: the cell's config as plain JSON)."""
    sampler = json.loads(row["config_json"])["sampler"]
    return float(sampler["idle_baseline_s"]) if sampler["name"] != "none" else 0.0


def _in_cell(row: Dict, reqs, idle_s: float) -> Dict:
    """A cell's own time beyond its window, its warm-up batches and ``idle_s``."""
    warm = reqs[(reqs.cell_id == row["cell_id"]) & (reqs.phase == "warmup")] if reqs is not None else []
    warm_s = float(warm.end_s.max() - warm.send_s.min()) if len(warm) else 0.0
    in_cell = float(row["cell_wall_s"]) - float(row["window_s"]) - warm_s - idle_s
    return {"in_cell_s": in_cell, "warmup_s": warm_s, "window_s": row["window_s"], "idle_baseline_s": idle_s}
