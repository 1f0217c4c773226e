"""One streamed response of an OpenAI-compatible server (``/v1/completions`` or
``/v1/chat/completions``), read chunk by chunk (the streaming client's receiving half; ``stream``
drives the requests).

``read_stream`` POSTs a body and feeds every ``data:`` payload of the answer into an
``SseStream``, stamped with ``time.monotonic()`` at arrival. Content is a choice's ``text``
(completions) or ``delta.content`` (chat). A chunk that names k token ids gives k token times
(all its arrival); without ids, continuous-usage deltas give the count; without either, only the
chunk's arrival is known (``chunk_times``). The request's token count is the last usage seen
(a final chunk of its own, with empty choices or, as LiteLLM sends it, a choice without content:
``[{"index": 0}]`` on completions, ``[{"index": 0, "delta": {}}]`` on chat, after the finish
reason), else the ids or deltas counted, else — for a server that reports none — the streamed text under
the model's tokenizer (``count_source=tokenized``). A response is complete at ``[DONE]`` or, for
servers that send none, at a finish reason followed by the end of the stream. ``record`` turns the
stream into the request's row (an ``error`` row when the stream failed or gave no count; a
``cancelled`` one at the drain limit).
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Callable, Dict, List, Optional

import numpy as np

from orchestrator.client.metrics import RequestRecord
from orchestrator.client.workload import RequestSpec

if TYPE_CHECKING:
    from orchestrator.client.endpoint import Endpoint

ERROR_TEXT_CHARS = 2000


class SseStream:
    """Accumulates the chunks of one response. ``continuous``: continuous usage stats were asked
    for, so usage on a content chunk before the finish reason is a running count; any other usage
    (a final chunk of its own, or after the finish reason, or where nobody asked for running
    counts) is the total. A usage that counts nothing at all (0 prompt and 0 completion tokens:
    LiteLLM's chunks without ``include_usage``) is no usage. ``keep_text``: keep the streamed
    text, to count its tokens when the server reports no count."""

    def __init__(self, continuous: bool = False, keep_text: bool = False):
        self.continuous = continuous
        self.keep_text = keep_text
        self.text: List[str] = []
        self.token_times: List[float] = []
        self.chunk_times: List[float] = []  # arrival of every chunk that carried text or tokens
        self.ids_seen = False  # a content chunk named its token ids
        self.continuous_seen = False  # a content chunk carried usage (continuous usage stats)
        self.tokens_known = True  # every content chunk said how many tokens it carried
        self.first_content_s: Optional[float] = None
        self.last_content_s: Optional[float] = None
        self.usage_tokens: Optional[int] = None  # the last usage.completion_tokens seen (the total)
        self.prompt_tokens: Optional[int] = None
        self.cached_tokens: Optional[int] = None  # usage.prompt_tokens_details.cached_tokens, when said
        self.cumulative = 0  # continuous-usage count seen so far
        self.error: Optional[str] = None
        self.done = False  # saw [DONE]
        self.finished = False  # saw a finish_reason
        self.cancelled = False  # closed by the client at the drain limit
        self.status: Optional[int] = None  # the HTTP status (None: no response)

    @property
    def complete(self) -> bool:
        """The response ended as a finished one: ``[DONE]``, or a finish reason and then the end
        of the stream (servers that send no ``[DONE]``)."""
        return self.done or self.finished

    def feed(self, payload: str, t: float) -> bool:
        """One ``data:`` payload received at ``t``; False at ``[DONE]``."""
        if payload == "[DONE]":
            self.done = True
            return False
        chunk = json.loads(payload)
        if "error" in chunk and not chunk.get("choices"):
            self.error = f"stream error: {json.dumps(chunk['error'])[:ERROR_TEXT_CHARS]}"
            return False
        usage = _usage(chunk)
        running = usage if self.continuous and not self.finished else None
        for choice in chunk.get("choices") or []:
            text = _content_text(choice)
            # content: text, token ids, or a running count (vLLM sends multi-token chunks whose
            # text is still empty); a choice holding neither beside usage is not
            if text or _token_ids(choice) is not None or running is not None:
                self._content(choice, text, running, t)
            self.finished = self.finished or bool(choice.get("finish_reason"))
        if usage is not None and usage.get("completion_tokens") is not None:
            # the last one seen is the total (a running count ends at it)
            self.usage_tokens = int(usage["completion_tokens"])
            self.prompt_tokens = usage.get("prompt_tokens")
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
            if cached is not None:
                self.cached_tokens = int(cached)
        return True

    def _content(self, choice: Dict, text: str, running: Optional[Dict], t: float) -> None:
        if self.keep_text and text:
            self.text.append(text)
        ids = _token_ids(choice)
        if ids is not None:
            k: Optional[int] = len(ids)
            self.ids_seen = True
        elif running is not None and "completion_tokens" in running:
            k = int(running["completion_tokens"]) - self.cumulative
            self.continuous_seen = True
        else:
            k = None
        if k is None or k < 0:  # no count (or an inconsistent one): only the chunk's arrival is known
            self.tokens_known = False
            self._mark(t)
            self.chunk_times.append(t)
            return
        self.cumulative += k
        if k > 0:
            self.token_times.extend([t] * k)
        if k > 0 or text:
            self.chunk_times.append(t)
            self._mark(t)

    def _mark(self, t: float) -> None:
        if self.first_content_s is None:
            self.first_content_s = t
        self.last_content_s = t

    def record(self, spec: RequestSpec, arrival_s: float, send_s: float, end_of_stream_s: float,
               count_text: Optional[Callable[[str], int]] = None) -> RequestRecord:
        """The request's row (status 'error' when the stream failed or gave no token count).
        ``count_text``: tokens of the streamed text, for a server that reports no count (then
        ``count_source`` is ``tokenized``)."""
        rec = RequestRecord(
            index=spec.index, phase=spec.phase, arrival_s=arrival_s, send_s=send_s,
            first_token_s=float("nan"), end_s=end_of_stream_s, input_tokens=spec.input_tokens,
            output_tokens=0, requested_output_tokens=spec.output_tokens, batch_index=spec.batch_index,
            session=spec.session, turn=spec.turn,
        )
        if self.cancelled:
            return self._cancelled(rec)
        count, source = self.usage_tokens, "usage"
        if count is None and self.tokens_known and (self.ids_seen or self.continuous_seen):
            count, source = len(self.token_times), "token_ids" if self.ids_seen else "continuous_usage"
        if count is None and count_text is not None and self.keep_text:
            count, source = count_text("".join(self.text)), "tokenized"
        if not self.error and not self.complete:
            self.error = "the stream ended before [DONE] or a finish reason"
        if self.error or count is None:
            rec.status = "error"
            rec.error = self.error or "the server reported no token count (no usage chunk, no token ids)"
            return rec
        rec.output_tokens, rec.count_source = count, source
        rec.chunk_times_s = np.asarray(self.chunk_times, dtype=float)
        if self.prompt_tokens is not None:
            rec.input_tokens = rec.prompt_tokens_reported = int(self.prompt_tokens)
        rec.cached_tokens = self.cached_tokens
        if self.first_content_s is not None and self.last_content_s is not None:  # (set by the same chunk)
            rec.first_token_s, rec.end_s = self.first_content_s, self.last_content_s
        if self.tokens_known and (self.ids_seen or self.continuous_seen):
            rec.token_times_s = np.asarray(self.token_times, dtype=float)
            if len(self.token_times) != count:
                rec.error = f"token ids in chunks ({len(self.token_times)}) != usage.completion_tokens ({count})"
        return rec

    def _cancelled(self, rec: RequestRecord) -> RequestRecord:
        """A request cancelled at the drain limit: the tokens seen so far, with their times."""
        rec.status = "cancelled"
        rec.error = "cancelled: unfinished at the drain limit (workload.drain_timeout_s after the window)"
        rec.output_tokens = len(self.token_times)
        if self.first_content_s is not None:
            rec.first_token_s = self.first_content_s
        if self.tokens_known and self.token_times:
            rec.token_times_s = np.asarray(self.token_times, dtype=float)
        return rec


def _usage(chunk: Dict) -> Optional[Dict]:
    """The chunk's usage, None where it has none or one that counts nothing (all zeros)."""
    usage = chunk.get("usage") or None
    if usage is not None and not usage.get("completion_tokens") and not usage.get("prompt_tokens"):
        return None
    return usage


def _content_text(choice: Dict) -> str:
    """The text a choice carries: ``text`` (completions) or ``delta.content`` (chat)."""
    text = choice.get("text")
    if text is None:
        text = (choice.get("delta") or {}).get("content")
    return text or ""


def _token_ids(choice: Dict) -> Optional[List]:
    """The token ids a choice names (vLLM's ``return_token_ids``: on the choice, or in a chat
    delta), None where it names none."""
    ids = choice.get("token_ids")
    if ids is None:
        ids = (choice.get("delta") or {}).get("token_ids")
    return ids


async def read_stream(session, endpoint: "Endpoint", body: bytes, continuous: bool = False,
                      keep_text: bool = False) -> "SseStream":
    """POST ``body`` to the endpoint's route now and read its SSE stream into a ``SseStream``
    (``continuous``, ``keep_text``: see it); never raises (an HTTP error, a stream error, a
    timeout or a lost connection is its ``error``; a cancellation its ``cancelled``).
    ``SseStream.status`` is the HTTP status (None: no response)."""
    st = SseStream(continuous, keep_text)
    send_s = time.monotonic()
    try:
        async with session.post(endpoint.url, data=body, headers=endpoint.headers()) as resp:
            st.status = resp.status
            if resp.status != 200:
                text = (await resp.text())[:ERROR_TEXT_CHARS]
                st.error = f"HTTP {resp.status}: {text}"
            else:
                async for line in resp.content:
                    t = time.monotonic()
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    if not st.feed(line[5:].strip().decode(), t):
                        break
    except asyncio.CancelledError:  # the drain limit: leaving the `async with` closes the stream
        st.cancelled = True
    except (asyncio.TimeoutError, TimeoutError) as exc:
        st.error = f"timeout after {time.monotonic() - send_s:.1f} s ({type(exc).__name__})"
    except Exception as exc:  # connection refused/reset, bad JSON...: a row, not a crash
        st.error = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_CHARS]
    return st
