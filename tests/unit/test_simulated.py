"""The simulated engine: roofline timings, batch cap, determinism, modeled energy."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.energy import sampler_for
from orchestrator.engines import engine_for
from orchestrator.engines.simulated import ModeledPowerSampler, SimulatedEngine
from orchestrator.grid import config_of
from orchestrator.perf import roofline
from orchestrator.workload import build_plan


def _cfg(gpu="h100", quant="none", model="llama2_7b", workload="offline", **wl):
    return config_of([f"gpu={gpu}", f"quantization={quant}", f"model={model}", f"workload={workload}",
                      "engine=simulated", "sampler=auto", "batch_size=1"]
                     + [f"workload.{k}={v}" for k, v in wl.items()])


def _run(cfg, bs):
    eng = SimulatedEngine(cfg, bs)
    eng.start()
    return eng, eng.run(build_plan(cfg.workload, bs))


def test_decode_step_matches_roofline():
    cfg = _cfg()
    eng, wr = _run(cfg, 1)
    opts = cfg.engine.simulated
    assert eng.options is opts
    rec = wr.records[-1]
    tpot = (rec.end_s - rec.first_token_s) / (rec.output_tokens - 1)
    m, q, g = cfg.model, cfg.quantization, cfg.gpu
    mem = roofline.weight_bytes(m, q) / (roofline.bandwidth_bytes_s(g) * opts.memory_efficiency)
    assert tpot == pytest.approx(mem + opts.step_overhead_s, rel=0.05)  # KV of 128..256 tokens is small


def test_offline_batches_scale_throughput_and_are_deterministic():
    _, a = _run(_cfg(), 1)
    _, b = _run(_cfg(), 16)
    tps = [sum(r.output_tokens for r in w.records if r.phase == "measured") / (w.window_end_s - w.window_start_s) for w in (a, b)]
    assert tps[1] > 10 * tps[0]
    _, c = _run(_cfg(), 16)
    assert [r.end_s for r in c.records] == [r.end_s for r in b.records]


def test_online_respects_batch_cap_and_scheduled_arrivals():
    cfg = _cfg(workload="chat_medium", duration_s=5.0)
    assert cfg.workload.duration_s == 5.0 and engine_for("simulated", cfg.workload.kind) is SimulatedEngine
    _, wr = _run(cfg, 4)
    for r in wr.records:
        assert r.first_token_s > r.arrival_s and r.end_s >= r.first_token_s and r.output_tokens == 128
    # at any time at most 4 requests are between admission (first token step) and end
    events = sorted([(r.first_token_s - 1e-9, 1) for r in wr.records] + [(r.end_s, -1) for r in wr.records])
    running = np.cumsum([e[1] for e in events])
    assert running.max() <= 4


def test_modeled_power_and_energy_counter():
    cfg = _cfg()
    eng, wr = _run(cfg, 8)
    sampler = eng.modeled_sampler()
    assert isinstance(sampler, ModeledPowerSampler)
    assert isinstance(sampler_for(cfg.sampler, eng), ModeledPowerSampler)  # no configured sampler runs
    assert sampler.known_idle_power_w() == cfg.gpu.idle_w and not sampler.measures_idle_baseline
    sampler.start()
    trace = sampler.stop()
    assert trace.source == "simulated"
    g = cfg.gpu
    assert trace.power_w.min() >= g.idle_w and trace.power_w.max() <= g.tdp_w
    assert np.all(np.diff(trace.energy_mj) >= 0)
    t = trace.t_ns / 1e9
    assert np.trapezoid(trace.power_w, t) == pytest.approx((trace.energy_mj[-1] - trace.energy_mj[0]) / 1e3, rel=0.05)
    assert t[-1] >= wr.window_end_s  # the trace covers the whole measured window
