"""A sweep's GPU duty, for ``sweep.json``: the share of the time its cells held a GPU that was
measured window.

``duty = window_s / gpu_held_s``, over the runs rows this sweep measured: the rows of the
manifest's cells whose ``sweep`` is this sweep's name and that a worker measured (``cell_wall_s``
set; a cell measured earlier by another sweep and skipped here is not this sweep's GPU time):

- ``window_s``: the sum of the measured windows of the cells that ended ok (a window that ended in
  a failure status is no result);
- ``gpu_held_s = engine_start_s + cell_wall_s``: ``engine_start_s`` sums each engine start once
  (the ``engine_shared_cells`` cells that shared a start carry the same value; the columns of
  ``schema.ENGINE_START_KEY`` tell one start from another), from the worker's call of
  ``engine.start()`` (the GPU check and the wait for GPU memory included) until the engine is
  up; ``cell_wall_s`` sums every measured cell, ok or not, from its start on the running engine
  to its row (idle baseline, warm-up, window, drain, the sampler's stop).

Not counted, since no row holds it: an engine's stop (killing its processes, waiting for its GPU
memory to be freed), a worker's own start and Ray's scheduling between tasks, starts that failed
and cells that failed before their window (their rows carry no duration). The GPU was held at
least ``gpu_held_s``: the duty is an upper bound. One row per cell: a cell measured again (a
retry, a resume) counts its last measurement only.

Per GPU type (the cells' ``gpu``) and overall, each with its counts (``cells``: measured rows,
``cells_ok``, ``engine_starts``). Engines that hold no GPU (``simulated``, ``endpoint``) get the
same arithmetic over the worker's time; a simulated cell's window is modelled time, so its duty
says nothing of a GPU. ``gpu_duty`` is None while no cell of the sweep has been measured.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Iterable, List, Mapping, Optional

from orchestrator.errors import Status
from orchestrator.store.schema import ENGINE_START_KEY, WINDOW_S, engine_start_seconds

if TYPE_CHECKING:
    from orchestrator.store.sweep_store import Store

CELL_WALL_S = "cell_wall_s"
DUTY_COLUMNS = list(dict.fromkeys(["cell_id", "sweep", "status", "gpu", WINDOW_S, CELL_WALL_S, *ENGINE_START_KEY]))
"""The runs columns ``gpu_duty`` reads."""


def gpu_duty(rows: Iterable[Mapping], sweep: str) -> Optional[Dict]:
    """``{"overall": figures, "by_gpu": {gpu: figures}}`` of the rows of ``sweep`` (see the module
    doc), or None when none of them was measured."""
    mine = [r for r in rows if r.get("sweep") == sweep and r.get(CELL_WALL_S) is not None]
    if not mine:
        return None
    by_gpu: Dict[str, List[Mapping]] = {}
    for r in mine:
        by_gpu.setdefault(str(r.get("gpu")), []).append(r)
    return {"overall": _figures(mine), "by_gpu": {gpu: _figures(rs) for gpu, rs in sorted(by_gpu.items())}}


def sweep_gpu_duty(store: "Store", sweep: str, cell_ids: Iterable[str]) -> Optional[Dict]:
    """``gpu_duty`` of the stored runs rows of ``cell_ids`` (a sweep's manifest)."""
    return gpu_duty(store.runs_of(cell_ids, DUTY_COLUMNS).to_pylist(), sweep)


def _figures(rows: List[Mapping]) -> Dict:
    starts = engine_start_seconds(rows)
    ok = [r for r in rows if r.get("status") == Status.ok.value and r.get(WINDOW_S) is not None]
    window_s = sum(float(r[WINDOW_S]) for r in ok)
    start_s = sum(starts.values())
    wall_s = sum(float(r[CELL_WALL_S]) for r in rows)
    held_s = start_s + wall_s
    return {
        "cells": len(rows), "cells_ok": len(ok), "engine_starts": len(starts),
        "window_s": window_s, "engine_start_s": start_s, "cell_wall_s": wall_s, "gpu_held_s": held_s,
        "duty": window_s / held_s if held_s > 0 else None,
    }
