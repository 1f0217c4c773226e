"""What every part of the vLLM benchmark shares: settings, targets, the config overrides of both
sides of a comparison, the cell config they give, and ``results.json`` writes."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List

if TYPE_CHECKING:
    from orchestrator.config.root import CellConfig

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench_vllm.py"  # the command line; part workers run it again
PARTS = ("offline", "bare", "server")
# Rough seconds each part needs (engine start included), to skip what cannot fit the budget.
PART_MIN_S = {"offline": 150.0, "bare": 120.0, "server": 170.0}
TARGETS = {"offline_ratio": 0.97, "rate_rel": 0.02, "latency_rel": 0.10, "energy_rel": 0.02, "repeat_cv": 0.02,
           "sampler_rel": 0.01, "overhead_s": 10.0, "energy_min_window_s": 10.0}


def log(msg: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {msg}", flush=True)


def overrides(args, workload: str) -> List[str]:
    """The config overrides every side of a comparison shares."""
    o = [f"model={args.model}", f"gpu={args.gpu}", "engine=vllm", "sampler=nvml", f"workload={workload}"]
    if args.max_num_batched_tokens:
        o.append(f"engine.vllm.max_num_batched_tokens={args.max_num_batched_tokens}")
    if workload == "offline":
        o += ["workload.input.mean_tokens=128", "workload.output.mean_tokens=128",
              "workload.warmup_batches=1", "workload.num_batches=4", "workload.min_window_s=10"]
    else:
        o.append(f"workload.duration_s={args.chat_duration_s}")
    return o


def compose_cell(over: List[str], batch_size: int) -> "CellConfig":
    """The typed cell config the orchestrator would build for these overrides (repeat 0)."""
    from orchestrator.driver.grid import config_of

    return config_of([*over, f"batch_size={batch_size}"])


def batch_sizes(args) -> List[int]:
    return [int(b) for b in args.batch_sizes.split(",")]


def write_json(path: Path, doc: Dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, path)
