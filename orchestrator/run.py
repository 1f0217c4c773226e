"""One sweep, end to end on the driver: cells -> skip complete ones -> pre-launch status rows ->
Ray dispatch -> store -> a summary of how many cells ended in each status."""
from __future__ import annotations

import json
import time
from collections import Counter
from typing import Dict, List, Mapping

from orchestrator.grid import Cell
from orchestrator.progress import SweepProgress
from orchestrator.rows import status_tables
from orchestrator.store import Store



def plan_cells(cells: List[Cell], completed: Mapping[str, str], retry_failed: bool) -> Dict[str, List[Cell]]:
    """Split cells into prelaunch (status rows only), skip (already complete) and run."""
    out: Dict[str, List[Cell]] = {"prelaunch": [], "skip": [], "run": []}
    for c in cells:
        prev = completed.get(c.cell_id)
        if c.status is not None:
            out["skip" if prev == c.status else "prelaunch"].append(c)
        elif prev == "ok" or (prev is not None and not retry_failed):
            out["skip"].append(c)
        else:
            out["run"].append(c)
    return out


def run_sweep(cells: List[Cell], cfg: Mapping) -> Counter:
    """Run every cell not yet complete; return the final status count of all cells."""
    location = cfg["store"].get("uri") or cfg["store"]["dir"]
    store = Store.open(location)
    sweep = cfg["name"]
    completed = store.completed()
    parts = plan_cells(cells, completed, cfg["store"]["retry_failed"])
    final: Dict[str, str] = {c.cell_id: completed[c.cell_id] for c in parts["skip"]}
    for c in parts["prelaunch"]:
        store.write_cell(c.cell_id, status_tables(c.cell_id, c.config, sweep, c.status, c.reason))
        final[c.cell_id] = c.status
    print(
        f"sweep {sweep}: {len(cells)} cells — {len(parts['run'])} to run, {len(parts['skip'])} already complete, "
        f"{len(parts['prelaunch'])} not launchable (unsupported/infeasible) — results in {location}",
        flush=True,
    )
    _write_manifest(store, cfg, cells)
    if parts["run"]:
        _dispatch(parts["run"], cfg, store, final)
    counts = Counter(final.values())
    print("sweep done: " + ", ".join(f"{n} {s}" for s, n in counts.most_common()), flush=True)
    return counts


def _dispatch(cells: List[Cell], cfg: Mapping, store: Store, final: Dict[str, str]) -> None:
    import ray

    from orchestrator.dispatch import Dispatcher, connect, make_units, resolve_auto

    dispatch = cfg["dispatch"]
    print(connect(dispatch), flush=True)
    auto = resolve_auto(cells)
    resources = ray.cluster_resources()
    gpu_types = {k.split(":", 1)[1]: resources.get("GPU", 0) > 0 for k in resources if k.startswith("accelerator_type:")}
    units = make_units(cells, auto, gpu_types, dispatch["share_engines"])

    def on_result(cell_id, status, tables):
        for attempt in range(3):  # a transient filesystem error (e.g. object store) gets two more tries
            try:
                store.write_cell(cell_id, tables)
                break
            except OSError:
                if attempt == 2:
                    raise
                time.sleep(2.0 * (attempt + 1))
        final[cell_id] = status

    progress = SweepProgress(len(cells), enabled=dispatch["progress"])
    t0 = time.monotonic()
    try:
        Dispatcher(dispatch, cfg["name"], on_result, place_as_gpu=dispatch["place_as_gpu"]).run(units, progress)
    finally:
        progress.close()
    print(f"dispatched {len(cells)} cells in {len(units)} tasks in {time.monotonic() - t0:.1f} s", flush=True)


def _write_manifest(store: Store, cfg: Mapping, cells: List[Cell]) -> None:
    manifest = {
        "name": cfg["name"],
        "written_unix_s": time.time(),
        "cells": [{"cell_id": c.cell_id, "label": c.label()} for c in cells],
    }
    with store.filesystem.open_output_stream(f"{store.root}/sweep.json.tmp") as out:
        out.write(json.dumps(manifest, indent=1).encode())
    store.filesystem.move(f"{store.root}/sweep.json.tmp", f"{store.root}/sweep.json")
