"""What a window counts (``client.metrics.summarize``, ``completion_shortfall``,
``worker.tables.per_unit_energy``): warm-up is never served, a window served only by warm-up is
saturated, the shortfall rule tells a server at 80% of the offered rate from one keeping up
under Poisson chance, a sessions plan offers what was scheduled, and energy per request and per
prompt token are the window's energy over the right counts."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.client.metrics import RequestRecord, WindowRun, completion_shortfall, summarize
from orchestrator.store.schema import (
    ENERGY_J,
    ENERGY_PER_1K_OUTPUT_TOKENS_J,
    ENERGY_PER_1K_PROMPT_TOKENS_J,
    ENERGY_PER_REQUEST_J,
    N_REQUESTS_COMPLETED_IN_WINDOW,
    NET_ENERGY_J,
    NET_ENERGY_PER_1K_OUTPUT_TOKENS_J,
    NET_ENERGY_PER_REQUEST_J,
    OFFERED_RATE_RPS,
    OUTPUT_TOKENS_IN_WINDOW,
    OUTPUT_TOKENS_PER_REQUEST_MEAN,
    PROMPT_TOKENS_IN_WINDOW,
    REQUEST_THROUGHPUT_RPS,
    SATURATED,
)
from orchestrator.worker.tables import per_unit_energy


def rec(i, arrival, end, phase="measured", status="ok", n_out=10, n_in=100, ttft=0.1, session=-1, turn=0):
    first = arrival + ttft
    times = np.linspace(first, end, n_out)
    return RequestRecord(index=i, phase=phase, arrival_s=arrival, send_s=arrival, first_token_s=first, end_s=end,
                         input_tokens=n_in, output_tokens=n_out, requested_output_tokens=n_out,
                         token_times_s=times, status=status, session=session, turn=turn)


def test_warmup_requests_completing_in_the_window_are_not_served():
    warm = [rec(i, -1.0 + 0.1 * i, 2.0 + i, phase="warmup") for i in range(3)]  # end at 2, 3, 4: inside [0, 10]
    measured = [rec(3, 1.0, 2.5), rec(4, 2.0, 3.5), rec(5, 9.5, 11.0)]  # the last ends after the window
    row = summarize(WindowRun(warm + measured, 0.0, 10.0), 0.3, True)
    assert row[N_REQUESTS_COMPLETED_IN_WINDOW] == 2
    assert row[REQUEST_THROUGHPUT_RPS] == pytest.approx(2 / 10)
    # their tokens are the GPU's work in the window all the same
    assert row[OUTPUT_TOKENS_IN_WINDOW] == sum(
        int(np.count_nonzero((r.token_times_s >= 0.0) & (r.token_times_s <= 10.0))) for r in warm + measured)
    assert row[OUTPUT_TOKENS_IN_WINDOW] > 2 * 10 + 3  # more than the measured requests' own


def test_a_window_served_only_by_warmup_is_saturated():
    warm = [rec(i, -2.0 + 0.1 * i, 1.0 + i, phase="warmup") for i in range(10)]  # end at 1..10 s: in the window
    # ten measured arrivals in the window, none finished inside it (drained ok after it, TTFT flat)
    stuck = [rec(10 + i, 0.5 + i, 30.0 + i, ttft=0.2) for i in range(10)]
    row = summarize(WindowRun(warm + stuck, 0.0, 10.0), 1.0, True)
    assert row[N_REQUESTS_COMPLETED_IN_WINDOW] == 0
    assert row["n_requests_cancelled"] == 0 and row["scheduled_rate_rps"] == pytest.approx(1.0)
    assert row[SATURATED] is True
    assert completion_shortfall(0, 10, 10.0, 0.0)
    # nothing scheduled in the window: nothing to fall short of
    assert not completion_shortfall(0, 0, 10.0, 0.0)


def e2e_rule(completed_e2e: np.ndarray, window_s: float) -> float:
    """The edge strip ``summarize`` uses: the completed requests' median E2E, at most a quarter of
    the window."""
    return min(float(np.median(completed_e2e)), window_s / 4) if completed_e2e.size else 0.0


def poisson_window(rng, rate, window_s, latency, served=1.0):
    """One window of Poisson arrivals at ``rate`` (measured from 0) -> (measured completions in the
    window, arrivals scheduled in it, the E2E edge strip). Each request takes its latency (uniform
    in ``latency``); a server at ``served`` < 1 of the offered rate leaves the other requests
    unfinished in the window."""
    n = rng.poisson(rate * window_s)
    arrivals = np.sort(rng.uniform(0.0, window_s, n))
    ends = arrivals + rng.uniform(*latency, n)
    ends[rng.random(n) >= served] = np.inf
    done = ends <= window_s
    return int(done.sum()), n, e2e_rule((ends - arrivals)[done], window_s)


# (req/s, window s, latency s): the two documented cases and one between them
KEEPING_UP = [(4.0, 10.0, (1.2, 1.2)), (4.0, 10.0, (0.6, 1.8)), (20.0, 60.0, (3.0, 3.0)), (20.0, 60.0, (1.0, 5.0)),
              (10.0, 30.0, (0.5, 1.5))]


@pytest.mark.parametrize("rate, window_s, latency", KEEPING_UP)
def test_the_shortfall_rule_does_not_flag_a_server_keeping_up_by_poisson_chance(rate, window_s, latency):
    rng = np.random.default_rng(2024)
    n_windows = 400
    flagged = sum(completion_shortfall(c, n, window_s, e)
                  for c, n, e in (poisson_window(rng, rate, window_s, latency) for _ in range(n_windows)))
    assert flagged / n_windows < 0.02


@pytest.mark.parametrize("rate, window_s, latency", [(20.0, 60.0, (3.0, 3.0)), (20.0, 60.0, (1.0, 5.0)),
                                                     (10.0, 30.0, (0.5, 1.5))])
def test_the_shortfall_rule_flags_a_server_at_80_percent_of_the_offered_rate(rate, window_s, latency):
    rng = np.random.default_rng(2024)
    n_windows = 400
    flagged = sum(completion_shortfall(c, n, window_s, e)
                  for c, n, e in (poisson_window(rng, rate, window_s, latency, served=0.8) for _ in range(n_windows)))
    assert flagged / n_windows > 0.95


def fifo_ends(arrivals, capacity_rps, latency_s):
    """End times of a server that serves FIFO one request at a time at ``capacity_rps`` (a queue
    that grows while it is under the offered rate), each taking ``latency_s`` after its turn."""
    s, k = 1.0 / capacity_rps, np.arange(len(arrivals))
    # d_k = max(a_k, d_{k-1}) + s  ==  (k + 1) s + max_{j <= k} (a_j - j s)
    return (k + 1) * s + np.maximum.accumulate(arrivals - k * s) - s + latency_s


@pytest.mark.parametrize("rate, window_s", [(10.0, 30.0), (20.0, 30.0)])
def test_summarize_flags_a_queue_at_80_percent_and_not_a_server_keeping_up(rate, window_s):
    """On records, as cells are judged: a server whose queue grows at 80% of the offered rate (its
    TTFT holds the queueing) is flagged saturated in every window, one keeping up in almost none."""
    rng = np.random.default_rng(11)
    n_windows = 100
    flagged_ok = flagged_slow = 0
    for _ in range(n_windows):
        arrivals = np.sort(rng.uniform(0.0, window_s, rng.poisson(rate * window_s)))
        keeping_up = [rec(i, a, a + 1.0, ttft=0.05) for i, a in enumerate(arrivals)]
        flagged_ok += summarize(WindowRun(keeping_up, 0.0, window_s), rate, True)[SATURATED]
        ends = fifo_ends(arrivals, 0.8 * rate, 1.0)
        slow = [rec(i, a, e, ttft=e - a - 0.95) for i, (a, e) in enumerate(zip(arrivals, ends))]
        flagged_slow += summarize(WindowRun(slow, 0.0, window_s), rate, True)[SATURATED]
    assert flagged_ok / n_windows < 0.02
    assert flagged_slow / n_windows > 0.95


def test_a_sessions_plan_offers_what_was_scheduled_in_its_window():
    # later turns have no schedule of their own (the plan's offered rate is NaN): each is scheduled
    # when its previous answer comes; the window offers what was scheduled in it
    recs = [rec(0, -1.0, 0.5, phase="warmup", session=0), rec(1, 0.0, 1.0, session=1),
            rec(2, 3.0, 4.0, session=1, turn=1), rec(3, 2.0, 3.0, session=2), rec(4, 6.0, 7.0, session=2, turn=1),
            rec(5, 8.0, 9.0, session=1, turn=2), rec(6, 9.5, 12.0, session=3), rec(7, 11.0, 12.0, session=4)]
    row = summarize(WindowRun(recs, 0.0, 10.0), float("nan"), True)
    assert row["scheduled_rate_rps"] == pytest.approx(6 / 10)  # measured arrivals in [0, 10]
    assert row[OFFERED_RATE_RPS] == row["scheduled_rate_rps"]
    assert row[N_REQUESTS_COMPLETED_IN_WINDOW] == 5


def test_energy_per_request_and_per_prompt_token():
    row = {ENERGY_J: 1000.0, NET_ENERGY_J: 600.0, OUTPUT_TOKENS_IN_WINDOW: 5000,
           OUTPUT_TOKENS_PER_REQUEST_MEAN: 125.0, PROMPT_TOKENS_IN_WINDOW: 20000}
    per_unit_energy(row)
    assert row[ENERGY_PER_REQUEST_J] == pytest.approx(1000.0 / (5000 / 125.0))  # 25 J: 40 requests' worth
    assert row[NET_ENERGY_PER_REQUEST_J] == pytest.approx(600.0 / 40)
    assert row[ENERGY_PER_1K_OUTPUT_TOKENS_J] == pytest.approx(1000.0 / 5000 * 1000)
    assert row[NET_ENERGY_PER_1K_OUTPUT_TOKENS_J] == pytest.approx(600.0 / 5000 * 1000)
    assert row[ENERGY_PER_1K_PROMPT_TOKENS_J] == pytest.approx(1000.0 / 20000 * 1000)
    empty = {ENERGY_J: 1000.0, NET_ENERGY_J: 600.0, OUTPUT_TOKENS_IN_WINDOW: 0,
             OUTPUT_TOKENS_PER_REQUEST_MEAN: float("nan"), PROMPT_TOKENS_IN_WINDOW: 0}
    per_unit_energy(empty)
    assert empty[ENERGY_PER_REQUEST_J] is None and empty[ENERGY_PER_1K_OUTPUT_TOKENS_J] is None
    assert empty[ENERGY_PER_1K_PROMPT_TOKENS_J] is None


def test_energy_per_request_from_a_summarized_window():
    """The columns ``per_unit_energy`` reads, as ``summarize`` gives them: prompt tokens of the
    requests whose first token came in the window, output tokens emitted in it."""
    recs = [rec(0, -2.0, 0.5, phase="warmup", n_out=10, n_in=50),   # first token at -1.9: its prompt is not counted
            rec(1, 1.0, 2.0, n_out=20, n_in=100), rec(2, 3.0, 4.0, n_out=40, n_in=300),
            rec(3, 9.0, 12.0, n_out=30, n_in=200)]                  # first token at 9.1: counted
    row = summarize(WindowRun(recs, 0.0, 10.0), 0.3, True)
    assert row[PROMPT_TOKENS_IN_WINDOW] == 600
    in_window = row[OUTPUT_TOKENS_IN_WINDOW]
    assert in_window == sum(int(np.count_nonzero((r.token_times_s >= 0) & (r.token_times_s <= 10))) for r in recs)
    row[ENERGY_J], row[NET_ENERGY_J] = 900.0, 300.0
    per_unit_energy(row)
    assert row[OUTPUT_TOKENS_PER_REQUEST_MEAN] == pytest.approx(30.0)
    assert row[ENERGY_PER_REQUEST_J] == pytest.approx(900.0 / (in_window / 30.0))
    assert row[ENERGY_PER_1K_PROMPT_TOKENS_J] == pytest.approx(900.0 / 600 * 1000)
