"""Real traffic through the real streaming client, against a REAL local HTTP server (aiohttp on
127.0.0.1, its own thread) that answers like ``vllm serve`` with prefix caching on: it keeps its
own cache of 16-token prompt blocks (a block hits only where the whole prefix up to it was seen),
reports ``usage.prompt_tokens_details.cached_tokens`` and empties the cache on
``POST /reset_prefix_cache``.

- A replayed Mooncake trace is sent at its recorded times (scaled by ``speedup``): the documented
  tolerance is a median send lag under 20 ms and none over 250 ms (a busy 2-core machine).
- Requests that share hash ids arrive with identical token prefixes, and the server's cache
  hits are the trace's own.
- Multi-turn sessions: every later turn re-sends the previous turn's prompt, then the planned
  answer, then a new user turn, and is sent no earlier than its think time after the previous
  answer; later turns hit the cache.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Dict, List, Tuple

import numpy as np
import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web

from tests.integration.threaded_http import ThreadedHttpServer

from orchestrator.app.hydra_entry import typed
from orchestrator.client.endpoint import Endpoint
from orchestrator.client.stream import StreamingClient, run_plan
from orchestrator.driver.grid import cell_configs
from orchestrator.workloads import plan_for

BLOCK = 16
GAP_S = 0.004


class CachingServer(ThreadedHttpServer):
    """A fake ``vllm serve`` with an automatic prefix cache (see module doc)."""

    def __init__(self):
        super().__init__()
        self.blocks: set = set()
        self.bodies: Dict[str, dict] = {}
        self.received: Dict[str, float] = {}
        self.ended: Dict[str, float] = {}

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/reset_prefix_cache", self.reset)

    async def reset(self, request):
        self.blocks.clear()
        return web.json_response({"success": True})

    def cached(self, ids: List[int]) -> int:
        """Leading full blocks seen before (never the whole prompt), then remember them all."""
        prefixes = [tuple(ids[:k * BLOCK]) for k in range(1, len(ids) // BLOCK + 1)]
        hit = 0
        for p in prefixes:
            if p not in self.blocks:
                break
            hit = len(p)
        if hit >= len(ids):
            hit -= BLOCK
        self.blocks.update(prefixes)
        return hit

    async def completions(self, request: web.Request):
        rid = (await request.json())
        key = rid["request_id"]
        self.received[key], self.bodies[key] = time.monotonic(), rid
        cached = self.cached(list(rid["prompt"]))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        n = rid["max_tokens"]
        for i in range(n):
            await asyncio.sleep(GAP_S)
            choice = {"index": 0, "text": "", "token_ids": [7 + i], "finish_reason": "length" if i == n - 1 else None}
            await resp.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
        usage = {"prompt_tokens": len(rid["prompt"]), "completion_tokens": n, "total_tokens": len(rid["prompt"]) + n,
                 "prompt_tokens_details": {"cached_tokens": cached}}
        await resp.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        self.ended[key] = time.monotonic()
        return resp


@pytest.fixture
def server():
    with CachingServer() as s:
        yield s


def cell(compose, *overrides):
    return cell_configs([typed(compose(["engine=endpoint", "model=tiny", *overrides]))])[0]


def client(server, plan, vocab) -> StreamingClient:
    return StreamingClient(Endpoint(server.url, "tiny", None), lambda s: plan.prompt_ids(s, vocab), request_timeout_s=10)


def test_a_replayed_trace_keeps_its_times_and_its_own_cache_hits(server, compose, tmp_path):
    from scripts.make_sample_traces import write_samples

    paths = write_samples(tmp_path, n=60, rate=20.0, seed=3, block=BLOCK)
    cfg = cell(compose, "workload.source=trace", f"workload.trace.path={paths['mooncake.jsonl']}",
               f"workload.trace.block_tokens={BLOCK}", "workload.trace.speedup=2", "workload.warmup_requests=5",
               "workload.duration_s=30")
    plan = plan_for(cfg, "trace-cell")
    vocab = int(cfg.model.vocab_size)
    t_base_guess = time.monotonic()
    run = run_plan(client(server, plan, vocab), plan)
    t_base = run.extra["client_t_base_s"]
    assert t_base >= t_base_guess
    recs = {r.index: r for r in run.records}
    assert len(recs) == len(plan.requests) == 60 and all(r.status == "ok" for r in recs.values())
    lag = np.array([recs[s.index].send_s - (t_base + s.arrival_s) for s in plan.requests])
    assert np.median(lag) < 0.020 and lag.max() < 0.250, (np.median(lag), lag.max())
    # recorded times / 2: the replay keeps the trace's gaps
    from orchestrator.client.trace_files import read_mooncake

    recorded = np.array([r.arrival_s for r in read_mooncake(paths["mooncake.jsonl"])])
    assert [s.arrival_s for s in plan.requests] == pytest.approx(list((recorded - recorded[0]) / 2.0))
    # what the server received: requests that share their first k hash ids share k blocks of tokens
    rows = [json.loads(x) for x in paths["mooncake.jsonl"].read_text().splitlines()]
    prompts = [server.bodies[f"orch-{s.index}"]["prompt"] for s in plan.requests]
    for a in range(0, 60, 7):
        for b in range(a + 1, 60, 5):
            ha, hb = rows[a]["hash_ids"], rows[b]["hash_ids"]
            k = next((i for i, (x, y) in enumerate(zip(ha, hb)) if x != y), min(len(ha), len(hb)))
            n = min(k * BLOCK, len(prompts[a]), len(prompts[b]))
            assert prompts[a][:n] == prompts[b][:n]
            if k < min(len(ha), len(hb)) and len(prompts[a]) > n and len(prompts[b]) > n:
                assert prompts[a][n:n + BLOCK] != prompts[b][n:n + BLOCK]
    # the server's cache hits came back per request
    cached = [recs[s.index].cached_tokens for s in plan.requests]
    assert all(c is not None and c % BLOCK == 0 for c in cached) and sum(cached) > 0


def test_sessions_resend_their_history_after_the_think_time(server, compose):
    cfg = cell(compose, "workload.source=sessions", "workload.rate_rps=6", "workload.duration_s=1.2",
               "workload.input.dist=fixed", "workload.input.mean_tokens=24", "workload.output.dist=fixed",
               "workload.output.mean_tokens=6", "workload.sessions.min_turns=3", "workload.sessions.max_turns=3",
               "workload.sessions.think=fixed", "workload.sessions.think_time_s=0.05",
               "workload.sessions.system_prompt_tokens=32", "workload.sessions.warmup_sessions=1")
    plan = plan_for(cfg, "sessions-cell")
    vocab = int(cfg.model.vocab_size)
    run = run_plan(client(server, plan, vocab), plan)
    assert all(r.status == "ok" for r in run.records)
    by: Dict[Tuple[int, int], object] = {(r.session, r.turn): r for r in run.records}
    sessions = {s for s, _ in by}
    assert len(sessions) >= 5
    assert max(t for _, t in by) == 2  # three turns each
    system = None
    later = []
    for (s, t), rec in sorted(by.items()):
        body = server.bodies[f"orch-{rec.index}"]["prompt"]
        assert len(body) == 32 + 24 * (t + 1) + 6 * t  # system + user turns + planned answers
        system = system or body[:32]
        assert body[:32] == system  # one system prompt, shared by every session
        if t > 0:
            prev = by[(s, t - 1)]
            prev_body = server.bodies[f"orch-{prev.index}"]["prompt"]
            assert body[:len(prev_body)] == prev_body  # the whole history, then the answer and a new turn
            assert rec.arrival_s == pytest.approx(prev.end_s + 0.05, abs=1e-6)
            assert server.received[f"orch-{rec.index}"] >= server.ended[f"orch-{prev.index}"] + 0.05 - 0.005
            later.append((rec.cached_tokens, len(prev_body) // BLOCK * BLOCK))
    # later turns find their history in the cache: at least the previous prompt's full blocks
    assert later and all(c >= want > 0 for c, want in later)
