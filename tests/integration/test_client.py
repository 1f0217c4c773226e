"""The streaming client against a REAL local HTTP server (aiohttp, 127.0.0.1, its own thread and
event loop) that emits OpenAI-style SSE chunks at known times, like ``vllm serve``: multi-token
chunks, a final usage chunk, ``[DONE]``. The server notes the monotonic time at which it wrote
every token; the client's per-token timestamps, TTFT, TPOT, ITL and token counts must match
within a few ms, sends must keep to the schedule, and every failure must become a status row."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Dict, List

import numpy as np
import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web

from orchestrator import metrics
from orchestrator.client import Endpoint, StreamingClient, run_plan
from orchestrator.config.groups import Arrival, LengthConfig, LengthDist, WorkloadConfig
from orchestrator.models import prompt_token_ids
from orchestrator.workload import build_plan

API_KEY = "sk-test-key"
TTFT_S = 0.060
GAP_S = 0.020
CHUNK_SIZES = (1, 3, 1, 2)  # tokens per chunk, cycled: multi-token chunks on purpose
TOL_S = 0.010


class SseServer:
    """A fake ``vllm serve``: ``behaviour[request_index]`` picks how a request is answered."""

    def __init__(self):
        self.behaviour: Dict[int, str] = {}
        self.received: Dict[int, float] = {}  # request index -> monotonic receive time
        self.written: Dict[int, List[float]] = {}  # request index -> write time of each token
        self.bodies: Dict[int, dict] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_post("/v1/completions", self.completions)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return self.runner.addresses[0][1]

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
        n, times, sent, k = body["max_tokens"], [], 0, 0
        target = t_recv + TTFT_S
        while sent < n:
            size = min(CHUNK_SIZES[k % len(CHUNK_SIZES)], n - sent)
            await asyncio.sleep(max(0.0, target - time.monotonic()))
            if mode == "drop" and sent >= 2:
                request.transport.close()  # the server dies mid-stream
                return resp
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
            sent, k, target = sent + size, k + 1, target + GAP_S
        if mode == "stream_error":
            await resp.write(b'data: {"error": {"message": "engine died", "code": 500}}\n\n')
        if mode not in ("no_usage", "nothing", "no_ids"):
            usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": n, "total_tokens": len(body["prompt"]) + n}
            await resp.write(f"data: {json.dumps({'id': 'cmpl-x', 'choices': [], 'usage': usage})}\n\n".encode())
        if mode == "no_ids":  # usage present, no ids: counts right, token times unknown
            usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": n, "total_tokens": len(body["prompt"]) + n}
            await resp.write(f"data: {json.dumps({'id': 'cmpl-x', 'choices': [], 'usage': usage})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        self.written[idx] = times
        return resp


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
    assert run.extra["send_late_max_ms"] < TOL_S * 1e3


def test_request_body_asks_for_exact_lengths_as_token_ids(server):
    plan = build_plan(workload(duration_s=0.1, warmup_requests=0), batch_size=8)
    run_plan(client_for(server.url), plan)
    body = server.bodies[0]
    assert body["prompt"] == prompt_token_ids(16, 1000, 32000)
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
    plan = build_plan(workload(duration_s=0.1, warmup_requests=0), batch_size=8)
    server.behaviour.update({i: "continuous" for i in range(len(plan.requests))})
    run = run_plan(client_for(server.url), plan)
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
