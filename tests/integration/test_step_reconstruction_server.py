"""Steps reconstructed from what the REAL streaming client recorded, against a REAL aiohttp
server (``tests.integration.step_loop_server``: 127.0.0.1, its own process) that serves
``/v1/completions`` from one global step loop, as an engine does: every 10 ms a step gives each
request in flight one token; a request that arrived since the last step gets its first token in
the next one (its prefill: the whole prompt). Each token goes out as an SSE chunk naming its token
id; a final usage chunk and ``[DONE]`` close a stream. The server writes down every step (when its
first and last chunk went out, and each request's prefill and decode tokens).
``client.steps.reconstruct_steps`` over the client's records must give the written steps, the
prefill in the step of the first token, ends within 5 ms of when the server wrote them.

The load is small (about 20 requests over 1 s). The server runs in its own process (as an engine
does), yet on a busy 2-core machine a step's chunks now and then reach the client more than the
2 ms join window apart (about 1 run in 12 split one step of ~107 in two), so steps are matched by
time (each reconstructed step to the last written step begun before it ended), not exactly: at
least 98% of the tokens must be in the right step and at least 90% of the written steps found
exactly."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

pytest.importorskip("aiohttp")

from tests.integration.step_loop_server import STEP_S

from orchestrator.client.endpoint import Endpoint
from orchestrator.client.model_files import prompt_token_ids
from orchestrator.client.steps import reconstruct_steps
from orchestrator.client.stream import StreamingClient, run_plan
from orchestrator.client.workload import build_plan
from orchestrator.config.groups import Arrival, LengthConfig, LengthDist, WorkloadConfig

END_TOL_S = 0.005
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    """What the server wrote and what the client recorded."""

    steps: List[Tuple[float, float, Dict[int, Tuple[int, int]]]]  # (first write, last write, entries)
    prompt_tokens: Dict[int, int]
    records: list
    n_planned: int


@contextmanager
def step_loop_server():
    """``tests.integration.step_loop_server`` in its own process -> its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.step_loop_server"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stdin.close()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def workload() -> WorkloadConfig:
    cfg = WorkloadConfig(
        name="step_loop", arrival=Arrival.poisson, rate_rps=20.0, duration_s=1.0, warmup_requests=2, seed=11,
        drain_timeout_s=5.0, ignore_eos=True,
        input=LengthConfig(LengthDist.uniform, mean_tokens=200, std_tokens=100.0, min_tokens=20, max_tokens=400),
        output=LengthConfig(LengthDist.uniform, mean_tokens=12, std_tokens=6.0, min_tokens=2, max_tokens=24))
    cfg.validate()
    return cfg


def serve_plan() -> Served:
    """A small open-loop plan through the real client against the step-loop server."""
    plan = build_plan(workload(), batch_size=64)
    with step_loop_server() as url:
        client = StreamingClient(Endpoint(url, "llama2_7b"),
                                 lambda s: prompt_token_ids(s.input_tokens, 1000 + s.index, 32000),
                                 request_timeout_s=20)
        run = run_plan(client, plan)
        time.sleep(0.05)
        with urllib.request.urlopen(f"{url}/steps", timeout=10) as resp:
            log = json.load(resp)
    steps = [(a, b, {int(i): (int(p), int(d)) for i, p, d in e}) for a, b, e in log["steps"]]
    return Served(steps, {int(i): n for i, n in log["prompt_tokens"].items()}, run.records, len(plan.requests))


@pytest.fixture(scope="module")
def served() -> Served:
    return serve_plan()


def test_every_request_streamed_all_its_tokens(served):
    assert 15 <= served.n_planned <= 40 and len(served.records) == served.n_planned
    for r in served.records:
        assert r.status == "ok", r.error
        assert r.output_tokens == r.requested_output_tokens == len(r.token_times_s)
        assert r.input_tokens == served.prompt_tokens[r.index]
    # the written steps hold every token once
    tokens = sum(p > 0 or d > 0 for _, _, e in served.steps for p, d in e.values())
    assert tokens == sum(r.output_tokens for r in served.records)
    assert max(len(e) for _, _, e in served.steps) >= 3  # requests overlapped: real batching


def match(served: Served):
    """(the timeline, for each reconstructed step its written step: the last one the server had
    begun writing when the reconstructed step ended; a chunk reaches the client after it is
    written, and a late one still maps to its step while it is less than one step late)."""
    tl = reconstruct_steps(served.records)
    assert tl is not None and tl.source == "reconstructed"
    began = np.array([a for a, _, _ in served.steps])
    assert np.all(tl.end_s >= began[0])
    return tl, np.searchsorted(began, tl.end_s, side="right") - 1


def token_steps(steps_entries) -> Dict[int, List[int]]:
    """request -> the step of each of its tokens, in order (a step holding k of its tokens: k times)."""
    out: Dict[int, List[int]] = {}
    for k, entries in steps_entries:
        for r, (p, d) in entries.items():
            out.setdefault(r, []).extend([k] * ((1 if p else 0) + d))
    return out


def test_reconstructed_steps_match_the_written_steps(served):
    """Matched by time: each reconstructed step to the last written step begun before it ended. At least
    98% of the tokens are in the right step; the step count is within 10% and at least 90% of
    the written steps are found exactly (one reconstructed step, the same requests and tokens): a
    step whose chunks reached the client in two bursts is two steps; ends lie within 5 ms of when
    the server wrote them (95% of the steps; the median within 2 ms). In 26 runs beside two
    CPU-bound processes on a 2-core machine every token was in its step; at worst 91.5% of the
    steps were found, with 9 steps too many."""
    tl, mapped = match(served)
    written = [e for _, _, e in served.steps]
    assert len(written) > 80
    assert abs(len(tl) - len(written)) <= 0.10 * len(written)
    got = token_steps((int(mapped[k]), {r: (p, d) for r, p, d in tl.requests_of(k)}) for k in range(len(tl)))
    want = token_steps(enumerate(written))
    assert got.keys() == want.keys()
    n_tokens = sum(len(v) for v in want.values())
    right = sum(sum(a == b for a, b in zip(got[r], want[r])) for r in want)
    assert all(len(got[r]) == len(want[r]) for r in want)  # every token in some step
    assert right >= 0.98 * n_tokens, (right, n_tokens)
    found = 0
    for w, entries in enumerate(written):
        ks = np.flatnonzero(mapped == w)
        found += ks.size == 1 and {r: (p, d) for r, p, d in tl.requests_of(int(ks[0]))} == entries
    assert found >= 0.90 * len(written), (found, len(written))
    err = np.abs(tl.end_s - np.array([served.steps[w][1] for w in mapped]))
    assert np.mean(err < END_TOL_S) >= 0.95, np.sort(err)[-5:]
    assert np.median(err) < 0.002


def test_the_prefill_is_in_the_step_of_the_first_token(served):
    """Every request's prompt is computed once, in the reconstructed step of its first token,
    which is (all but at most one request) the step the server computed it in."""
    tl, mapped = match(served)
    by_index = {r.index: r for r in served.records}
    written_prefill = {r: w for w, (_, _, e) in enumerate(served.steps) for r, (p, _) in e.items() if p}
    seen, right = set(), 0
    for k in range(len(tl)):
        for i, p, d in tl.requests_of(k):
            if p:
                assert d == 0 and i not in seen
                seen.add(i)
                assert p == served.prompt_tokens[i] == by_index[i].input_tokens
                assert tl.end_s[k] - END_TOL_S < by_index[i].token_times_s[0] <= tl.end_s[k]
                right += written_prefill[i] == mapped[k]
    assert seen == set(by_index) == set(written_prefill)
    assert right >= len(seen) - 1


def test_reconstructed_starts_follow_the_step_loop(served):
    """Back to back (the loop was busy): a step starts at the previous step's end; after the
    loop had nothing to do, at its end less the busy step length (about 10 ms)."""
    tl = reconstruct_steps(served.records)
    gaps = np.diff(tl.end_s)
    busy = np.median(gaps[gaps < 1.5 * STEP_S + 0.003])
    assert busy == pytest.approx(STEP_S, abs=0.003)
    assert np.sum(gaps > 3 * STEP_S) >= 1  # the loop went idle at least once
    for k in range(1, len(tl)):
        if gaps[k - 1] <= 1.5 * busy - 0.002:
            assert tl.start_s[k] == tl.end_s[k - 1]
        elif gaps[k - 1] > 1.5 * busy + 0.002:
            assert tl.start_s[k] == pytest.approx(tl.end_s[k] - busy, abs=0.002)
