"""The simulator's steady-state prediction of one cell, without Ray or a store: its output tok/s
and gross J per output token, from one warm-up-free measured batch (offline synthetic traffic) or
its window (served workloads; a dataset, trace or session file replayed as a cell would replay
it: ``workloads.plan_for``) on virtual time. The calibration (``scripts/calibrate_simulator.py``) fits
the simulator's options with it; the active sweep (``search.active_sweep``) predicts the cells
it does not measure with it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from orchestrator.config.engine_options import SimulatedOptions
    from orchestrator.config.root import CellConfig


@dataclass(frozen=True)
class SteadyPrediction:
    """``output_tok_s`` (tokens/s) and ``j_per_output_token`` (J, gross: idle included); NaN where
    the simulated window produced none."""

    output_tok_s: float
    j_per_output_token: float


def predict_cell(config: "CellConfig", options: Optional["SimulatedOptions"] = None) -> SteadyPrediction:
    """The simulator's prediction of ``config`` run with ``options`` (default: the cell's own
    ``engine.simulated`` block), whatever engine the cell names."""
    from orchestrator.client.metrics import summarize
    from orchestrator.client.workload import build_plan
    from orchestrator.config.workload_sources import Source
    from orchestrator.energy.base import window_energy
    from orchestrator.engines.simulated import SimulatedEngine
    from orchestrator.workloads import plan_for

    opts = dataclasses.replace(options or config.engine.simulated, pace_s=0.0)  # no wall-clock sleeps
    synthetic = Source(config.workload.source) is Source.synthetic
    workload = dataclasses.replace(config.workload, warmup_batches=0, num_batches=1, min_window_s=0.0) \
        if synthetic else config.workload
    cfg = dataclasses.replace(config, engine=dataclasses.replace(config.engine, name="simulated", simulated=opts),
                              workload=workload)
    engine = SimulatedEngine(cfg, cfg.batch_size)
    engine.start()
    run = engine.run(build_plan(cfg.workload, cfg.batch_size) if synthetic else plan_for(cfg, "prediction"))
    trace = engine.modeled_sampler().stop()
    row = summarize(run, None, True)
    energy = window_energy(trace, int(run.window_start_s * 1e9), int(run.window_end_s * 1e9), None)
    tokens, joules = row["output_tokens_in_window"], energy["energy_j"]
    per_token = float(joules) / float(tokens) if tokens and joules is not None else float("nan")
    return SteadyPrediction(float(row["output_throughput_tok_s"] or float("nan")), per_token)
