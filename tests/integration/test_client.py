"""The streaming client against a REAL local HTTP server (aiohttp, 127.0.0.1, its own thread and
event loop) that emits OpenAI-style SSE chunks at known times, like ``vllm serve``: multi-token
chunks, a final usage chunk, ``[DONE]``. The server notes the monotonic time at which it wrote
every token; the client's per-token timestamps, TTFT, TPOT, ITL and token counts must match
within a few ms, sends must keep to the schedule, and every failure must become a status row.
Requests still unfinished ``drain_timeout_s`` after the window are cancelled: the client closes
their streams (the server sees it) and keeps what they emitted as ``cancelled`` rows."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Dict, List

import numpy as np
import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web

from tests.integration.threaded_http import ThreadedHttpServer

from orchestrator.client import metrics
from orchestrator.client.endpoint import Dialect, Endpoint
from orchestrator.client.model_files import prompt_digest, prompt_token_ids
from orchestrator.client.stream import StreamingClient, run_plan
from orchestrator.client.workload import build_plan
from orchestrator.config.groups import Arrival, LengthConfig, LengthDist, WorkloadConfig

API_KEY = "sk-test-key"
TTFT_S = 0.060
GAP_S = 0.020
CHUNK_SIZES = (1, 3, 1, 2)  # tokens per chunk, cycled: multi-token chunks on purpose
TOL_S = 0.010
SLOW_GAP_S = 0.200  # mode "slow": one token per chunk, this far apart (9 tokens: 1.7 s, past any drain here)


class SseServer(ThreadedHttpServer):
    """A fake ``vllm serve``: ``behaviour[request_index]`` picks how a request is answered."""

    def __init__(self):
        super().__init__()
        self.behaviour: Dict[int, str] = {}
        self.received: Dict[int, float] = {}  # request index -> monotonic receive time
        self.written: Dict[int, List[float]] = {}  # request index -> write time of each token
        self.bodies: Dict[int, dict] = {}
        self.closed: Dict[int, float] = {}  # request index -> when a write found the client gone
        self.in_flight = 0
        self.max_in_flight = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/completions", self.completions)

    async def completions(self, request: web.Request):
        t_recv = time.monotonic()
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return web.json_response({"error": {"message": "Unauthorized"}}, status=401)
        body = await request.json()
        idx = int(body["request_id"].rsplit("-", 1)[1])
        self.received[idx], self.bodies[idx] = t_recv, body
        mode = self.behaviour.get(idx, "normal")
        if mode == "http500":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._stream(request, body, idx, mode, t_recv)
        finally:
            self.in_flight -= 1

    async def _stream(self, request, body, idx, mode, t_recv):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        n, times = body["max_tokens"], []
        self.written[idx] = times  # filled as tokens go out (a cancelled stream keeps what was sent)
        target = t_recv + TTFT_S
        try:
            await self._chunks(request, resp, body, idx, mode, n, times, target)
        except (ConnectionError, asyncio.CancelledError):  # the client closed the stream
            self.closed[idx] = time.monotonic()
        return resp

    async def _chunks(self, request, resp, body, idx, mode, n, times, target):
        sent, k = 0, 0
        while sent < n:
            size = 1 if mode == "slow" else min(CHUNK_SIZES[k % len(CHUNK_SIZES)], n - sent)
            await asyncio.sleep(max(0.0, target - time.monotonic()))
            if mode == "drop" and sent >= 2:
                request.transport.close()  # the server dies mid-stream
                return
            ids = list(range(100 + sent, 100 + sent + size))
            choice = {"index": 0, "text": "t5 t6 t7 t8 t9" if size == 1 else "", "logprobs": None,
                      "finish_reason": "length" if sent + size == n else None}
            chunk = {"id": "cmpl-x", "object": "text_completion", "model": body["model"], "choices": [choice]}
            if mode != "no_ids" and mode != "continuous" and mode != "nothing":
                choice["token_ids"] = ids
            if mode == "continuous":
                chunk["usage"] = {"prompt_tokens": len(body["prompt"]), "completion_tokens": sent + size,
                                  "total_tokens": len(body["prompt"]) + sent + size}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            times += [time.monotonic()] * size
            sent, k, target = sent + size, k + 1, target + (SLOW_GAP_S if mode == "slow" else GAP_S)
        if mode == "stream_error":
            await resp.write(b'data: {"error": {"message": "engine died", "code": 500}}\n\n')
        if mode not in ("no_usage", "nothing", "no_ids"):
            usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": n, "total_tokens": len(body["prompt"]) + n}
            await resp.write(f"data: {json.dumps({'id': 'cmpl-x', 'choices': [], 'usage': usage})}\n\n".encode())
        if mode == "no_ids":  # usage present, no ids: counts right, token times unknown
            usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": n, "total_tokens": len(body["prompt"]) + n}
            await resp.write(f"data: {json.dumps({'id': 'cmpl-x', 'choices': [], 'usage': usage})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")


def workload(**kw) -> WorkloadConfig:
    """A typed workload (validated like a composed one); ``kw`` replaces fields."""
    wl = {"name": "client_test", "arrival": Arrival.constant, "rate_rps": 25.0, "gamma_shape": 1.0, "concurrency": 2,
          "duration_s": 0.6, "warmup_requests": 3, "num_batches": 1, "warmup_batches": 0, "ignore_eos": True, "seed": 7,
          "input": LengthConfig(LengthDist.fixed, mean_tokens=16, std_tokens=0.0, min_tokens=1, max_tokens=64),
          "output": LengthConfig(LengthDist.fixed, mean_tokens=9, std_tokens=0.0, min_tokens=1, max_tokens=64)}
    wl.update(kw)
    wl["arrival"] = Arrival(wl["arrival"])
    cfg = WorkloadConfig(**wl)
    cfg.validate()
    return cfg


def client_for(url, key=API_KEY):
    return StreamingClient(Endpoint(url, "llama2_7b", key),
                           lambda s: prompt_token_ids(s.input_tokens, 1000 + s.index, 32000), request_timeout_s=10)


@pytest.fixture
def server():
    with SseServer() as s:
        yield s


def test_open_loop_token_times_counts_and_metrics_are_exact(server):
    plan = build_plan(workload(), batch_size=8)
    run = run_plan(client_for(server.url), plan)
    assert len(run.records) == len(plan.requests) == len(server.written)
    for rec in run.records:
        assert rec.status == "ok", rec.error
        assert rec.output_tokens == 9 == rec.requested_output_tokens and len(rec.token_times_s) == 9
        assert rec.input_tokens == 16
        written = np.asarray(server.written[rec.index])
        assert np.max(np.abs(rec.token_times_s - written)) < TOL_S
        assert rec.first_token_s == rec.token_times_s[0] and rec.end_s == rec.token_times_s[-1]
        # a 3-token chunk gives 3 equal timestamps: ITL is per token, zeros included
        itl = np.diff(rec.token_times_s)
        assert np.sum(itl == 0) == 3  # chunk sizes 1,3,1,2,1,1: 2 + 1 zero gaps
        assert rec.first_token_s - server.received[rec.index] == pytest.approx(TTFT_S, abs=TOL_S)
    wr = metrics.WindowRun(run.records, run.window_start_s, run.window_end_s)
    row = metrics.summarize(wr, plan.rate_rps, plan.ignore_eos)
    ok = [r for r in run.records if r.phase == "measured"]
    ttft_expected = np.array([server.written[r.index][0] - r.arrival_s for r in ok])
    tpot_expected = np.array([(server.written[r.index][-1] - server.written[r.index][0]) / 8 for r in ok])
    assert row["ttft_p50_ms"] == pytest.approx(np.median(ttft_expected) * 1e3, abs=TOL_S * 1e3)
    assert row["ttft_p50_ms"] == pytest.approx(TTFT_S * 1e3, abs=TOL_S * 1e3)
    assert row["tpot_p50_ms"] == pytest.approx(np.median(tpot_expected) * 1e3, abs=2.0)
    assert row["tpot_p50_ms"] == pytest.approx(5 * GAP_S / 8 * 1e3, abs=2.0)  # 8 gaps, 5 chunks after the first
    assert row["itl_p50_ms"] == pytest.approx(GAP_S * 1e3, abs=3.0)
    assert not row["token_count_mismatch"] and row["n_requests_failed"] == 0


def test_open_loop_sends_happen_at_the_scheduled_times(server):
    plan = build_plan(workload(arrival="poisson", rate_rps=40.0, duration_s=1.0), batch_size=8)
    run = run_plan(client_for(server.url), plan)
    late = np.array([r.send_s - r.arrival_s for r in run.records])
    assert np.all(late >= -0.001) and np.max(late) < TOL_S
    arrivals = np.array([r.arrival_s for r in run.records])
    assert np.allclose(np.diff(arrivals), np.diff([s.arrival_s for s in plan.requests]))
    recv = np.array([server.received[r.index] for r in run.records])
    assert np.max(np.abs(recv - arrivals)) < 2 * TOL_S
    # the measured window is [first measured scheduled arrival, + duration] on the same clock
    assert run.window_start_s == pytest.approx(run.records[3].arrival_s)
    assert run.window_end_s - run.window_start_s == pytest.approx(1.0)
    row = metrics.summarize(metrics.WindowRun(run.records, run.window_start_s, run.window_end_s), plan.rate_rps, True)
    assert row["send_lag_max_ms"] < TOL_S * 1e3 and row["client_lagging"] == (row["send_lag_p99_ms"] > 10)


def test_request_body_asks_for_exact_lengths_as_token_ids(server):
    plan = build_plan(workload(duration_s=0.1, warmup_requests=0), batch_size=8)
    run = run_plan(client_for(server.url), plan)
    body = server.bodies[0]
    assert body["prompt"] == prompt_token_ids(16, 1000, 32000)
    # every record names the prompt the server got
    assert [r.prompt_hash for r in run.records] == [prompt_digest(server.bodies[r.index]["prompt"]) for r in run.records]
    assert len({r.prompt_hash for r in run.records}) == len(run.records) > 1
    assert body["max_tokens"] == body["min_tokens"] == 9 and body["ignore_eos"] is True
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["return_token_ids"] is True and body["temperature"] == 0.0 and body["model"] == "llama2_7b"


@pytest.mark.parametrize("mode, fragment", [
    ("http500", "HTTP 500"),
    ("drop", ""),
    ("stream_error", "engine died"),
    ("nothing", "no token count"),
])
def test_failures_become_error_rows(server, mode, fragment):
    plan = build_plan(workload(duration_s=0.2, warmup_requests=1), batch_size=8)
    server.behaviour[2] = mode
    run = run_plan(client_for(server.url), plan)
    bad = run.records[2]
    assert bad.status == "error" and fragment in bad.error and bad.output_tokens == 0
    assert all(r.status == "ok" for r in run.records if r.index != 2)
    row = metrics.summarize(metrics.WindowRun(run.records, run.window_start_s, run.window_end_s), 25.0, True)
    assert row["n_requests_failed"] == 1


def test_wrong_api_key_is_an_error_row(server):
    plan = build_plan(workload(duration_s=0.1, warmup_requests=0), batch_size=8)
    run = run_plan(client_for(server.url, key="wrong"), plan)
    assert all(r.status == "error" and "HTTP 401" in r.error for r in run.records)


def test_no_server_gives_error_rows_not_an_exception():
    from tests.conftest import free_port

    plan = build_plan(workload(duration_s=0.1, warmup_requests=0), batch_size=8)
    run = run_plan(client_for(f"http://127.0.0.1:{free_port()}"), plan)
    assert run.records and all(r.status == "error" and "Connect" in r.error for r in run.records)


def test_counts_from_continuous_usage_when_chunks_carry_no_ids(server):
    """Continuous usage stats asked for (as the endpoint probe's vLLM dialect does): each chunk's
    running count gives its tokens their times."""
    plan = build_plan(workload(duration_s=0.1, warmup_requests=0), batch_size=8)
    server.behaviour.update({i: "continuous" for i in range(len(plan.requests))})
    client = client_for(server.url)
    client.dialect = Dialect(continuous_usage=True)
    run = run_plan(client, plan)
    for rec in run.records:
        assert rec.status == "ok" and rec.output_tokens == 9 and len(rec.token_times_s) == 9
        assert np.max(np.abs(rec.token_times_s - np.asarray(server.written[rec.index]))) < TOL_S


def test_usage_without_ids_counts_right_and_leaves_token_times_unknown(server):
    plan = build_plan(workload(duration_s=0.1, warmup_requests=0), batch_size=8)
    server.behaviour.update({i: "no_ids" for i in range(len(plan.requests))})
    run = run_plan(client_for(server.url), plan)
    for rec in run.records:
        assert rec.status == "ok" and rec.output_tokens == 9 and rec.token_times_s is None
        # first/last content chunk: text chunks only (the 3-token chunk had no text)
        assert rec.first_token_s == pytest.approx(server.written[rec.index][0], abs=TOL_S)


def test_usage_missing_counts_from_token_ids(server):
    plan = build_plan(workload(duration_s=0.1, warmup_requests=0), batch_size=8)
    server.behaviour.update({i: "no_usage" for i in range(len(plan.requests))})
    run = run_plan(client_for(server.url), plan)
    assert all(r.status == "ok" and r.output_tokens == 9 for r in run.records)


def test_closed_loop_keeps_concurrency_and_the_window(server):
    plan = build_plan(workload(arrival="closed", concurrency=3, duration_s=0.8, warmup_requests=3), batch_size=8)
    run = run_plan(client_for(server.url), plan)
    assert server.max_in_flight == 3
    measured = [r for r in run.records if r.phase == "measured"]
    assert run.window_start_s == pytest.approx(min(r.send_s for r in measured), abs=0.002)
    assert run.window_end_s == pytest.approx(run.window_start_s + 0.8)
    assert all(r.send_s <= run.window_end_s for r in run.records)
    assert all(r.arrival_s == pytest.approx(r.send_s, abs=0.002) for r in run.records)
    # each request takes TTFT + 5 gaps = 0.16 s; 3 clients over 0.8 s -> about 15 measured
    assert 10 <= len(measured) <= 20 and all(r.status == "ok" for r in run.records)


# ------------------------------------------------------------------------------- bounded drain

DRAIN_S = 0.5
SLACK_S = 0.35  # event-loop and connection-close latency on a loaded 2-core machine


def _slow_workload(**kw):
    """The test workload with a drain limit of DRAIN_S: a normal request (9 tokens) takes 0.16 s, a
    slow one 1.66 s, more than window + drain for any of them."""
    return workload(drain_timeout_s=DRAIN_S, **kw)


def _wait_closed(server, indices, timeout_s=2.0):
    deadline = time.monotonic() + timeout_s
    while not set(indices) <= set(server.closed) and time.monotonic() < deadline:
        time.sleep(0.02)
    return set(server.closed)


def _check_cancelled(server, rec, stop_s):
    """A cancelled record holds exactly what the server wrote before the client closed the stream."""
    written = np.asarray(server.written[rec.index])
    assert rec.status == "cancelled" and "drain limit" in rec.error
    assert rec.end_s == pytest.approx(stop_s, abs=SLACK_S)
    assert 1 <= rec.output_tokens < 9 and len(rec.token_times_s) == rec.output_tokens
    # the server may have written one more token while the close was on its way
    assert rec.output_tokens in (len(written), len(written) - 1)
    assert np.max(np.abs(rec.token_times_s - written[:rec.output_tokens])) < TOL_S
    # one token per chunk: strictly increasing times (their gaps are the server's, checked above
    # against what it wrote; a busy machine's server may write one late and the next on time)
    assert rec.first_token_s == rec.token_times_s[0] and np.all(np.diff(rec.token_times_s) > 0)


def test_open_loop_cancels_requests_unfinished_at_the_drain_limit(server):
    plan = build_plan(_slow_workload(duration_s=0.6, warmup_requests=3), batch_size=8)
    assert plan.drain_timeout_s == DRAIN_S
    slow = [s.index for s in plan.measured if s.index % 2 == 0]  # half the measured requests cannot finish
    server.behaviour.update({i: "slow" for i in slow})
    t_call = time.monotonic()
    run = run_plan(client_for(server.url), plan)
    t_back = time.monotonic()
    stop = run.window_end_s + DRAIN_S
    assert stop - SLACK_S < t_back < stop + SLACK_S  # not the ~10 s the slow requests want
    assert t_back - t_call < 0.2 + plan.measured_start_s + 0.6 + DRAIN_S + SLACK_S + 0.2
    assert run.drain_s == pytest.approx(DRAIN_S, abs=SLACK_S)
    assert len(run.records) == len(plan.requests)
    by_index = {r.index: r for r in run.records}
    for i in slow:
        _check_cancelled(server, by_index[i], stop)
    for r in run.records:
        if r.index not in slow:
            assert r.status == "ok" and r.output_tokens == 9 == len(r.token_times_s), r.error
    assert set(slow) <= _wait_closed(server, slow)  # the server saw every cancelled stream closed
    assert all(server.closed[i] < stop + SLACK_S for i in slow)
    assert not set(server.closed) - set(slow) and server.in_flight == 0
    assert all(len(server.written[i]) < 9 for i in slow)  # it stopped writing them
    wr = metrics.WindowRun(run.records, run.window_start_s, run.window_end_s, drain_timeout_s=plan.drain_timeout_s,
                           drain_s=run.drain_s)
    row = metrics.summarize(wr, plan.rate_rps, plan.ignore_eos)
    assert row["n_requests_cancelled"] == len(slow) and row["n_requests_failed"] == 0 and row["saturated"]
    assert row["n_requests_ok"] == len(plan.measured) - len(slow)
    def in_window(recs):
        return sum(int(np.count_nonzero((r.token_times_s >= run.window_start_s) & (r.token_times_s <= run.window_end_s)))
                   for r in recs)

    cancelled_in_window = in_window([by_index[i] for i in slow])
    assert cancelled_in_window > 0  # the early slow requests emitted tokens inside the window...
    ok_in_window = in_window([r for r in run.records if r.index not in slow])
    assert row["output_tokens_in_window"] == ok_in_window + cancelled_in_window  # ...and they count


def test_closed_loop_cancels_requests_unfinished_at_the_drain_limit(server):
    plan = build_plan(_slow_workload(arrival="closed", concurrency=2, duration_s=0.4, warmup_requests=0),
                      batch_size=8)
    server.behaviour.update({i: "slow" for i in range(len(plan.requests))})
    run = run_plan(client_for(server.url), plan)
    t_back = time.monotonic()
    stop = run.window_end_s + DRAIN_S
    assert run.window_end_s - run.window_start_s == pytest.approx(0.4)
    assert stop - SLACK_S < t_back < stop + SLACK_S and run.drain_s == pytest.approx(DRAIN_S, abs=SLACK_S)
    assert [r.index for r in run.records] == [0, 1]  # the two clients' first requests, never finished
    for rec in run.records:
        _check_cancelled(server, rec, stop)
    assert _wait_closed(server, [0, 1]) == {0, 1} and len(server.received) == 2  # nothing sent after the window


def test_requests_that_finish_in_time_leave_no_cancelled_rows(server):
    plan = build_plan(workload(duration_s=0.6, warmup_requests=3, drain_timeout_s=5.0), batch_size=8)
    t_call = time.monotonic()
    run = run_plan(client_for(server.url), plan)
    assert all(r.status == "ok" for r in run.records) and not server.closed
    # the last request is sent at the window's end and takes TTFT + 5 gaps = 0.16 s
    assert 0.0 <= run.drain_s < 0.16 + 0.15 and time.monotonic() - t_call < 0.2 + plan.measured_start_s + 0.6 + 0.5
    closed = build_plan(workload(arrival="closed", concurrency=3, duration_s=0.5, warmup_requests=0,
                                 drain_timeout_s=5.0), batch_size=8)
    crun = run_plan(client_for(server.url), closed)
    assert all(r.status == "ok" for r in crun.records) and 0.0 <= crun.drain_s < 0.16 + 0.15
    wr = metrics.WindowRun(run.records, run.window_start_s, run.window_end_s, drain_timeout_s=5.0, drain_s=run.drain_s)
    row = metrics.summarize(wr, None, True)  # (no offered rate: saturation from cancellations alone)
    assert row["n_requests_cancelled"] == 0 and not row["saturated"] and row["drain_s"] == run.drain_s
