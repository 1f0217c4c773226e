"""``worker.simulated_prediction``: the steady-state prediction of a synthetic offline cell agrees
with the simulator running the cell's whole plan (warm-up and window) within 3% (one batch against
a 10 s window: the modeled power's ramp weighs more in one batch, 2.0% at batch 1), and a cell fed by a
traffic file is predicted by replaying that file, as its cell would run it."""
from __future__ import annotations

import pytest

from orchestrator.client.metrics import summarize
from orchestrator.driver.grid import config_of
from orchestrator.energy.base import window_energy
from orchestrator.engines.simulated import SimulatedEngine
from orchestrator.workloads import plan_for
from orchestrator.worker.simulated_prediction import predict_cell


def full_run(cfg):
    engine = SimulatedEngine(cfg, cfg.batch_size)
    engine.start()
    run = engine.run(plan_for(cfg, "a-cell"))
    trace = engine.modeled_sampler().stop()
    row = summarize(run, None, True)
    energy = window_energy(trace, int(run.window_start_s * 1e9), int(run.window_end_s * 1e9), None)
    return row["output_throughput_tok_s"], energy["energy_j"] / row["output_tokens_in_window"]


@pytest.mark.parametrize("bs", [1, 32])
def test_an_offline_cell_is_predicted_as_its_whole_run_measures_it(bs):
    cfg = config_of(["engine=simulated", "gpu=h100", "workload=offline", f"batch_size={bs}"])
    p = predict_cell(cfg)
    tok_s, j = full_run(cfg)
    assert p.output_tok_s == pytest.approx(tok_s, rel=0.03)
    assert p.j_per_output_token == pytest.approx(j, rel=0.03)


def test_a_trace_cell_is_predicted_by_replaying_its_trace():
    cfg = config_of(["engine=simulated", "gpu=h100", "workload=mooncake_sample", "batch_size=32"])
    p = predict_cell(cfg)
    tok_s, j = full_run(cfg)
    assert p.output_tok_s == pytest.approx(tok_s, rel=1e-9) and p.j_per_output_token == pytest.approx(j, rel=1e-9)
    offline = predict_cell(config_of(["engine=simulated", "gpu=h100", "workload=offline", "batch_size=32"]))
    assert p.output_tok_s < 0.5 * offline.output_tok_s  # the trace's arrival rate, not a full static batch
