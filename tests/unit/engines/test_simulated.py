"""The simulated engine: roofline timings (decode steps read the KV cache), batch cap,
determinism, modeled energy, the bounded drain and the offline window rule on virtual time."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from orchestrator.client import metrics
from orchestrator.client.workload import drain_limit_s
from orchestrator.workloads import plan_for
from orchestrator.driver.grid import cells, config_of
from orchestrator.energy import sampler_for
from orchestrator.engines import engine_for
from orchestrator.engines.simulated import ModeledPowerSampler, SimulatedEngine
from orchestrator.perf import roofline


def _cfg(gpu="h100", quant="none", model="llama2_7b", workload="offline", **wl):
    return config_of([f"gpu={gpu}", f"quantization={quant}", f"model={model}", f"workload={workload}",
                      "engine=simulated", "sampler=auto", "batch_size=1"]
                     + [f"workload.{k}={v}" for k, v in wl.items()])


def _run(cfg, bs):
    """The cell ``cfg`` at batch size ``bs``, run as the worker runs it (``plan_for`` its cell)."""
    cfg = dataclasses.replace(cfg, batch_size=bs)
    (cell,) = cells([cfg], {})
    eng = SimulatedEngine(cfg, bs)
    eng.start()
    return eng, eng.run(plan_for(cfg, cell.cell_id))


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
    ok = [r for r in wr.records if r.status == "ok"]
    cancelled = [r for r in wr.records if r.status == "cancelled"]
    assert len(ok) + len(cancelled) == len(wr.records) and ok and cancelled  # 20 req/s overload 4 seqs
    for r in ok:
        assert r.first_token_s > r.arrival_s and r.end_s >= r.first_token_s and r.output_tokens == 128
    stop = wr.window_end_s + wr.drain_s
    for r in cancelled:  # what ran got its tokens, what still queued none; all end at the stop
        assert r.output_tokens < 128 and r.end_s == stop
        assert (r.output_tokens == 0) if np.isnan(r.first_token_s) else (r.first_token_s > r.arrival_s)
    # at any time at most 4 requests are between admission (first token step) and end
    started = [r for r in wr.records if not np.isnan(r.first_token_s)]
    events = sorted([(r.first_token_s - 1e-9, 1) for r in started] + [(r.end_s, -1) for r in started])
    running = np.cumsum([e[1] for e in events])
    assert running.max() <= 4
    assert sum(1 for r in cancelled if r.output_tokens > 0) == 4  # the 4 running at the stop


def test_quantized_weights_read_slowly_take_longer_and_draw_less():
    """``quantized_weight_efficiency.awq=k``: a batch-1 AWQ decode step reads its 4-bit linears at
    k × memory_efficiency (the fp16 embeddings and KV at memory_efficiency), so TPOT grows by
    their bytes / bandwidth × (1/k − 1); the memory side of busy power shrinks by the achieved
    bandwidth share. fp16 (no quantized weights) is unchanged by any k."""
    base = _cfg(gpu="h200", quant="awq")
    slow = dataclasses.replace(base, engine=dataclasses.replace(base.engine, simulated=dataclasses.replace(
        base.engine.simulated, quantized_weight_efficiency={"awq": 0.25})))
    opts, m, q, g = base.engine.simulated, base.model, base.quantization, base.gpu
    bw = roofline.bandwidth_bytes_s(g) * opts.memory_efficiency
    qbytes = roofline.quantized_weight_bytes(m, q)
    assert qbytes == pytest.approx(roofline.linear_params(m) * 4.25 / 8)

    def tpot_and_power(cfg):
        eng, wr = _run(cfg, 1)
        rec = wr.records[-1]
        trace = eng.modeled_sampler().stop()
        busy = trace.power_w[trace.power_w > g.idle_w + 1]
        return (rec.end_s - rec.first_token_s) / (rec.output_tokens - 1), float(np.median(busy))

    (t0, p0), (t1, p1) = tpot_and_power(base), tpot_and_power(slow)
    assert t1 - t0 == pytest.approx(qbytes / bw * (1 / 0.25 - 1), rel=0.02)
    t_mem = roofline.weight_bytes(m, q) / bw  # the step's memory time at full efficiency (KV is small)
    share = t_mem / (t_mem + qbytes / bw * 3)  # the bandwidth share achieved with k = 0.25
    assert (p1 - g.idle_w) / (p0 - g.idle_w) == pytest.approx(share, rel=0.05)  # memory-bound: compute share ~0
    fp16 = _cfg(gpu="h200")
    fp16_slow = dataclasses.replace(fp16, engine=dataclasses.replace(fp16.engine, simulated=dataclasses.replace(
        fp16.engine.simulated, quantized_weight_efficiency={"none": 0.25, "awq": 0.25})))
    assert tpot_and_power(fp16) == tpot_and_power(fp16_slow)
    with pytest.raises(Exception, match="quantized_weight_efficiency.awq"):
        config_of(["engine=simulated", "engine.simulated.quantized_weight_efficiency.awq=1.5"]).validate()


def test_host_bound_step_time_runs_at_idle_power():
    """``host_step_s=h`` (an eager engine's launches): every step takes h longer and its mean draw
    is the busy step's energy plus h at idle over the longer step."""
    base = _cfg(gpu="h200", quant="awq")
    eager = dataclasses.replace(base, engine=dataclasses.replace(base.engine, simulated=dataclasses.replace(
        base.engine.simulated, host_step_s=0.015)))
    g = base.gpu

    def tpot_and_power(cfg):
        eng, wr = _run(cfg, 1)
        rec = wr.records[-1]
        trace = eng.modeled_sampler().stop()
        return (rec.end_s - rec.first_token_s) / (rec.output_tokens - 1), float(np.median(trace.power_w))

    (t0, p0), (t1, p1) = tpot_and_power(base), tpot_and_power(eager)
    assert t1 - t0 == pytest.approx(0.015, rel=0.01)
    assert p1 == pytest.approx((p0 * t0 + g.idle_w * 0.015) / t1, rel=0.02)
    with pytest.raises(Exception, match="host_step_s"):
        config_of(["engine=simulated", "engine.simulated.host_step_s=-1"]).validate()


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


# ------------------------------------------------------------------ bounded drain, KV reads, windows


def test_overloaded_open_loop_stops_at_the_drain_limit():
    """BS 1 at 50 req/s (chat_high): the queue grows without end. The simulator stops
    ``drain_limit_s`` (virtual) after the window, keeps the rest as cancelled rows, and the
    cell's TTFTs stay within the window plus the drain (not the hours an unbounded queue takes)."""
    cfg = _cfg(workload="chat_high")
    limit = drain_limit_s(cfg)
    assert limit == 10.0  # an H100 at BS 1: the 10 s floor
    _, wr = _run(cfg, 1)
    assert wr.drain_timeout_s == limit and wr.window_end_s - wr.window_start_s == 60.0
    ok = [r for r in wr.records if r.status == "ok"]
    cancelled = [r for r in wr.records if r.status == "cancelled"]
    assert len(wr.records) == 50 + len([r for r in wr.records if r.phase == "measured"])  # every request a row
    assert len(cancelled) > 2500 and 50 < len(ok) < 150  # ~1.3 req/s served of 50
    # the stop: the first step ending at or past window end + limit (a step is ~6 ms here)
    assert limit <= wr.drain_s < limit + 0.05
    last_ok_end = max(r.end_s for r in ok)
    assert last_ok_end <= wr.window_end_s + wr.drain_s
    assert sum(r.output_tokens > 0 for r in cancelled) == 1  # the one running at the stop kept its tokens
    row = metrics.summarize(wr, 50.0, True)
    assert row["n_requests_cancelled"] == len(cancelled) and row["saturated"]
    assert row["drain_timeout_s"] == limit and row["drain_s"] == wr.drain_s
    assert row["n_requests_failed"] == 0 and not row["token_count_mismatch"]
    assert row["ttft_p50_ms"] < (60.0 + limit) * 1e3 and row["ttft_p99_ms"] < (60.0 + limit + 1.0) * 1e3


def test_closed_loop_drain_is_bounded_too():
    cfg = _cfg(gpu="t4", workload="chat_high", arrival="closed", concurrency=16, duration_s=20, warmup_requests=2,
               drain_timeout_s=5)
    _, wr = _run(cfg, 1)
    assert wr.window_end_s - wr.window_start_s == 20.0 and wr.drain_timeout_s == 5.0
    assert 5.0 <= wr.drain_s < 5.1
    cancelled = [r for r in wr.records if r.status == "cancelled"]
    assert len(cancelled) >= 14  # 16 clients, one sequence at a time on a T4 (~7 s a request)
    assert all(r.arrival_s <= wr.window_end_s for r in wr.records)  # nothing sent after the window
    assert metrics.summarize(wr, None, True)["saturated"]


def test_underloaded_cells_drain_fully_and_quickly():
    cfg = _cfg(workload="chat_medium", duration_s=10.0, rate_rps=1.0)
    _, wr = _run(cfg, 64)
    assert all(r.status == "ok" for r in wr.records)
    assert 0 <= wr.drain_s < 2.0 and wr.drain_timeout_s == 10.0
    assert not metrics.summarize(wr, 1.0, True)["saturated"]


def _expected_gap(cfg, batch, input_tokens, k):
    """The decode step after a request's ``k``-th token, in a static batch of ``batch`` alike
    requests: every sequence feeds 1 token over input + k - 1 tokens of KV (perf.roofline)."""
    o = cfg.engine.simulated
    return roofline.step_seconds(cfg.model, cfg.quantization, cfg.gpu, batch, batch * (input_tokens + k - 1),
                                 o.memory_efficiency, o.compute_efficiency) + o.step_overhead_s


@pytest.mark.parametrize("bs", [1, 64, 256])
def test_offline_decode_steps_read_the_kv_cache(bs):
    cfg = _cfg(min_window_s=0, num_batches=1, warmup_batches=1)
    _, wr = _run(cfg, bs)
    o, m, q, g = cfg.engine.simulated, cfg.model, cfg.quantization, cfg.gpu
    expected = np.array([_expected_gap(cfg, bs, 128, k) for k in range(1, 128)])
    prefill = roofline.step_seconds(m, q, g, bs * 128, 0, o.memory_efficiency, o.compute_efficiency) + o.step_overhead_s
    assert len(wr.records) == 2 * bs
    for r in wr.records:
        assert r.input_tokens == 128 and r.output_tokens == 128 == len(r.token_times_s)
        np.testing.assert_allclose(np.diff(r.token_times_s), expected, rtol=1e-9)
        assert r.token_times_s[0] - r.send_s == pytest.approx(prefill, rel=1e-9)
    # the KV reads matter: the last step of BS 256 reads 256 x 254 tokens of KV besides the weights
    no_kv = roofline.step_seconds(m, q, g, bs, 0, o.memory_efficiency, o.compute_efficiency) + o.step_overhead_s
    grows = expected[-1] / no_kv - 1
    assert (grows > 1.0) if bs == 256 else (grows > 0.002)


def test_online_decode_steps_read_the_kv_cache():
    """One request alone (arrivals 100 s apart): each step reads its own KV, as offline."""
    cfg = _cfg(workload="chat_medium", arrival="constant", rate_rps=0.01, duration_s=200.0, warmup_requests=0,
               **{"input.dist": "fixed", "input.mean_tokens": 512})
    _, wr = _run(cfg, 8)
    assert len(wr.records) == 2 and all(r.status == "ok" for r in wr.records)
    expected = np.array([_expected_gap(cfg, 1, 512, k) for k in range(1, 128)])
    for r in wr.records:
        np.testing.assert_allclose(np.diff(r.token_times_s), expected, rtol=1e-9)


@pytest.mark.parametrize("gpu, bs", [("h100", 1), ("h100", 256), ("t4", 64)])
def test_offline_window_is_at_least_min_window_and_num_batches(gpu, bs):
    cfg = _cfg(gpu=gpu)
    assert (cfg.workload.min_window_s, cfg.workload.num_batches) == (10.0, 4)
    _, wr = _run(cfg, bs)
    bounds = wr.batch_bounds_s
    assert wr.window_end_s - wr.window_start_s >= 10.0 and len(bounds) >= 4
    assert (wr.window_start_s, wr.window_end_s) == (bounds[0][0], bounds[-1][1])
    if len(bounds) > 4:  # it stopped at the first batch that reached 10 s
        assert bounds[-2][1] - bounds[0][0] < 10.0
    meas = [r for r in wr.records if r.phase == "measured"]
    assert len(meas) == bs * len(bounds) and all(r.output_tokens == 128 for r in meas)
    row = metrics.summarize(wr, None, True)
    assert row["n_batches_measured"] == len(bounds) and row["batch_output_tok_s_cv"] < 1e-9  # identical batches
