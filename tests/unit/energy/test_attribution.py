"""``energy.attribution``: (a) the energy curve takes the counter's value at every anchor (the
first sample of each new value), is monotone and is shaped between anchors by the instant power
(steeper where the power is higher); without a counter it is the power's trapezoid integral.
(b) Conservation on real simulator cells (multi-turn sessions with prefix caching, offline
batches): the requests' energy plus what no step holds is the window's energy, gross and net;
every request with a token in the window gets energy; prefill energy only where the request's
prefill step lies in the window; with fine power samples what no step holds is the idle draw
between steps. (c) The roofline split: prefill-only steps are all prefill, decode-only all
decode; prompt tokens share a step's prefill part in proportion; a decode token riding along a
2,000-token prefill costs a small fraction of one in a decode-only step. (d) The measured path
(no modeled step energy): under constant power P a step's gross energy is P x its length inside
the window, its net (P - idle) x that length."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.app.hydra_entry import typed
from orchestrator.core.steps import StepRecorder
from orchestrator.driver.grid import cell_configs, cells
from orchestrator.energy.attribution import RooflineSplit, attribute, energy_curve
from orchestrator.energy.base import PowerTrace, window_energy
from orchestrator.engines.simulated import SimulatedEngine
from orchestrator.perf import roofline
from orchestrator.workloads import plan_for


def trace_of(t_s, power_w, energy_j=None, source="nvml") -> PowerTrace:
    t_s = np.asarray(t_s, dtype=float)
    n = t_s.size
    mj = np.full(n, np.nan) if energy_j is None else np.asarray(energy_j, dtype=float) * 1e3
    z = np.zeros(n)
    return PowerTrace(source, np.rint(t_s * 1e9).astype(np.int64), np.asarray(power_w, dtype=float), mj, z, z, z, z)


# ---------------------------------------------------------------------------------------- (a)

def shaped_trace():
    """Instant power sampled every 20 ms (a 70 ms sine between 100 and 400 W); the counter holds
    the true energy (the power's exact integral) and updates every 100 ms, 5 ms after a sample
    time, so the first sample to see a new value is 15 ms after the update."""
    dt, period = 0.020, 0.100
    t = np.arange(0, 2.0 + 1e-9, dt)

    def power(x):
        return 250.0 + 150.0 * np.sin(2 * np.pi * x / 0.07)

    def true_energy(x):  # the integral of power from 0
        return 250.0 * x - 150.0 * 0.07 / (2 * np.pi) * (np.cos(2 * np.pi * x / 0.07) - 1)

    updates = np.arange(0.005, 2.0, period)
    last_update = updates[np.searchsorted(updates, t, side="right") - 1].clip(min=0)
    counter = np.where(t >= updates[0], true_energy(last_update), 0.0)
    return t, power(t), counter


def test_curve_takes_the_counter_at_every_anchor_and_is_monotone():
    t, p, counter = shaped_trace()
    ts, curve = energy_curve(trace_of(t, p, counter))
    assert np.allclose(ts, t)
    anchors = np.flatnonzero(np.concatenate([[True], np.diff(counter) != 0]))
    assert anchors.size == 21  # the first sample (counter 0) and the 20 updates
    assert np.allclose(curve[anchors], counter[anchors], rtol=0, atol=1e-9)
    assert np.all(np.diff(curve) >= 0)
    # between anchors the curve lies between the counter values it joins
    for a, b in zip(anchors[:-1], anchors[1:]):
        assert np.all(curve[a:b] >= counter[a] - 1e-9) and np.all(curve[a:b] <= counter[b] + 1e-9)


def test_curve_follows_the_power_shape_between_anchors():
    t, p, counter = shaped_trace()
    _, curve = energy_curve(trace_of(t, p, counter))
    trapezoid = np.diff(t) * (p[1:] + p[:-1]) / 2
    anchors = np.flatnonzero(np.concatenate([[True], np.diff(counter) != 0]))
    checked = 0
    for a, b in zip(anchors[:-1], anchors[1:]):
        inc, area = np.diff(curve[a:b + 1]), trapezoid[a:b]
        # each increment is the power's integral over it, scaled by one factor per anchor interval
        scale = (counter[b] - counter[a]) / area.sum()
        assert np.allclose(inc, area * scale, rtol=1e-9, atol=1e-12)
        # higher power -> steeper
        hi, lo = int(np.argmax(area)), int(np.argmin(area))
        if area[hi] > 1.5 * area[lo]:
            assert inc[hi] / (t[a + hi + 1] - t[a + hi]) > 1.5 * inc[lo] / (t[a + lo + 1] - t[a + lo])
            checked += 1
    assert checked >= 10


def test_the_last_counter_interval_is_rescaled_too():
    """Counter 0 J, then 10 J from 0.2 s, then 50 J from 0.4 s (anchors at samples 0, 2, 4). The
    interval between the last two anchors holds 40 J by the counter, and the curve must reach
    50 J at the last anchor; only after it does the unscaled power integral take over."""
    t = np.arange(0, 0.61, 0.1)
    p = np.array([100.0, 100, 300, 300, 100, 100, 100])
    counter = np.array([0.0, 0, 10, 10, 50, 50, 50])
    _, curve = energy_curve(trace_of(t, p, counter))
    assert curve[2] == pytest.approx(10.0)
    assert curve[4] == pytest.approx(50.0)  # the counter's value at its anchor
    assert curve[3] == pytest.approx(10.0 + 40.0 * 30.0 / 50.0)  # 40 J shaped by the power (30 of 50 J here)
    assert curve[6] - curve[4] == pytest.approx(20.0)  # after the last update: the power's integral


def test_after_the_last_update_the_curve_continues_with_the_power_integral():
    t, p, counter = shaped_trace()
    _, curve = energy_curve(trace_of(t, p, counter))
    last = np.flatnonzero(np.diff(counter) != 0)[-1] + 1
    trapezoid = np.concatenate([[0.0], np.cumsum(np.diff(t) * (p[1:] + p[:-1]) / 2)])
    assert np.allclose(curve[last:], counter[last] + trapezoid[last:] - trapezoid[last])


@pytest.mark.parametrize("counter", ["nan", "missing"])
def test_without_a_counter_the_curve_is_the_trapezoid_integral(counter):
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.uniform(0.01, 0.03, 200))
    p = rng.uniform(80, 600, 200)
    tr = trace_of(t, p)
    if counter == "missing":
        tr.energy_mj = np.zeros(0)
    ts, curve = energy_curve(tr)
    assert np.allclose(ts, t, rtol=0, atol=1e-9)  # (the trace holds ns)
    expected = [np.trapezoid(p[:i + 1], ts[:i + 1]) for i in range(ts.size)]
    assert np.allclose(curve, expected, rtol=1e-12, atol=1e-9)


# ---------------------------------------------------------------------------------------- (b)

def simulated_cell(compose, overrides):
    """A real simulator cell: its config, window run, modeled trace, idle draw and window energy."""
    [cfg] = cell_configs([typed(compose(["model=llama2_7b", "gpu=h100", "engine=simulated", *overrides]))])
    (cell,) = cells([cfg], {})
    plan = plan_for(cfg, cell.cell_id)
    engine = SimulatedEngine(cfg, cfg.batch_size)
    engine.start()
    wr = engine.run(plan)
    trace = engine.modeled_power()
    idle = engine.modeled_sampler().known_idle_power_w()
    row = window_energy(trace, int(wr.window_start_s * 1e9), int(wr.window_end_s * 1e9), idle)
    return cfg, wr, trace, idle, row


CELLS = {
    "sessions_prefix_cache": ["workload=sessions", "batch_size=16", "workload.duration_s=20",
                              "engine.simulated.enable_prefix_caching=true"],
    "offline": ["workload=offline", "batch_size=8"],
}


@pytest.fixture(scope="module", params=sorted(CELLS))
def sim(request, compose):
    cfg, wr, trace, idle, row = simulated_cell(compose, CELLS[request.param])
    att = attribute(wr.steps, trace, wr.window_start_s, wr.window_end_s, row["energy_j"], idle, RooflineSplit.of(cfg))
    return request.param, cfg, wr, trace, idle, row, att


def test_simulated_cell_conserves_the_window_energy(sim):
    _, _, wr, _, idle, row, att = sim
    window = row["energy_j"]
    assert wr.steps is not None and wr.steps.source == "simulated" and len(wr.steps) > 50
    assert window > 0 and idle > 0
    gross_requests = float(np.sum(att.prefill_j) + np.sum(att.decode_j))
    assert gross_requests + att.outside_steps_j == pytest.approx(window, rel=1e-9)
    assert float(att.step_energy_j.sum()) + att.outside_steps_j == pytest.approx(window, rel=1e-9)
    net_window = window - idle * (wr.window_end_s - wr.window_start_s)
    assert net_window == pytest.approx(row["net_energy_j"], rel=1e-6)
    net_requests = float(np.sum(att.net_prefill_j) + np.sum(att.net_decode_j))
    assert net_requests + att.net_outside_steps_j == pytest.approx(net_window, rel=1e-9)
    assert float(att.step_net_energy_j.sum()) + att.net_outside_steps_j == pytest.approx(net_window, rel=1e-9)
    # each step's energy is handed out entirely to its requests
    k = wr.steps.step_of_entry
    assert att.request_index.tolist() == sorted(set(wr.steps.request_index.tolist()))
    assert np.all(att.prefill_j >= 0) and np.all(att.decode_j >= 0)
    assert 0 < att.prefill_energy_share < 1
    assert k.size == wr.steps.request_index.size


def test_every_request_with_a_token_in_the_window_gets_energy(sim):
    _, _, wr, _, _, _, att = sim
    t0, t1 = wr.window_start_s, wr.window_end_s
    gross = dict(zip(att.request_index.tolist(), (att.prefill_j + att.decode_j).tolist()))
    in_window = [r for r in wr.records if r.token_times_s is not None
                 and np.any((r.token_times_s > t0) & (r.token_times_s <= t1))]
    assert len(in_window) >= 10
    for r in in_window:
        assert gross.get(r.index, 0.0) > 0, (r.index, r.status)
    # and a request whose tokens all lie outside the window gets none
    outside = [r for r in wr.records if r.token_times_s is not None and len(r.token_times_s)
               and (r.token_times_s[0] > t1 + 1.0 or r.token_times_s[-1] < t0 - 1.0)]
    for r in outside:
        assert gross.get(r.index, 0.0) == 0.0


def test_prefill_energy_only_where_the_prefill_step_is_in_the_window(sim):
    name, _, wr, _, _, _, att = sim
    steps, t0, t1 = wr.steps, wr.window_start_s, wr.window_end_s
    prefill = dict(zip(att.request_index.tolist(), att.prefill_j.tolist()))
    decode = dict(zip(att.request_index.tolist(), att.decode_j.tolist()))
    by_end = {float(e): k for k, e in enumerate(steps.end_s.tolist())}
    n_in, n_out = 0, 0
    for r in wr.records:
        if r.token_times_s is None or not len(r.token_times_s):
            continue
        k = by_end[float(r.token_times_s[0])]  # the step of its first token computed its prompt
        entry = {i: (p, d) for i, p, d in steps.requests_of(k)}[r.index]
        assert entry == (r.input_tokens - (r.cached_tokens or 0), 0)
        inside = min(steps.end_s[k], t1) > max(steps.start_s[k], t0)
        if inside:
            n_in += 1
            assert prefill[r.index] > 0
        else:
            n_out += 1
            assert prefill.get(r.index, 0.0) == 0.0
            if r.index in decode and r.token_times_s[-1] > t0 and r.token_times_s[0] < t0:
                assert decode[r.index] > 0  # prefilled before the window, decoding in it
    assert n_in >= 10 and n_out >= 1
    if name == "sessions_prefix_cache":  # later turns found their history in the cache
        assert sum(1 for r in wr.records if (r.cached_tokens or 0) > 0) > 5


def test_with_fine_power_samples_the_energy_outside_steps_is_the_idle_draw_between_them(compose):
    """The simulator draws idle power between steps: what no step holds is idle W x the window's
    time outside steps, up to the counter's linear interpolation at the window's two edges."""
    interval = 0.001
    cfg, wr, trace, idle, row = simulated_cell(compose, CELLS["sessions_prefix_cache"] + [
        f"engine.simulated.power_sample_interval_s={interval}"])
    att = attribute(wr.steps, trace, wr.window_start_s, wr.window_end_s, row["energy_j"], idle, RooflineSplit.of(cfg))
    t0, t1 = wr.window_start_s, wr.window_end_s
    inside = np.clip(wr.steps.end_s, t0, t1) - np.clip(wr.steps.start_s, t0, t1)
    gaps = (t1 - t0) - inside.sum()
    assert gaps > 0.5  # sessions leave the GPU idle at times
    edge = 2 * interval * cfg.gpu.tdp_w
    assert att.outside_steps_j == pytest.approx(idle * gaps, abs=edge)
    assert att.net_outside_steps_j == pytest.approx(0.0, abs=edge)
    # a modeled step's gross energy is its own energy x the part of it inside the window
    frac = np.divide(inside, wr.steps.end_s - wr.steps.start_s)
    assert np.allclose(att.step_energy_j, wr.steps.energy_j * frac)
    assert np.allclose(att.step_net_energy_j, att.step_energy_j - idle * inside)


# ---------------------------------------------------------------------------------------- (c)

@pytest.fixture(scope="module")
def h100_llama(compose):
    [cfg] = cell_configs([typed(compose(["model=llama2_7b", "gpu=h100", "engine=simulated"]))])
    return cfg


def constant_trace(p_w, t_end_s, dt=0.01):
    t = np.arange(0, t_end_s + 1e-9, dt)
    return trace_of(t, np.full(t.size, p_w), p_w * t)


def test_prefill_only_steps_are_all_prefill_decode_only_all_decode(h100_llama):
    split = RooflineSplit.of(h100_llama)
    share = split.prefill_share(np.array([1, 16, 512, 4096, 0, 0, 0]), np.array([0, 0, 0, 0, 1, 32, 256]))
    assert share.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    mixed = split.prefill_share(np.array([2000, 100, 1, 2000]), np.array([1, 8, 64, 256]))
    assert np.all((mixed > 0) & (mixed < 1))
    assert mixed[0] > 0.99  # compute-bound: the prefill's FLOPs are nearly the whole step
    assert mixed[2] < 0.05  # a prompt token in a memory-bound decode step: its FLOPs' small share


def test_prompt_tokens_share_the_prefill_part_decode_tokens_the_rest(h100_llama):
    split = RooflineSplit.of(h100_llama)
    rec = StepRecorder("engine")
    rec.add(0.10, 0.15, [(0, 300, 0), (1, 700, 0), (2, 0, 1), (3, 0, 1), (4, 0, 2)])
    steps = rec.timeline()
    att = attribute(steps, constant_trace(500.0, 1.0), 0.0, 1.0, 500.0, 100.0, split)
    i = {r: k for k, r in enumerate(att.request_index.tolist())}
    gross, share = att.step_energy_j[0], att.step_prefill_share[0]
    assert gross == pytest.approx(25.0) and share == pytest.approx(split.prefill_share(np.array([1000]),
                                                                                        np.array([4]))[0])
    assert att.prefill_j[i[0]] / att.prefill_j[i[1]] == pytest.approx(300 / 700)
    assert att.prefill_j[i[0]] + att.prefill_j[i[1]] == pytest.approx(share * gross)
    assert att.decode_j[i[0]] == 0 and att.decode_j[i[1]] == 0
    assert att.prefill_j[i[2]] == 0 and att.decode_j[i[2]] == pytest.approx(att.decode_j[i[3]])
    assert att.decode_j[i[4]] == pytest.approx(2 * att.decode_j[i[2]])
    assert att.decode_j.sum() == pytest.approx((1 - share) * gross)
    assert att.net_prefill_j[i[0]] / att.net_prefill_j[i[1]] == pytest.approx(300 / 700)


def test_a_request_deep_in_its_context_pays_for_reading_it(h100_llama):
    """Two requests decode in the same step, one 3,000 tokens into its context, one 10: the step's
    decode part goes by the bytes each makes it read (half the weights each, its own KV); and a
    prompt chunk in a step whose requests attend over much KV has a smaller prefill share."""
    split = RooflineSplit.of(h100_llama)
    m = split.model
    rec = StepRecorder("engine")
    rec.add(0.0, 0.1, [(0, 3000, 0), (1, 10, 0)])
    rec.add(0.1, 0.2, [(0, 0, 1), (1, 0, 1), (2, 64, 0)])
    steps = rec.timeline()
    assert steps.context_of_entry.tolist() == [0, 0, 3000, 10, 0]
    att = attribute(steps, constant_trace(400.0, 0.2), 0.0, 0.2, 80.0, None, split)
    i = {r: k for k, r in enumerate(att.request_index.tolist())}
    deep, fresh = (m.weight_bytes / 2 + m.kv_bytes_per_token * 3001), (m.weight_bytes / 2 + m.kv_bytes_per_token * 11)
    assert att.decode_j[i[0]] / att.decode_j[i[1]] == pytest.approx(deep / fresh)
    assert att.decode_j[i[0]] + att.decode_j[i[1]] == pytest.approx((1 - att.step_prefill_share[1]) * 40.0)
    assert att.step_prefill_share[1] == pytest.approx(split.prefill_share(np.array([64]), np.array([2]),
                                                                          np.array([3010]))[0])
    assert att.step_prefill_share[1] < split.prefill_share(np.array([64]), np.array([2]))[0]


def test_a_decode_token_riding_a_big_prefill_costs_far_less(h100_llama):
    """Two steps of roofline length under the same power: 2,000 prompt tokens plus one decode
    token, then that request's decode alone. The decode token's energy in the first is a small
    fraction of its energy in the second, though the first step is longer."""
    cfg = h100_llama
    split = RooflineSplit.of(cfg)
    mixed_s = roofline.step_seconds(cfg.model, cfg.quantization, cfg.gpu, 2001, 500)
    alone_s = roofline.step_seconds(cfg.model, cfg.quantization, cfg.gpu, 1, 501)
    assert mixed_s > 3 * alone_s
    rec = StepRecorder("engine")
    rec.add(0.1, 0.1 + mixed_s, [(0, 0, 1), (1, 2000, 0)])
    rec.add(0.1 + mixed_s, 0.1 + mixed_s + alone_s, [(0, 0, 1)])
    att = attribute(rec.timeline(), constant_trace(600.0, 1.0), 0.0, 1.0, 600.0, 70.0, split)
    i = {r: k for k, r in enumerate(att.request_index.tolist())}
    in_mixed = att.decode_j[i[0]] - 600.0 * alone_s  # request 0's decode J less its decode-only step
    assert att.step_energy_j[1] == pytest.approx(600.0 * alone_s)
    assert 0 < in_mixed < 0.05 * 600.0 * alone_s
    assert att.prefill_j[i[1]] > 0.99 * att.step_energy_j[0]


# ---------------------------------------------------------------------------------------- (d)

@pytest.mark.parametrize("counter_period", [None, 0.1])
def test_measured_steps_under_constant_power(h100_llama, counter_period):
    """No modeled energy: a step's energy comes from the trace. Constant power P, its counter
    rising at P (every sample, or every 100 ms held between updates); the window [0.5, 1.5]."""
    p, idle, t0, t1 = 300.0, 60.0, 0.5, 1.5
    t = np.arange(0, 2.0 + 1e-9, 0.01)
    if counter_period is None:
        counter = p * t
    else:
        counter = p * (np.floor(t / counter_period + 1e-9) * counter_period)
    trace = trace_of(t, np.full(t.size, p), counter)
    steps_written = [(0.20, 0.30), (0.45, 0.55), (0.55, 0.563), (0.563, 0.61), (0.9, 1.0), (1.47, 1.53),
                     (1.6, 1.7)]
    rec = StepRecorder("reconstructed")
    for k, (a, b) in enumerate(steps_written):
        rec.add(a, b, [(k, 100, 0), (k + 100, 0, 1)])
    steps = rec.timeline()
    window = p * (t1 - t0)
    row = window_energy(trace, int(t0 * 1e9), int(t1 * 1e9), idle)
    assert row["energy_j"] == pytest.approx(window)
    att = attribute(steps, trace, t0, t1, row["energy_j"], idle, RooflineSplit.of(h100_llama))
    inside = np.array([max(0.0, min(b, t1) - max(a, t0)) for a, b in steps_written])
    assert inside.tolist()[0] == 0 and inside.tolist()[-1] == 0
    assert np.allclose(att.step_energy_j, p * inside, rtol=0, atol=1e-9)
    assert np.allclose(att.step_net_energy_j, (p - idle) * inside, rtol=0, atol=1e-9)
    assert att.outside_steps_j == pytest.approx(p * (t1 - t0 - inside.sum()), abs=1e-9)
    assert att.net_outside_steps_j == pytest.approx((p - idle) * (t1 - t0 - inside.sum()), abs=1e-9)
    # the steps outside the window give their requests nothing
    gross = dict(zip(att.request_index.tolist(), (att.prefill_j + att.decode_j).tolist()))
    assert gross[0] == gross[100] == gross[6] == gross[106] == 0.0
    for k in range(1, 6):
        assert gross[k] + gross[k + 100] == pytest.approx(p * inside[k], abs=1e-9)
    assert float(np.sum(att.prefill_j) + np.sum(att.decode_j)) + att.outside_steps_j == pytest.approx(window)


def test_without_idle_power_net_values_are_unknown(h100_llama):
    rec = StepRecorder("engine")
    rec.add(0.2, 0.4, [(0, 10, 0)])
    att = attribute(rec.timeline(), constant_trace(200.0, 1.0), 0.0, 1.0, 200.0, None, RooflineSplit.of(h100_llama))
    assert att.net_outside_steps_j is None
    assert att.step_energy_j[0] == pytest.approx(40.0) and att.outside_steps_j == pytest.approx(160.0)
    assert att.prefill_energy_share == pytest.approx(1.0)
