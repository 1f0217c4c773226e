"""A fake engine behind a REAL aiohttp server (``ThreadedHttpServer``) that serves
``/v1/completions`` from one global step loop: every ``STEP_S`` a step gives each request in
flight one token; a request that arrived since the last step gets its first token in the next one
(its prefill: the whole prompt). Every token goes out as an SSE chunk naming its token id; a final
usage chunk and ``[DONE]`` close a stream. The server writes down each step: when its first and
last chunk went out (``time.monotonic()``) and each request's (prefill, decode) tokens;
``GET /steps`` returns that log as JSON.

Run it in its own process (``python -m tests.integration.step_loop_server`` from the repository
root: it prints its port, serves until its stdin closes), as an engine runs beside the client:
in the client's process the two would share one GIL, and a step's chunks, written while the
client holds it, go out milliseconds apart."""
from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from aiohttp import web

from tests.integration.threaded_http import ThreadedHttpServer

STEP_S = 0.010
MIN_GAP_S = 0.006  # a late step loop never runs two steps closer than this (they would look like one)


@dataclass
class _Stream:
    index: int
    resp: web.StreamResponse
    model: str
    prompt_tokens: int
    max_tokens: int
    done: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0


class StepLoopServer(ThreadedHttpServer):
    """See the module doc."""

    def __init__(self):
        super().__init__()
        self.arrived: List[_Stream] = []  # since the last step
        self.running: Dict[int, _Stream] = {}
        self.steps: List[Tuple[float, float, Dict[int, Tuple[int, int]]]] = []  # (first write, last write, entries)
        self.prompt_tokens: Dict[int, int] = {}
        self._stop = False

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/steps", self.step_log)

    def __enter__(self):
        super().__enter__()
        self._loop_future = asyncio.run_coroutine_threadsafe(self._step_loop(), self.loop)
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._loop_future.result(10)
        return super().__exit__(*exc)

    async def step_log(self, request: web.Request):
        return web.json_response({
            "steps": [[a, b, [[i, p, d] for i, (p, d) in e.items()]] for a, b, e in self.steps],
            "prompt_tokens": {str(i): n for i, n in self.prompt_tokens.items()},
        })

    async def completions(self, request: web.Request):
        body = await request.json()
        idx = int(body["request_id"].rsplit("-", 1)[1])
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        st = _Stream(idx, resp, body["model"], len(body["prompt"]), int(body["max_tokens"]))
        self.prompt_tokens[idx] = st.prompt_tokens
        self.arrived.append(st)
        await st.done.wait()
        return resp

    async def _step_loop(self) -> None:
        target = time.monotonic()
        while not self._stop:
            target = max(target + STEP_S, time.monotonic() + MIN_GAP_S)
            await asyncio.sleep(max(0.0, target - time.monotonic()))
            new, self.arrived = self.arrived, []
            batch = list(self.running.values()) + new
            if not batch:
                continue  # nothing to compute: no step
            entries: Dict[int, Tuple[int, int]] = {}
            first_write = time.monotonic()
            for st in batch:
                entries[st.index] = (st.prompt_tokens, 0) if st.sent == 0 else (0, 1)
                await self._emit(st)
            self.steps.append((first_write, time.monotonic(), entries))
        for st in list(self.running.values()) + self.arrived:
            st.done.set()

    async def _emit(self, st: _Stream) -> None:
        last = st.sent + 1 == st.max_tokens
        choice = {"index": 0, "text": "", "token_ids": [100 + st.sent], "logprobs": None,
                  "finish_reason": "length" if last else None}
        chunk = {"id": f"cmpl-{st.index}", "object": "text_completion", "model": st.model, "choices": [choice]}
        await st.resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        st.sent += 1
        if not last:
            self.running[st.index] = st
            return
        self.running.pop(st.index, None)
        usage = {"prompt_tokens": st.prompt_tokens, "completion_tokens": st.sent,
                 "total_tokens": st.prompt_tokens + st.sent}
        final = {"id": f"cmpl-{st.index}", "choices": [], "usage": usage}
        await st.resp.write(f"data: {json.dumps(final)}\n\n".encode())
        await st.resp.write(b"data: [DONE]\n\n")
        st.done.set()


def main() -> None:
    with StepLoopServer() as server:
        print(server.port, flush=True)
        sys.stdin.read()  # until the test closes it


if __name__ == "__main__":
    main()
