"""Workload plans (offline batch schedules, prompts keyed by the cell, drain limits) and metric
arithmetic (cancelled requests, batch stability) against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.client.metrics import (
    RequestRecord,
    WindowRun,
    completion_shortfall,
    empty_window_failure,
    summarize,
    ttft_growing,
)
from orchestrator.client.workload import build_plan, draw_lengths
from orchestrator.config.groups import Arrival, LengthConfig, LengthDist, WorkloadConfig
from orchestrator.driver.grid import group_option


def _wl(name, **kw) -> WorkloadConfig:
    """The real workload option with ``key=value`` overrides applied through its schema."""
    return group_option("workload", name, tuple((k, str(v)) for k, v in kw.items()))


def test_open_loop_plan_rate_and_phases():
    plan = build_plan(_wl("chat_medium", duration_s=200.0), batch_size=8)
    meas = plan.measured
    assert sum(r.phase == "warmup" for r in plan.requests) == 20
    assert all(plan.measured_start_s <= r.arrival_s < plan.measured_start_s + 200 for r in meas)
    assert len(meas) / 200 == pytest.approx(20, rel=0.05)
    assert build_plan(_wl("chat_medium"), 8).requests == build_plan(_wl("chat_medium"), 8).requests
    assert build_plan(_wl("chat_medium"), 8, repeat=1).requests != build_plan(_wl("chat_medium"), 8).requests


def test_exact_count_poisson():
    plan = build_plan(_wl("chat_medium", duration_s=30.0, exact_count=True), batch_size=8)
    meas = plan.measured
    assert len(meas) == 600
    assert all(plan.measured_start_s <= r.arrival_s < plan.measured_start_s + 30 for r in meas)
    gaps = np.diff([r.arrival_s for r in meas])
    assert (gaps >= 0).all() and np.std(gaps) / np.mean(gaps) == pytest.approx(1.0, abs=0.15)  # still Poisson-like


def test_constant_and_gamma_arrivals():
    plan = build_plan(_wl("chat_medium", arrival="constant", rate_rps=4.0, duration_s=10.0, warmup_requests=0), 1)
    assert plan.arrival is Arrival.constant
    gaps = np.diff([r.arrival_s for r in plan.requests])
    assert np.allclose(gaps, 0.25) and len(plan.requests) == 40
    g = build_plan(_wl("chat_medium", arrival="gamma", gamma_shape=0.5, duration_s=500.0), 1)
    assert len(g.measured) / 500 == pytest.approx(20, rel=0.1)


def test_offline_plan_is_exact_batches():
    plan = build_plan(_wl("offline"), batch_size=4)
    assert plan.arrival is Arrival.offline and plan.offline
    assert len(plan.requests) == 4 * (1 + 4)
    assert [r.batch_index for r in plan.requests[:8]] == [0] * 4 + [1] * 4
    assert all(r.input_tokens == 128 and r.output_tokens == 128 for r in plan.requests)


def test_length_distributions_clip():
    rng = np.random.default_rng(0)
    x = draw_lengths(LengthConfig(dist=LengthDist.normal, mean_tokens=100, std_tokens=80, min_tokens=10, max_tokens=150),
                     5000, rng)
    assert x.min() >= 10 and x.max() <= 150
    y = draw_lengths(LengthConfig(dist=LengthDist.lognormal, mean_tokens=200, std_tokens=50, min_tokens=1,
                                  max_tokens=10_000), 20000, rng)
    assert y.mean() == pytest.approx(200, rel=0.03)


def _rec(i, arrival, first, end, n, phase="measured", chunked=False):
    times = np.linspace(first, end, n)
    if chunked:  # two tokens per chunk: pairs share a timestamp
        times = np.repeat(times[::2], 2)[:n]
    return RequestRecord(i, phase, arrival, arrival, first, end, 10, n, n, times)


def test_summary_hand_computed():
    recs = [_rec(0, 0.0, 0.5, 1.5, 11), _rec(1, 1.0, 1.2, 3.2, 11), _rec(2, 9.0, 9.1, 12.1, 4)]
    row = summarize(WindowRun(recs, 0.0, 10.0), offered_rate_rps=0.3, ignore_eos=True)
    assert row["ttft_p50_ms"] == pytest.approx(200.0)  # TTFTs 500, 200, 100 ms
    assert row["tpot_p50_ms"] == pytest.approx(200.0)  # (1.0/10, 2.0/10, 3.0/3) s -> 100, 200, 1000 ms
    assert row["itl_mean_ms"] == pytest.approx((10 * 100 + 10 * 200 + 3 * 1000) / 23)
    assert row["e2e_p50_ms"] == pytest.approx(2200.0)
    assert row["n_requests_completed_in_window"] == 2 and row["n_requests_drained"] == 1
    # tokens emitted inside [0, 10]: 11 + 11 + 1 (request 2's first token at 9.1)
    assert row["output_tokens_in_window"] == 23
    assert row["output_throughput_tok_s"] == pytest.approx(2.3)
    assert row["achieved_rate_rps"] == pytest.approx(0.3)
    assert row["output_tokens_per_request_mean"] == pytest.approx(26 / 3)
    assert not row["token_count_mismatch"]


def test_a_missing_first_token_time_does_not_blank_the_percentiles():
    recs = [_rec(i, 0.0, 0.1 * (i + 1), 2.0, 11) for i in range(5)]
    recs[2].first_token_s = float("nan")
    row = summarize(WindowRun(recs, 0.0, 10.0), None, True)
    # TTFTs 100, 200, (NaN), 400, 500 ms; TPOTs 190, 180, (NaN), 160, 150 ms
    assert row["ttft_p50_ms"] == pytest.approx(300.0) and row["tpot_p50_ms"] == pytest.approx(170.0)


def test_itl_counts_tokens_not_chunks():
    rec = _rec(0, 0.0, 1.0, 2.0, 10, chunked=True)
    row = summarize(WindowRun([rec], 0.0, 5.0), None, True)
    assert row["itl_p50_ms"] == 0.0  # half the gaps are inside a chunk
    assert row["output_tokens_in_window"] == 10


def test_token_count_mismatch_is_flagged():
    r = _rec(0, 0.0, 0.1, 0.2, 2)
    r.requested_output_tokens = 128  # the seed's "1.1 tokens per request" cannot pass silently
    assert summarize(WindowRun([r], 0.0, 1.0), None, ignore_eos=True)["token_count_mismatch"]


def test_saturation_flags():
    arrivals = np.arange(30.0)
    assert ttft_growing(arrivals, 0.05 + arrivals * 0.5)
    assert not ttft_growing(arrivals, np.full(30, 0.05))
    # 30 requests scheduled in the window but only 10 complete inside it -> saturated
    recs = [_rec(i, float(i), i + 0.1, i + 0.5 if i < 10 else 100.0, 5) for i in range(30)]
    assert summarize(WindowRun(recs, 0.0, 30.0), 1.0, True)["saturated"]


# ------------------------------------------------------------------ offline windows: BatchSchedule


def _drive(schedule, seconds_per_batch):
    """Run ``schedule`` the way an engine does; each batch takes ``seconds_per_batch[k]`` (the last
    value repeats). -> [(step() before the batch, its specs)]."""
    out, t = [], 100.0
    for k, specs in enumerate(schedule):
        out.append((schedule.step(), specs))
        dt = seconds_per_batch[min(k, len(seconds_per_batch) - 1)]
        schedule.ran(t, t + dt)
        t += dt
    return out


def test_schedule_runs_the_planned_batches_when_the_window_is_long_enough():
    plan = build_plan(_wl("offline", num_batches=3, warmup_batches=1, min_window_s=5.0), batch_size=2)
    ran = _drive(plan.schedule(), [2.0])
    assert [specs for _, specs in ran] == [plan.batch(b) for b in range(4)]  # 3 x 2 s >= 5 s: no more
    assert [s for _, specs in ran for s in specs] == plan.requests
    assert [step for step, _ in ran] == [("warmup", 0, 1), ("measured", 0, 3), ("measured", 1, 3), ("measured", 2, 3)]


def test_schedule_extends_until_min_window_and_estimates_the_total():
    plan = build_plan(_wl("offline", num_batches=2, warmup_batches=1, min_window_s=5.0), batch_size=3)
    sched = plan.schedule()
    ran = _drive(sched, [7.0, 1.0])  # a slow warm-up batch (not in the window), then 1 s per batch
    assert len(ran) == 1 + 5  # at least 2 measured, then more until the window reaches 5 s
    assert sched.window_s() == 5.0 and sched.window() == (107.0, 112.0)
    assert sched.measured_bounds() == [(107.0 + k, 108.0 + k) for k in range(5)]
    # before the first measured batch the plan's count; then ceil(5 s / mean batch time)
    assert [step for step, _ in ran] == [("warmup", 0, 1), ("measured", 0, 2)] + [("measured", k, 5) for k in range(1, 5)]
    specs = [s for _, batch in ran for s in batch]
    assert [s.batch_index for s in specs] == [b for b in range(6) for _ in range(3)]
    assert [s.index for s in specs] == list(range(18)) and all(s.phase == "measured" for s in specs[3:])


def test_schedule_stops_at_max_batches():
    plan = build_plan(_wl("offline", num_batches=2, warmup_batches=0, min_window_s=100.0, max_batches=3), 4)
    sched = plan.schedule()
    ran = _drive(sched, [1.0])
    assert len(ran) == 3 and sched.window_s() == 3.0 < plan.min_window_s
    assert [step for step, _ in ran] == [("measured", 0, 2), ("measured", 1, 3), ("measured", 2, 3)]
    # min_window_s=0: exactly num_batches, however short
    plan0 = build_plan(_wl("offline", num_batches=2, warmup_batches=1, min_window_s=0), 4)
    assert len(_drive(plan0.schedule(), [1e-6])) == 3


def test_batches_beyond_the_plan_are_deterministic_and_drawn_from_the_distribution():
    wl = _wl("offline", num_batches=2, warmup_batches=1, min_window_s=1.0, **{"input.dist": "normal",
             "input.std_tokens": 40, "input.min_tokens": 16, "input.max_tokens": 512})
    a, b = build_plan(wl, 8), build_plan(wl, 8)
    extra = a.batch(7)
    assert extra == b.batch(7) and extra != a.batch(8)
    assert [s.index for s in extra] == list(range(56, 64)) and {s.batch_index for s in extra} == {7}
    assert all(s.phase == "measured" and s.arrival_s == 0.0 and s.output_tokens == 128 for s in extra)
    assert len({s.input_tokens for s in extra}) > 1 and all(16 <= s.input_tokens <= 512 for s in extra)
    assert build_plan(wl, 8, repeat=1).batch(7) != extra  # another repeat draws other lengths
    # the planned batches are the same draws as the on-demand ones
    from orchestrator.client.workload import offline_batch
    assert a.batch(2) == offline_batch(wl, 8, a.seed, 2, "measured")


# ------------------------------------------------------------------ prompts keyed by the cell


def _cells(*overrides):
    from orchestrator.driver.grid import cells, config_of

    return [cells([config_of(["model=tiny", "gpu=t4", "engine=simulated", "sampler=none", *o])], {})[0]
            for o in overrides]


def _prompts(cell):
    from orchestrator.workloads import plan_for

    plan = plan_for(cell.config, cell.cell_id)
    return [tuple(plan.prompt_ids(s, cell.config.model.vocab_size)) for s in plan.requests]


@pytest.mark.parametrize("workload", ["offline", "chat_medium"])
def test_cells_never_share_a_prompt_and_a_cell_always_sends_the_same(workload):
    a, b, c = _cells([f"workload={workload}", "batch_size=2"], [f"workload={workload}", "batch_size=4"],
                     [f"workload={workload}", "batch_size=2", "repeat=1"])
    assert len({a.cell_id, b.cell_id, c.cell_id}) == 3
    pa, pb, pc = _prompts(a), _prompts(b), _prompts(c)
    assert len(set(pa)) == len(pa)  # every request of a cell its own prompt
    assert not set(pa) & set(pb) and not set(pa) & set(pc) and not set(pb) & set(pc)
    assert _prompts(_cells([f"workload={workload}", "batch_size=2"])[0]) == pa  # same cell, same prompts
    assert [len(p) for p in pa] == [s.input_tokens for s in build_plan(a.config.workload, 2).requests]


def test_plan_for_keeps_the_workload_and_sets_the_drain_limit():
    from orchestrator.client.workload import drain_limit_s
    from orchestrator.workloads import plan_for

    (cell,) = _cells(["workload=chat_high", "batch_size=4", "workload.drain_timeout_s=3"])
    plan = plan_for(cell.config, cell.cell_id)
    base = build_plan(cell.config.workload, 4)
    assert plan.requests == base.requests and plan.seed == base.seed  # the cell id only keys prompts
    assert plan.prompt_key != base.prompt_key and plan.drain_timeout_s == 3.0 == drain_limit_s(cell.config)
    assert plan.min_window_s == 0.0 and plan.max_batches == 0  # offline-only settings
    (off,) = _cells(["workload=offline", "workload.min_window_s=7", "workload.max_batches=9"])
    p = plan_for(off.config, off.cell_id)
    assert (p.min_window_s, p.max_batches) == (7.0, 9)


# ------------------------------------------------------------------ drain limit


def test_drain_limit_explicit_wins_else_three_roofline_requests_at_least_10_s():
    from orchestrator.client.workload import DRAIN_FLOOR_S, drain_limit_s
    from orchestrator.driver.grid import config_of
    from orchestrator.perf import roofline

    def cfg(gpu, *extra):
        return config_of([f"gpu={gpu}", "model=llama2_7b", "quantization=none", "workload=chat_high",
                          "engine=simulated", "sampler=none", "batch_size=1", *extra])

    assert drain_limit_s(cfg("t4", "workload.drain_timeout_s=2.5")) == 2.5
    assert drain_limit_s(cfg("t4", "workload.drain_timeout_s=0")) == 0.0
    fast, slow = drain_limit_s(cfg("h200")), drain_limit_s(cfg("t4"))
    assert fast == DRAIN_FLOOR_S == 10.0  # an H200 runs a 256 -> 128 request in well under 10/3 s
    c = cfg("t4")
    one = roofline.request_seconds(c.model, c.quantization, c.gpu, 256, 128, 1, 0.5)
    assert slow == pytest.approx(3 * one) and slow > 2 * fast  # a T4 at half its peaks: ~11 s a request
    # by hand: 128 decode steps reading the fp16 weights at half the T4's 320 GB/s, dominate
    w = roofline.weight_bytes(c.model, c.quantization)
    assert slow == pytest.approx(3 * 128 * w / (0.5 * 320e9), rel=0.05)
    # bigger batches: longer requests, longer drains
    assert drain_limit_s(cfg("t4", "batch_size=256")) > slow
    # closed loop: the batch is what the clients keep in flight
    closed = ["workload.arrival=closed", "workload.concurrency=1", "batch_size=256"]
    assert drain_limit_s(cfg("t4", *closed)) == pytest.approx(slow)


# ------------------------------------------------------------------ cancelled requests, batch stability


def test_cancelled_requests_count_their_tokens_in_the_window_but_no_latency():
    ok = _rec(0, 0.0, 0.5, 1.5, 11)
    err = RequestRecord(1, "measured", 1.0, 1.0, float("nan"), 1.2, 10, 0, 11, None, status="error", error="HTTP 500")
    # cancelled at 12 s (window [0, 10]): 6 tokens at 8.0, 8.5, ..., 10.5 -> 5 inside the window
    late = RequestRecord(2, "measured", 7.0, 7.0, 8.0, 12.0, 10, 6, 11, np.arange(8.0, 11.0, 0.5),
                         status="cancelled", error="cancelled")
    never = RequestRecord(3, "measured", 9.0, 9.0, float("nan"), 12.0, 10, 0, 11, None, status="cancelled")
    run = WindowRun([ok, err, late, never], 0.0, 10.0, drain_timeout_s=2.0, drain_s=2.0)
    row = summarize(run, offered_rate_rps=None, ignore_eos=True)
    assert row["n_requests_cancelled"] == 2 and row["n_requests_failed"] == 1 and row["n_requests_ok"] == 1
    assert row["output_tokens_in_window"] == 11 + 5
    assert row["saturated"]  # a request unfinished at the drain limit
    assert (row["drain_timeout_s"], row["drain_s"]) == (2.0, 2.0)
    assert row["ttft_p50_ms"] == pytest.approx(500.0) and row["ttft_p99_ms"] == pytest.approx(500.0)
    assert row["e2e_p50_ms"] == pytest.approx(1500.0) and row["n_requests_completed_in_window"] == 1
    assert row["mean_running_batch"] == pytest.approx((1.0 + 2.0) / 10.0)  # decoding [0.5, 1.5] and [8, 10]
    assert not row["token_count_mismatch"]  # a cancelled request is short by design
    clean = summarize(WindowRun([ok], 0.0, 10.0, drain_timeout_s=2.0, drain_s=0.0), None, True)
    assert clean["n_requests_cancelled"] == 0 and not clean["saturated"] and clean["n_requests_failed"] == 0


def test_batch_output_tok_s_cv_from_the_batch_bounds():
    def batch(b, n_tokens, phase="measured", status="ok"):
        return [RequestRecord(2 * b + i, phase, 0.0, 0.0, 0.1, 0.2, 10, n_tokens, n_tokens, status=status,
                              batch_index=b) for i in range(2)]

    recs = batch(0, 10, "warmup") + batch(1, 10) + batch(2, 10) + batch(3, 10)
    bounds = [(0.0, 1.0), (1.0, 3.0), (3.0, 4.0)]  # 20 tokens in 1 s, 2 s, 1 s -> 20, 10, 20 tok/s
    row = summarize(WindowRun(recs, 0.0, 4.0, batch_bounds_s=bounds), None, True)
    assert row["n_batches_measured"] == 3
    assert row["batch_output_tok_s_cv"] == pytest.approx(np.std([20, 10, 20], ddof=1) / np.mean([20, 10, 20]))
    assert row["batch_output_tok_s_cv"] == pytest.approx(0.6 / np.sqrt(3))
    even = summarize(WindowRun(recs, 0.0, 3.0, batch_bounds_s=[(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]), None, True)
    assert even["batch_output_tok_s_cv"] == 0.0
    one = summarize(WindowRun(recs[:4], 0.0, 1.0, batch_bounds_s=[(0.0, 1.0)]), None, True)
    assert one["n_batches_measured"] == 1 and np.isnan(one["batch_output_tok_s_cv"])
    online = summarize(WindowRun(recs, 0.0, 4.0), None, True)
    assert online["n_batches_measured"] is None and np.isnan(online["batch_output_tok_s_cv"])
    # a batch whose requests all failed: 0 tok/s in its own slot, the others keep their bounds
    failed = batch(0, 10, "warmup") + batch(1, 10) + batch(2, 10, status="error") + batch(3, 10)
    row = summarize(WindowRun(failed, 0.0, 4.0, batch_bounds_s=bounds), None, True)
    assert row["batch_output_tok_s_cv"] == pytest.approx(np.std([20, 0, 20], ddof=1) / np.mean([20, 0, 20]))


def test_a_server_keeping_up_is_not_flagged_by_poisson_chance():
    """Poisson arrivals at 4 req/s, 1.2 s per request, 10 s windows: completions in the window
    differ from arrivals in it by the edge strips' chance. Without the margin ~25% of such windows
    were flagged saturated; with it at most a few in 200. A real shortfall still is."""
    rng = np.random.default_rng(7)
    flagged = 0
    for _ in range(200):
        arrivals = np.sort(rng.uniform(-5.0, 10.0, rng.poisson(4 * 15.0)))
        recs = [_rec(i, a, a + 0.05, a + 1.2, 20) for i, a in enumerate(arrivals)]
        flagged += summarize(WindowRun(recs, 0.0, 10.0), 4.0, True)["saturated"]
    assert flagged <= 4
    assert completion_shortfall(25, 40, 10.0, 1.2) and not completion_shortfall(36, 40, 10.0, 1.2)


def _window_rec(i, phase, status, error=""):
    return RequestRecord(index=i, phase=phase, arrival_s=0.0, send_s=0.0, first_token_s=float("nan"), end_s=1.0,
                         input_tokens=8, output_tokens=0, requested_output_tokens=8, status=status, error=error)


def test_a_window_without_an_ok_request_is_a_failure_with_its_counts():
    records = [_window_rec(0, "warmup", "ok"), _window_rec(1, "measured", "cancelled"), _window_rec(2, "measured", "error", "HTTP 500\nmore"),
               _window_rec(3, "measured", "cancelled")]
    status, why = empty_window_failure(records)
    assert status == "engine_error"
    assert why == ("no measured request completed ok: 2 of 3 cancelled at the drain limit (workload.drain_timeout_s), "
                   "1 failed (first error: HTTP 500)")
    assert empty_window_failure(records + [_window_rec(4, "measured", "ok")]) is None  # one ok: data, not a failure
    assert empty_window_failure([_window_rec(0, "warmup", "error")]) is None  # nothing measured: judged elsewhere


def test_the_clients_own_lateness_is_measured_and_flagged():
    """Send lag = send - scheduled arrival, over the measured requests sent; a p99 over 10 ms flags
    the cell ``client_lagging`` (its TTFT then holds the client's lateness); closed loop: no schedule."""
    def late(i, lag_ms):
        r = _rec(i, float(i), i + 0.5, i + 1.0, 5)
        r.send_s = r.arrival_s + lag_ms / 1e3
        return r

    on_time = [late(i, 1.0) for i in range(9)] + [late(9, 3.0)]
    row = summarize(WindowRun(on_time, 0.0, 10.0), offered_rate_rps=1.0, ignore_eos=True)
    assert row["send_lag_p50_ms"] == pytest.approx(1.0) and row["send_lag_max_ms"] == pytest.approx(3.0)
    assert not row["client_lagging"]
    lagging = on_time[:8] + [late(8, 40.0), late(9, 60.0)]
    row = summarize(WindowRun(lagging, 0.0, 10.0), offered_rate_rps=1.0, ignore_eos=True)
    assert row["send_lag_p99_ms"] == pytest.approx(np.percentile([1.0] * 8 + [40.0, 60.0], 99))
    assert row["client_lagging"] and row["send_lag_max_ms"] == pytest.approx(60.0)
    never_sent = lagging + [late(10, 0.0)]
    never_sent[-1].send_s = float("nan")  # cancelled before its send: no lag
    assert summarize(WindowRun(never_sent, 0.0, 10.0), 1.0, True)["send_lag_max_ms"] == pytest.approx(60.0)
    closed = summarize(WindowRun(lagging, 0.0, 10.0), offered_rate_rps=None, ignore_eos=True)
    assert np.isnan(closed["send_lag_p99_ms"]) and not closed["client_lagging"]
