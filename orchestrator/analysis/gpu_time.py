"""Where a store's GPU time went: one row per engine start, with the start's phases, and the GPU
duty of each sweep that measured cells in it.

``engine_starts(runs)``: the runs rows a worker measured (``cell_wall_s`` set) grouped by engine
start (``schema.ENGINE_START_KEY``: the columns every row measured on one start shares), in the
order they started: the engine, GPU and series of the first cell, how many cells it served, their
windows and walls, the start's seconds (``engine_start_s``: the worker's call of ``start()`` until
the engine is up, the GPU check and the wait for its memory included) and, for vLLM starts, its
phases from the engine's log (``engines.vllm.start_phases``; seconds: ``frontend_s`` and
``core_boot_s`` together are the launch, ``compile_cached`` whether torch.compile came from the
cache, ``from_spare`` whether a spare process with its imports done served the launch). ``duty(runs)``: ``store.gpu_duty`` of each sweep name among the rows.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional

import pandas as pd

from orchestrator.store.gpu_duty import CELL_WALL_S, DUTY_COLUMNS, gpu_duty
from orchestrator.store.start_phases import start_phases_of
from orchestrator.store.schema import ENGINE_START_KEY, ENGINE_START_S, WINDOW_S

PHASES = ("frontend_s", "core_boot_s", "model_setup_s", "compile_s", "warmup_s", "init_other_s", "ready_s", "total_s")
"""The start phases shown per start (``StartPhases`` fields; see ``engines.vllm.start_phases``)."""

COLUMNS = ["started_unix_s", "engine", "gpu", "first_cell", "cells", "window_s", "cell_wall_s", ENGINE_START_S,
           *PHASES, "compile_cached", "from_spare"]


def engine_starts(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per engine start (see the module doc), oldest first; empty without measured rows."""
    if runs.empty or CELL_WALL_S not in runs.columns:
        return pd.DataFrame(columns=COLUMNS)
    measured = runs[runs[CELL_WALL_S].notna()].sort_values("started_unix_s", kind="stable")
    groups: Dict[tuple, List[Mapping]] = {}
    for row in measured.to_dict("records"):
        groups.setdefault(tuple(_key(row.get(k)) for k in ENGINE_START_KEY), []).append(row)
    out = []
    for members in groups.values():
        first = members[0]
        phases = start_phases_of(first.get("engine_extra"))
        out.append({
            "started_unix_s": first.get("started_unix_s"), "engine": first.get("engine"), "gpu": first.get("gpu"),
            "first_cell": f"{first.get('model')}/{first.get('quantization')}/{first.get('workload')}/bs"
                          f"{first.get('batch_size')}",
            "cells": len(members), "window_s": sum(_num(r.get(WINDOW_S)) for r in members),
            "cell_wall_s": sum(_num(r.get(CELL_WALL_S)) for r in members), ENGINE_START_S: first.get(ENGINE_START_S),
            **{p: getattr(phases, p) if phases is not None else None for p in PHASES},
            "compile_cached": phases.compile_cached if phases is not None else None,
            "from_spare": phases.from_spare if phases is not None else None,
        })
    return pd.DataFrame(out, columns=COLUMNS)


def duty(runs: pd.DataFrame) -> Dict[str, Dict]:
    """Sweep name -> its ``gpu_duty`` figures (``{"overall": ..., "by_gpu": ...}``), for each sweep
    that measured a row here."""
    if runs.empty or "sweep" not in runs.columns:
        return {}
    rows = [{k: _key(v) for k, v in r.items()} for r in runs[[c for c in DUTY_COLUMNS if c in runs.columns]]
            .to_dict("records")]
    out = {}
    for name in sorted({str(r["sweep"]) for r in rows if r.get("sweep") is not None}):
        figures = gpu_duty(rows, name)
        if figures is not None:
            out[name] = figures
    return out


def _key(value) -> object:
    return None if value is None or (isinstance(value, float) and value != value) else value


def _num(value: Optional[float]) -> float:
    return 0.0 if value is None or value != value else float(value)
