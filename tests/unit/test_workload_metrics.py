"""Workload plans and metric arithmetic against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.config.groups import Arrival, LengthConfig, LengthDist, WorkloadConfig
from orchestrator.grid import group_option
from orchestrator.metrics import RequestRecord, WindowRun, summarize, ttft_growing
from orchestrator.workload import build_plan, draw_lengths


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
