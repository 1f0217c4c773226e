"""``client.steps.reconstruct_steps``: the steps behind per-token arrival times, checked against a
KNOWN step schedule. The generator writes steps 8-12 ms long back to back; every token arrives at
its step's end plus a jitter under 0.5 ms; requests join at random steps with random prompt
lengths and cached tokens (their first token is their prefill); some get a 2-token chunk in one
step; an idle gap of 200 ms splits the run in two busy stretches. The reconstruction must find
exactly the written steps: the same number, the same requests in each with the same prefill and
decode tokens, ends within 1 ms; back-to-back steps start at the previous end, the first step
after the idle gap at its end less the busy step length. Records without token times give None;
cancelled records count, error records do not."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest

from orchestrator.client.metrics import RequestRecord
from orchestrator.client.steps import STEP_JOIN_S, reconstruct_steps

JITTER_S = 0.0005
IDLE_GAP_S = 0.200


@dataclass
class Schedule:
    """What the generator wrote: steps (start, end, {request: (prefill, decode)}) and records."""

    start: List[float] = field(default_factory=list)
    end: List[float] = field(default_factory=list)
    entries: List[Dict[int, Tuple[int, int]]] = field(default_factory=list)
    records: List[RequestRecord] = field(default_factory=list)
    first_after_gap: int = -1
    chunked: int = 0  # requests given a 2-token chunk


def make_schedule(seed: int, admit_steps: int = 60, p_join: float = 0.3, cancelled: int = 1) -> Schedule:
    rng = np.random.default_rng(seed)
    sch = Schedule()
    times: Dict[int, List[float]] = {}
    prompt: Dict[int, Tuple[int, Optional[int]]] = {}
    n_next = [0]

    def new_request() -> int:
        i = n_next[0]
        n_next[0] += 1
        n_in = int(rng.integers(16, 2048))
        kind = rng.random()
        if kind < 0.3:
            cached: Optional[int] = None  # the server did not say
        elif kind < 0.4:
            cached = n_in  # a whole prompt from the cache: its last token is still computed
        else:
            cached = int(rng.integers(0, n_in + 1)) // 16 * 16
        prompt[i], times[i] = (n_in, cached), []
        return i

    t = 1.0
    for stretch in range(2):
        if stretch == 1:
            t = sch.end[-1] + IDLE_GAP_S
            sch.first_after_gap = len(sch.end)
        active: Dict[int, int] = {}  # request -> tokens still to emit
        k = 0
        while True:
            admitting = k < admit_steps
            joining: List[int] = []
            if admitting and (not active or rng.random() < p_join):
                joining = [new_request() for _ in range(int(rng.integers(1, 3)))]
            if not active and not joining:
                break
            length = float(rng.uniform(0.008, 0.012))
            start, end = t, t + length
            step: Dict[int, Tuple[int, int]] = {}
            for r in list(active):
                n = 2 if active[r] >= 2 and rng.random() < 0.08 else 1
                sch.chunked += n == 2
                step[r] = (0, n)
                times[r] += [end + float(rng.uniform(0, JITTER_S))] * n  # one chunk: one arrival time
                active[r] -= n
                if active[r] == 0:
                    del active[r]
            for r in joining:
                n_in, cached = prompt[r]
                step[r] = (max(1, n_in - (cached or 0)), 0)
                times[r].append(end + float(rng.uniform(0, JITTER_S)))
                n_out = int(rng.integers(2, 30))
                active[r] = n_out - 1
            sch.start.append(start)
            sch.end.append(end)
            sch.entries.append(step)
            t, k = end, k + 1
    for i, tt in times.items():
        n_in, cached = prompt[i]
        sch.records.append(RequestRecord(
            index=i, phase="measured", arrival_s=tt[0] - 0.05, send_s=tt[0] - 0.05, first_token_s=tt[0],
            end_s=tt[-1], input_tokens=n_in, output_tokens=len(tt), requested_output_tokens=len(tt),
            token_times_s=np.asarray(tt), cached_tokens=cached))
    for r in sch.records[3:3 + cancelled]:  # unfinished at the drain limit: what it received still counts
        r.status, r.error = "cancelled", "cancelled"
    order = rng.permutation(len(sch.records))  # the reconstruction does not rely on the records' order
    sch.records = [sch.records[j] for j in order]
    return sch


def steps_as_dicts(tl) -> List[Dict[int, Tuple[int, int]]]:
    return [{r: (p, d) for r, p, d in tl.requests_of(k)} for k in range(len(tl))]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_reconstruction_finds_exactly_the_written_steps(seed):
    sch = make_schedule(seed)
    assert sch.chunked > 0 and 0 < sch.first_after_gap < len(sch.end)  # the schedule has what is tested
    assert any(len(e) > 3 for e in sch.entries)
    tl = reconstruct_steps(sch.records)
    assert tl is not None and tl.source == "reconstructed" and tl.energy_j is None
    assert len(tl) == len(sch.end)
    assert steps_as_dicts(tl) == sch.entries
    assert np.max(np.abs(tl.end_s - np.asarray(sch.end))) < 0.001
    assert np.all(tl.end_s >= np.asarray(sch.end))  # a step ends at its last token's arrival
    # per-step totals follow
    assert tl.prefill_tokens.tolist() == [sum(p for p, _ in e.values()) for e in sch.entries]
    assert tl.decode_tokens.tolist() == [sum(d for _, d in e.values()) for e in sch.entries]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_step_starts_back_to_back_and_after_the_idle_gap(seed):
    sch = make_schedule(seed)
    tl = reconstruct_steps(sch.records)
    g = sch.first_after_gap
    busy = float(np.median(np.asarray(sch.end) - np.asarray(sch.start)))
    # back to back: each step starts where the previous one ended
    for k in range(1, len(tl)):
        if k != g:
            assert tl.start_s[k] == tl.end_s[k - 1]
    # after the idle gap: its end less the busy step length, not the previous end
    assert tl.start_s[g] - tl.end_s[g - 1] > IDLE_GAP_S - 0.02
    assert tl.start_s[g] == pytest.approx(tl.end_s[g] - busy, abs=0.001)
    assert tl.start_s[g] == pytest.approx(sch.start[g], abs=0.005)
    # the first step of all has no previous one: the same rule
    assert tl.start_s[0] == pytest.approx(tl.end_s[0] - busy, abs=0.001)
    assert np.all(tl.end_s >= tl.start_s)


def test_prefill_is_the_uncached_prompt_at_least_one_token():
    sch = make_schedule(5)
    tl = reconstruct_steps(sch.records)
    by_index = {r.index: r for r in sch.records}
    first_step = {}
    for k in range(len(tl)):
        for r, p, _ in tl.requests_of(k):
            if p:
                assert r not in first_step  # one prefill per request
                first_step[r] = k
                rec = by_index[r]
                assert p == max(1, rec.input_tokens - (rec.cached_tokens or 0))
                # the step of its first token: the step's last arrival is at most the jitter later
                assert 0 <= tl.end_s[k] - rec.token_times_s[0] < JITTER_S
    assert set(first_step) == set(by_index)
    assert any(r.cached_tokens == r.input_tokens for r in sch.records)  # whole prompt cached: 1 token
    assert any(r.cached_tokens is None for r in sch.records)
    # every token is in exactly one step: one prefill-carrying first token plus the decode tokens
    dec = {}
    for k in range(len(tl)):
        for r, _, d in tl.requests_of(k):
            dec[r] = dec.get(r, 0) + d
    assert all(dec[r.index] + 1 == r.output_tokens for r in sch.records)


def test_records_without_token_times_give_none():
    sch = make_schedule(0)
    for r in sch.records:
        r.token_times_s = None
    assert reconstruct_steps(sch.records) is None
    assert reconstruct_steps([]) is None
    empty = make_schedule(0)
    for r in empty.records:
        r.token_times_s = np.zeros(0)
    assert reconstruct_steps(empty.records) is None


def test_records_without_token_times_are_left_out_of_the_others():
    sch = make_schedule(1)
    gone = sch.records[0]
    full = reconstruct_steps(sch.records)
    gone.token_times_s = None
    tl = reconstruct_steps(sch.records)
    assert all(gone.index not in {r for r, _, _ in tl.requests_of(k)} for k in range(len(tl)))
    assert int(tl.request_prefill.sum()) == int(full.request_prefill.sum()) - max(
        1, gone.input_tokens - (gone.cached_tokens or 0))


def test_cancelled_records_count_error_records_do_not():
    sch = make_schedule(2, cancelled=3)
    cancelled = [r for r in sch.records if r.status == "cancelled"]
    assert len(cancelled) == 3
    # an error record whose tokens sit on written steps and in the idle gap
    g = sch.first_after_gap
    bad_times = np.array([sch.end[5] + 0.0001, sch.end[6] + 0.0001, sch.end[g - 1] + IDLE_GAP_S / 2])
    bad = RequestRecord(index=999, phase="measured", arrival_s=0.0, send_s=0.0, first_token_s=bad_times[0],
                        end_s=bad_times[-1], input_tokens=50, output_tokens=3, requested_output_tokens=3,
                        token_times_s=bad_times, status="error", error="stream error")
    tl = reconstruct_steps(sch.records + [bad])
    assert len(tl) == len(sch.end)  # the error's lone token in the gap made no step
    assert steps_as_dicts(tl) == sch.entries  # cancelled requests in, the error request nowhere
    seen = set(tl.request_index.tolist())
    assert {r.index for r in cancelled} <= seen and 999 not in seen


def test_events_within_the_join_window_are_one_step():
    """Two requests whose tokens arrive 1.9 ms apart are one step; 2.1 ms apart, two."""
    def rec(i, times):
        return RequestRecord(index=i, phase="measured", arrival_s=0.0, send_s=0.0, first_token_s=times[0],
                             end_s=times[-1], input_tokens=10, output_tokens=len(times),
                             requested_output_tokens=len(times), token_times_s=np.asarray(times), cached_tokens=0)
    assert STEP_JOIN_S == 0.002
    one = reconstruct_steps([rec(0, [1.0, 1.010]), rec(1, [1.0019, 1.0119])])
    assert len(one) == 2 and one.requests_of(0) == [(0, 10, 0), (1, 10, 0)]
    two = reconstruct_steps([rec(0, [1.0, 1.010]), rec(1, [1.0021, 1.0121])])
    assert len(two) == 4
