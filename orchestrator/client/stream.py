"""An async streaming client for OpenAI-compatible servers (vLLM and any other), over
``/v1/completions`` or ``/v1/chat/completions``, recording one timestamp per output **token**
(docs/architecture.md, "What a cell measures").

Sending: open loop (poisson | constant | gamma plans) sends each request at its **scheduled**
time ``t_base + spec.arrival_s`` whether or not earlier ones have finished; a late send shows up
as ``send_s > arrival_s`` and in TTFT (which counts from the scheduled arrival). Closed loop runs
``plan.concurrency`` clients, each sending its next request when its last one ends; there the
arrival is the send time, and the measured window opens at the first measured send and lasts
``plan.duration_s`` (no new sends after it closes; requests in flight drain).

Draining is bounded: requests still unfinished ``plan.drain_timeout_s`` after the window closes
are cancelled (their streams closed, so the server aborts them) and kept as ``status='cancelled'``
rows holding what was observed (tokens and their times so far); ``ClientRun.drain_s`` says how
long the drain took.

Receiving: the request asks for ``stream_options.include_usage`` (the final chunk's
``usage.completion_tokens`` is the request's token count) and ``return_token_ids`` (each chunk
names the token ids it carries). A chunk that carries k tokens gives k timestamps, all equal to
its arrival time; when a server sends no ids, per-chunk counts come from ``continuous_usage_stats``
deltas. A server that gives no count at all is counted by its streamed text under the model's
tokenizer where the caller gives ``count_text`` (``sse``: ``tokenized``); otherwise such a
request, an HTTP error, a stream error or a timeout becomes a ``status='error'`` row with the
error text. A chat request carries one user message (the prompt as text); its chunks carry
``delta.content``.

Other servers (``engine=endpoint``) speak a ``Dialect``: prompts as token ids or as text (built
by the caller with an exact length under its tokenizer), with or without vLLM's extra fields, and
continuous usage stats asked for. Every content chunk's arrival is kept too (``chunk_times_s``):
when a server gives neither token ids nor continuous usage, they are the only per-token times,
and ITL is per chunk (``metrics``: ``itl_basis``).

Every time is ``time.monotonic()`` seconds (the sampler's clock, ``monotonic_ns / 1e9``).
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from orchestrator.client.drain import bounded, drain
from orchestrator.client.endpoint import VLLM, Dialect, Endpoint
from orchestrator.client.metrics import RequestRecord
from orchestrator.client.model_files import prompt_digest
from orchestrator.client.sse import SseStream, read_stream
from orchestrator.client.workload import RequestSpec, WorkloadPlan
from orchestrator.config.groups import Arrival
from orchestrator.core.phases import Phase

START_LEAD_S = 0.2  # between preparing every request body and the first scheduled send


@dataclass
class ClientRun:
    """What the client saw: one record per request sent, and the measured window (seconds)."""

    records: List[RequestRecord]
    window_start_s: float
    window_end_s: float
    extra: Dict = field(default_factory=dict)
    drain_s: Optional[float] = None  # window end -> last request ended or was cancelled (s)


def request_body(spec: RequestSpec, endpoint: Endpoint, prompt_ids: Sequence[int], ignore_eos: bool,
                 request_id: Optional[str] = None, dialect: Dialect = VLLM,
                 prompt_text: Optional[str] = None) -> Dict[str, Any]:
    """The JSON body of one streamed request to ``endpoint``: for ``/v1/completions`` the prompt
    as token ids (or ``prompt_text`` under a text dialect); for ``/v1/chat/completions`` one user
    message holding ``prompt_text``. Exactly ``spec.output_tokens`` new tokens when ``ignore_eos``
    (min = max; vLLM's fields: without them ``max_tokens`` only bounds the count), greedy."""
    body: Dict[str, Any] = {"model": endpoint.model}
    if endpoint.chat:
        if prompt_text is None:
            raise ValueError("a chat request needs its prompt as text")
        body["messages"] = [{"role": "user", "content": prompt_text}]
    else:
        body["prompt"] = prompt_text if dialect.text_prompts else list(prompt_ids)
    body.update({"max_tokens": int(spec.output_tokens), "temperature": 0.0, "stream": True,
                 "stream_options": {"include_usage": True}})
    if dialect.continuous_usage:
        body["stream_options"]["continuous_usage_stats"] = True
    if not dialect.vllm_extras:
        return body
    body["return_token_ids"] = True
    if ignore_eos:
        body["ignore_eos"] = True
        body["min_tokens"] = int(spec.output_tokens)
    if request_id:
        body["request_id"] = request_id
    return body


# ------------------------------------------------------------------------------- one stream


async def stream_request(session, endpoint: Endpoint, spec: RequestSpec, body: bytes, arrival_s: float,
                         dialect: Dialect = VLLM, count_text: Optional[Callable[[str], int]] = None) -> RequestRecord:
    """Send one request now and read its stream to the end; never raises. Cancelled (the drain
    limit), it closes the stream and returns a ``cancelled`` record. ``count_text``: a server
    that reports no token count is counted by its streamed text."""
    send_s = time.monotonic()
    st = await read_stream(session, endpoint, body, dialect.continuous_usage, count_text is not None)
    return st.record(spec, arrival_s, send_s, time.monotonic(), count_text)


# ------------------------------------------------------------------------------- the plan


class StreamingClient:
    """Drives a ``WorkloadPlan`` against one endpoint. ``prompt_ids(spec)`` gives each request's
    prompt token ids (exactly ``spec.input_tokens`` of them)."""

    def __init__(self, endpoint: Endpoint, prompt_ids: Callable[[RequestSpec], Sequence[int]],
                 request_timeout_s: float = 600.0, request_id_prefix: str = "orch",
                 progress: Optional[Callable] = None, dialect: Dialect = VLLM,
                 prompt_text: Optional[Callable[[Sequence[int]], str]] = None,
                 count_text: Optional[Callable[[str], int]] = None):
        """``prompt_text(ids)``: the text of a prompt with exactly ``len(ids)`` tokens under the
        caller's tokenizer (a text ``dialect`` or a chat endpoint); ``count_text(text)``: the
        tokens of a response's text, for a server that reports no token count."""
        if (dialect.text_prompts or endpoint.chat) and prompt_text is None:
            raise ValueError("text prompts (a text dialect, a chat endpoint) need prompt_text")
        self.endpoint = endpoint
        self.prompt_ids = prompt_ids
        self.dialect = dialect
        self.prompt_text = prompt_text
        self.count_text = count_text
        self.request_timeout_s = float(request_timeout_s)
        self.request_id_prefix = request_id_prefix
        self.progress = progress  # phases.PhaseReporter-like: (phase, done, total, unit)
        self._prompt_hash: Dict[int, str] = {}

    def _tracked(self, coro, tally: "_Tally"):
        """``coro`` (one request), reporting the cell's phase when it ends."""
        async def run():
            rec = await coro
            tally.finished(rec)
            return rec

        return run()

    def body(self, spec: RequestSpec, plan: WorkloadPlan) -> bytes:
        """One request's serialised JSON body (its prompt's digest kept for its record)."""
        ids = self.prompt_ids(spec)
        self._prompt_hash[spec.index] = prompt_digest(ids)
        text_prompt = self.dialect.text_prompts or self.endpoint.chat
        text = self.prompt_text(ids) if text_prompt and self.prompt_text is not None else None
        return json.dumps(request_body(spec, self.endpoint, ids, plan.ignore_eos, f"{self.request_id_prefix}-{spec.index}",
                                       self.dialect, text)).encode()

    @staticmethod
    def _never_sent(spec: RequestSpec, t_sched: float) -> RequestRecord:
        """The record of a request cancelled before its first step: nothing was sent."""
        st = SseStream()
        st.cancelled = True
        return st.record(spec, t_sched, float("nan"), time.monotonic())

    def _with_prompt_hashes(self, records: List[RequestRecord]) -> List[RequestRecord]:
        for rec in records:
            rec.prompt_hash = self._prompt_hash.get(rec.index, "")
        return records

    def session(self):
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=self.request_timeout_s)
        # limit=0: no cap on open connections (an open loop must never queue in the client).
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout)

    async def run(self, plan: WorkloadPlan) -> ClientRun:
        if plan.offline:
            raise ValueError("offline plans run in-process (LLM.generate), not through the client")
        async with self.session() as session:
            if plan.arrival is Arrival.closed:
                return await self._closed_loop(session, plan)
            if plan.sessions:
                return await self._sessions(session, plan)
            return await self._open_loop(session, plan)

    async def _open_loop(self, session, plan: WorkloadPlan) -> ClientRun:
        bodies = [self.body(s, plan) for s in plan.requests]  # all serialised before the first send
        t_base = time.monotonic() + START_LEAD_S
        start = t_base + plan.measured_start_s
        end = start + plan.loop_window_s
        tally = _Tally(self.progress, plan, end)
        sent = []
        for spec, body in zip(plan.requests, bodies):
            t_sched = t_base + spec.arrival_s
            delay = t_sched - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            req = stream_request(session, self.endpoint, spec, body, t_sched, self.dialect, self.count_text)
            sent.append((spec, t_sched, asyncio.create_task(self._tracked(req, tally))))
        tally.all_sent()
        records, drain_s = await drain(sent, end, plan.drain_timeout_s, self._never_sent)
        return ClientRun(self._with_prompt_hashes(records), start, end, {"client_t_base_s": t_base}, drain_s)

    async def _sessions(self, session, plan: WorkloadPlan) -> ClientRun:
        """Multi-turn sessions: each opens at its first turn's scheduled time; every later turn is
        scheduled ``think_s`` after the previous answer ended (its arrival: TTFT counts from it)
        and is not sent when that falls after the window; a session stops at a turn that failed
        or was cancelled."""
        by_session: Dict[int, List[RequestSpec]] = {}
        for spec in plan.requests:
            by_session.setdefault(spec.session, []).append(spec)
        t_base = time.monotonic() + START_LEAD_S
        start = t_base + plan.measured_start_s
        end = start + plan.loop_window_s
        tally = _Tally(self.progress, plan, end, sessions=True)
        records: List[RequestRecord] = []

        async def run_session(turns: List[RequestSpec]) -> None:
            t_sched = t_base + turns[0].arrival_s
            for spec in turns:
                if spec.turn > 0:
                    t_sched += spec.think_s
                    if t_sched > end:
                        return
                body = self.body(spec, plan)
                delay = t_sched - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                rec = await self._tracked(stream_request(session, self.endpoint, spec, body, t_sched, self.dialect,
                                                         self.count_text), tally)
                records.append(rec)
                if rec.status != "ok":
                    return
                t_sched = rec.end_s

        tasks = [asyncio.create_task(run_session(turns)) for turns in by_session.values()]
        tally.all_sent()
        drain_s = await bounded(tasks, lambda: end, plan.drain_timeout_s)
        records.sort(key=lambda r: r.index)
        return ClientRun(self._with_prompt_hashes(records), start, end, {"client_t_base_s": t_base}, drain_s)

    async def _closed_loop(self, session, plan: WorkloadPlan) -> ClientRun:
        queue = list(plan.requests)[::-1]
        window: Dict[str, float] = {}
        records: List[RequestRecord] = []
        tally = _Tally(self.progress, plan, None)

        async def client() -> None:
            while queue:
                now = time.monotonic()
                if "end" in window and now >= window["end"]:
                    tally.all_sent()
                    return
                spec = queue.pop()
                if spec.phase == "measured" and "start" not in window:
                    window["start"], window["end"] = now, now + plan.loop_window_s
                    tally.window_end_s = window["end"]
                body = self.body(spec, plan)  # closed loop: built when its client frees
                req = stream_request(session, self.endpoint, spec, body, time.monotonic(), self.dialect,
                                     self.count_text)
                records.append(await self._tracked(req, tally))

        clients = [asyncio.create_task(client()) for _ in range(max(1, plan.concurrency))]
        drain_s = await bounded(clients, lambda: window.get("end"), plan.drain_timeout_s)
        records.sort(key=lambda r: r.index)
        now = time.monotonic()
        return ClientRun(self._with_prompt_hashes(records), window.get("start", now), window.get("end", now),
                         drain_s=drain_s)


class _Tally:
    """Counts finished requests and reports the cell's phase: warm-up, measuring k of N measured
    requests, then draining once every measured request is out (or the window has closed)."""

    def __init__(self, progress: Optional[Callable], plan: WorkloadPlan, window_end_s: Optional[float],
                 sessions: bool = False):
        self.progress = progress
        self.window_end_s = window_end_s
        # a closed loop sends as many as its clients manage; sessions' later turns, what fits the window
        closed = plan.arrival is Arrival.closed or sessions
        self.n_measured = None if closed else len(plan.measured)
        self.n_total = None if closed else len(plan.requests)
        self.done = self.done_measured = 0
        self.sent_all = False

    def all_sent(self) -> None:
        self.sent_all = True

    def finished(self, rec: RequestRecord) -> None:
        self.done += 1
        self.done_measured += rec.phase == "measured"
        if self.progress is None:
            return
        closed = self.window_end_s is not None and time.monotonic() >= self.window_end_s
        if self.sent_all or closed:
            self.progress(Phase.draining, self.done, self.n_total, "requests")
        elif self.done_measured == 0 and rec.phase == "warmup":
            self.progress(Phase.warmup, self.done, None, "requests")
        else:
            self.progress(Phase.measuring, self.done_measured, self.n_measured, "requests")


def run_plan(client: StreamingClient, plan: WorkloadPlan) -> ClientRun:
    """``client.run(plan)`` on a fresh event loop (for synchronous callers)."""
    return asyncio.run(client.run(plan))
