"""Two GPUs at once: makespan and energy attribution (run on a machine with >= 2 GPUs).

    python scripts/bench_two_gpus.py --gpu h200 --out DIR [--cells 4] [--phases warmup,two_gpus,one_gpu]
    python scripts/bench_two_gpus.py --out DIR --report-only     # merge the phases' JSON into the table

A 10-minute call holds about one phase after a cold start: run ``warmup,two_gpus`` in one call
and ``one_gpu`` in the next (back to back, so compile caches stay warm), then ``--report-only``.
Each phase writes ``phase_<name>.json`` as soon as it ends.

One run, two phases over the same sweep of ``--cells`` equal vLLM cells (llama2_7b fp16, offline
static batches, one cell per seed: ``repeats``, engine sharing off so each cell is its own task
and its own engine start):
  1. a local Ray cluster offering 2 GPUs: the cells run two at a time, one per GPU;
  2. a local Ray cluster offering 1 GPU: the same cells one after the other.
Makespan ratio = phase 1 / phase 2 (target <= 0.6).

Attribution: beside the sweep, this script samples the NVML energy counter of *every* GPU at
10 Hz on the same monotonic clock the cells use. For each cell it shows that the UUID in its
row is the GPU Ray assigned it (Ray GPU id -> NVML index, PCI-bus order), and that its
measured energy equals its own GPU's counter delta over its window, not the sum with the other
GPU's (idle or busy) energy.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class AllGpus:
    """10 Hz counters of every GPU: uuid -> list of (monotonic ns, mJ)."""

    def __init__(self):
        import pynvml

        pynvml.nvmlInit()
        self.nv = pynvml
        self.handles = {}
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            uuid = pynvml.nvmlDeviceGetUUID(h)
            self.handles[uuid.decode() if isinstance(uuid, bytes) else uuid] = (i, h)
        self.samples = {u: [] for u in self.handles}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            for u, (_, h) in self.handles.items():
                self.samples[u].append((time.monotonic_ns(), self.nv.nvmlDeviceGetTotalEnergyConsumption(h)))
            time.sleep(0.1)

    def start(self):
        self._t.start()

    def stop(self):
        self._stop.set()
        self._t.join()

    def delta_j(self, uuid, t0_ns, t1_ns):
        import numpy as np

        s = np.asarray(self.samples[uuid], dtype=float)
        return float((np.interp(t1_ns, s[:, 0], s[:, 1]) - np.interp(t0_ns, s[:, 0], s[:, 1])) / 1e3)


def sweep_configs(gpu: str, cells: int):
    """-> (the overrides, the sweep's ``Config``, its cell configs: one per repeat), built the way
    ``python -m orchestrator`` builds them (``grid.job_config`` over conf/config.yaml's defaults)."""
    from orchestrator.config.root import Config
    from orchestrator.driver.grid import cell_configs, default_choices, job_config

    overrides = ["engine=vllm", "sampler=nvml", f"gpu={gpu}", "model=llama2_7b", "workload=offline",
                 "batch_size=64", "workload.num_batches=8", "workload.warmup_batches=1", f"repeats={cells}",
                 "engine.vllm.enforce_eager=true", "dispatch.share_engines=false", "dispatch.progress=false",
                 "sampler.idle_baseline_s=3", "name=two_gpus"]
    base = job_config(Config(), default_choices(), overrides)
    return overrides, base, cell_configs([base])


def phase(num_gpus, base, configs, out):
    """Run ``configs`` on a fresh local Ray cluster offering ``num_gpus`` GPUs, results in ``out``
    -> (makespan s, status counts, the runs rows)."""
    import ray

    from orchestrator.driver.runner import run_sweep
    from orchestrator.store.sweep_store import load

    ray.init(address="local", num_gpus=num_gpus, include_dashboard=False, logging_level="ERROR")
    t0 = time.monotonic()
    counts = run_sweep(configs, dataclasses.replace(base, store=dataclasses.replace(base.store, dir=str(out)))).counts
    makespan = time.monotonic() - t0
    ray.shutdown()
    return makespan, dict(counts), load(str(out)).runs.to_pylist()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", default="h200")
    ap.add_argument("--cells", type=int, default=4)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/two_gpus"))
    ap.add_argument("--phases", default="warmup,two_gpus,one_gpu",
                    help="warmup: one throwaway engine start, so that neither phase pays the cold caches")
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.report_only:
        return report(a)
    sweep = sweep_configs(a.gpu, a.cells)  # a config error stops here, before NVML
    gpus = AllGpus()
    gpus.start()
    try:
        run_phases(a, sweep, gpus)
    finally:
        gpus.stop()
    report(a)


def run_phases(a, sweep, gpus):
    """Each phase of ``--phases`` in order; ``phase_<name>.json`` as soon as it ends. ``sweep``:
    ``sweep_configs``'s (overrides, base config, cell configs)."""
    from orchestrator.driver.grid import cell_configs

    overrides, base, configs = sweep
    for name in a.phases.split(","):
        if name == "warmup":
            one = dataclasses.replace(base, repeats=1)
            makespan, counts, _ = phase(1, one, cell_configs([one]), a.work / f"warmup-{time.time_ns()}")
            print(f"warmup: {makespan:.1f} s, {counts}", flush=True)
            continue
        makespan, counts, runs = phase({"two_gpus": 2, "one_gpu": 1}[name], base, configs, a.work / name)
        print(f"{name}: makespan {makespan:.1f} s, {counts}", flush=True)
        doc = {"overrides": overrides, "gpus": {u: i for u, (i, _) in gpus.handles.items()},
               "makespan_s": makespan, "counts": counts, "cells": [attribution(r, gpus) for r in runs]}
        (a.out / f"phase_{name}.json").write_text(json.dumps(doc, indent=1, default=str))


def report(a):
    res = {}
    for name in ("two_gpus", "one_gpu"):
        f = a.out / f"phase_{name}.json"
        if f.exists():
            res[name] = json.loads(f.read_text())
            res["overrides"] = res[name]["overrides"]
    if "two_gpus" in res and "one_gpu" in res:
        res["makespan_ratio"] = res["two_gpus"]["makespan_s"] / res["one_gpu"]["makespan_s"]
    (a.out / "two_gpus.json").write_text(json.dumps(res, indent=1, default=str))
    (a.out / "two_gpus.md").write_text(markdown(res, a))
    print((a.out / "two_gpus.md").read_text())


def attribution(r, gpus):
    """Per cell: assigned vs sampled GPU, and its energy against each GPU's counter delta."""
    ids = json.loads(r["ray_gpu_ids"] or "[]")
    assigned_index = int(ids[0]) if ids else None
    own = r["gpu_uuid"]
    row = {"cell_id": r["cell_id"], "repeat": r["repeat"], "status": r["status"], "ray_gpu_ids": ids,
           "gpu_uuid": own, "nvml_index_of_uuid": gpus.handles.get(own, (None,))[0],
           "uuid_matches_assignment": own in gpus.handles and gpus.handles[own][0] == assigned_index,
           "energy_j": r["energy_j"], "window_s": r["window_s"], "mean_power_w": r["mean_power_w"],
           "started_unix_s": r["started_unix_s"], "finished_unix_s": r["finished_unix_s"]}
    if r["status"] == "ok" and own in gpus.handles:
        t0, t1 = int(r["window_start_s"] * 1e9), int(r["window_end_s"] * 1e9)
        row["own_gpu_counter_j"] = gpus.delta_j(own, t0, t1)
        row["other_gpus_counter_j"] = {u: gpus.delta_j(u, t0, t1) for u in gpus.handles if u != own}
        row["energy_vs_own_pct"] = (r["energy_j"] / row["own_gpu_counter_j"] - 1) * 100
    return row


def markdown(res, a):
    md = [f"# Two GPUs at once: {a.cells} equal vLLM cells on 1 vs 2 GPUs\n",
          f"Command: `python scripts/bench_two_gpus.py --gpu {a.gpu} --cells {a.cells}`; overrides: "
          f"`{' '.join(res.get('overrides', []))}`.\n",
          "| phase | makespan s | statuses |", "|---|---:|---|"]
    phases = [p for p in ("two_gpus", "one_gpu") if p in res]
    for p in phases:
        md.append(f"| {p} | {res[p]['makespan_s']:.1f} | {res[p]['counts']} |")
    ratio = f"{res['makespan_ratio']:.2f}" if "makespan_ratio" in res else "not measured (a phase is missing)"
    md.append(f"\n**Makespan ratio (2 GPUs / 1 GPU): {ratio}** (target <= 0.6)\n")
    md.append("## Energy attribution\n")
    md.append("| phase | repeat | Ray GPU id | NVML index of the row's UUID | UUID matches | cell energy J | "
              "own GPU counter J | other GPU counter J | cell vs own |")
    md.append("|---|---:|---|---:|---|---:|---:|---:|---:|")
    for p in phases:
        for c in res[p]["cells"]:
            other = sum((c.get("other_gpus_counter_j") or {}).values())
            md.append(f"| {p} | {c['repeat']} | {c['ray_gpu_ids']} | {c['nvml_index_of_uuid']} | "
                      f"{c['uuid_matches_assignment']} | {c['energy_j'] or float('nan'):.0f} | "
                      f"{c.get('own_gpu_counter_j', float('nan')):.0f} | {other:.0f} | "
                      f"{c.get('energy_vs_own_pct', float('nan')):+.2f}% |")
    md.append("\nA cell's energy equals its own GPU's counter over its window; the other GPU's energy "
              "(idle in the one-GPU phase, another cell's in the two-GPU phase) is not in it.")
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
