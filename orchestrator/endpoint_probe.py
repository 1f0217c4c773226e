"""What an OpenAI-compatible server accepts and reports, found by asking it once (``engine=endpoint``).

``probe(target)`` sends, through the project's streaming client (``sse.read_stream``):

1. ``GET /v1/models`` (with the key): a connection error is an unreachable URL, 401/403 a bad
   key, a list without ``engine.endpoint.model`` a wrong model name (a server without the route
   skips this step);
2. a short streamed completion with the prompt as **token ids** (asking for vLLM's extras and
   continuous usage stats): taken when the server answers 200, streams to ``[DONE]`` and, where
   it reports ``usage.prompt_tokens``, counts exactly the ids sent;
3. otherwise the same prompt as **text** (exact length under the cell's tokenizer,
   ``endpoint_prompts``).

The answer (``ProbeResult``) says the prompt mode (``token_ids`` | ``text``) and where per-token
times come from: ``token_ids`` (chunks name their ids), ``continuous_usage`` (chunks carry usage)
or ``chunks`` (neither: one stamp per chunk, ITL per chunk). A server that reports no token count
at all (no usage, no ids) is refused: no request's output tokens could be known. Every refusal is
a ``ProbeError`` (a ``ConfigError``: one line, exit 2 before the sweep). The API key is sent in a
header and never appears in a message.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from enum import Enum
from typing import Optional, Tuple

from orchestrator.client import Dialect, Endpoint, completion_body
from orchestrator.sse import read_stream
from orchestrator.errors import ConfigError
from orchestrator.workload import RequestSpec

PROBE_PROMPT_TOKENS = 8
PROBE_OUTPUT_TOKENS = 4
MESSAGE_CHARS = 200


class PromptMode(str, Enum):
    """How prompts travel: ``auto`` (the probe decides), ``token_ids`` or ``text``."""

    auto = "auto"
    token_ids = "token_ids"
    text = "text"


class ProbeError(ConfigError):
    """The endpoint cannot be measured (unreachable, bad key, wrong model, no token counts)."""


@dataclass(frozen=True)
class ProbeResult:
    prompt_mode: str  # token_ids | text
    token_times: str  # token_ids | continuous_usage | chunks
    reports_usage: bool  # the final chunk carries usage.completion_tokens
    served_models: Tuple[str, ...] = ()

    @property
    def dialect(self) -> Dialect:
        return Dialect(text_prompts=self.prompt_mode == "text", vllm_extras=True, continuous_usage=True)

    def describe(self) -> str:
        itl = " (ITL per chunk)" if self.token_times == "chunks" else ""
        return f"prompts as {self.prompt_mode.replace('_', ' ')}, token times from {self.token_times}{itl}"


@dataclass(frozen=True)
class Target:
    """What to probe: the endpoint (its key already read), the prompt mode asked for, the
    model's vocabulary size (token-id prompts), ``text_of(ids)`` (text prompts; None: none),
    and the config key naming the key's variable (for messages)."""

    endpoint: Endpoint
    prompt: PromptMode = PromptMode.auto
    vocab_size: int = 32000
    text_of: Optional[object] = None
    api_key_env: str = ""
    timeout_s: float = 30.0


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:MESSAGE_CHARS]


def _refusal(t: Target, status: Optional[int], error: str) -> ProbeError:
    """The one-line error for a failed request of the probe."""
    url = t.endpoint.base_url
    if status is None:
        return ProbeError(f"engine.endpoint.base_url={url}: unreachable ({_one_line(error)})")
    if status in (401, 403):
        if not t.api_key_env:
            return ProbeError(f"engine.endpoint.base_url={url}: the server wants an API key (HTTP {status}); name the "
                              "environment variable that holds it in engine.endpoint.api_key_env")
        return ProbeError(f"engine.endpoint.api_key_env={t.api_key_env}: the server refused that key (HTTP {status})")
    if status == 404 and "model" in error.lower():
        return ProbeError(f"engine.endpoint.model={t.endpoint.model}: {_one_line(error)}")
    return ProbeError(f"engine.endpoint.base_url={url}: the probe request failed: {_one_line(error)}")


async def _models(session, t: Target) -> Tuple[str, ...]:
    """The served model names (() when the server has no ``/v1/models``); raises ``ProbeError``."""
    import aiohttp

    url = t.endpoint.base_url.rstrip("/") + "/v1/models"
    try:
        async with session.get(url, headers=t.endpoint.headers()) as resp:
            if resp.status in (404, 405):
                return ()
            text = await resp.text()
            if resp.status != 200:
                raise _refusal(t, resp.status, f"HTTP {resp.status}: {text}")
            names = tuple(str(m.get("id")) for m in json.loads(text).get("data", []))
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise _refusal(t, None, f"{type(exc).__name__}: {exc}") from None
    except ValueError:  # not JSON: a server that is not OpenAI-compatible there
        return ()
    if names and t.endpoint.model not in names:
        raise ProbeError(f"engine.endpoint.model={t.endpoint.model}: not served at {t.endpoint.base_url}; "
                         f"it serves: {', '.join(names)}")
    return names


def _probe_prompt(t: Target) -> Tuple[list, Optional[str]]:
    """The probe's prompt: its token ids, and its text (None without a tokenizer). Built before
    any request: loading a tokenizer takes seconds, longer than a server keeps a connection."""
    from orchestrator.models import prompt_token_ids

    ids = prompt_token_ids(PROBE_PROMPT_TOKENS, 0, t.vocab_size)
    return ids, (t.text_of(ids) if t.text_of is not None and t.prompt is not PromptMode.token_ids else None)


async def _completion(session, t: Target, ids: list, text: Optional[str]):
    """One short streamed completion (``text`` when given, else token ids) -> an ``sse.SseStream``."""
    spec = RequestSpec(0, "probe", 0.0, PROBE_PROMPT_TOKENS, PROBE_OUTPUT_TOKENS)
    dialect = Dialect(text_prompts=text is not None, vllm_extras=True, continuous_usage=True)
    body = completion_body(spec, t.endpoint.model, ids, True, "probe-0", dialect, text)
    st = await read_stream(session, t.endpoint, json.dumps(body).encode())
    return st, len(ids)


def _accepted(st, n_ids: int) -> bool:
    """The token-id prompt went through: a complete stream that counted exactly the ids sent."""
    return st.status == 200 and not st.error and st.done and st.prompt_tokens in (None, n_ids)


def _result(t: Target, st, mode: str, served: Tuple[str, ...]) -> ProbeResult:
    if st.usage_tokens is None and not st.ids_seen and not st.continuous_seen:
        raise ProbeError(f"engine.endpoint.base_url={t.endpoint.base_url}: the server reports no token counts (no "
                         "usage, no token ids): output tokens cannot be known")
    times = "token_ids" if st.ids_seen else "continuous_usage" if st.continuous_seen else "chunks"
    return ProbeResult(mode, times, st.usage_tokens is not None, served)


async def probe(t: Target) -> ProbeResult:
    """Probe the endpoint (see module doc); ``ProbeError`` when it cannot be measured."""
    import aiohttp

    ids, text = _probe_prompt(t)
    timeout = aiohttp.ClientTimeout(total=t.timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        served = await _models(session, t)
        if t.prompt is not PromptMode.text:
            st, n = await _completion(session, t, ids, None)
            if _accepted(st, n):
                return _result(t, st, "token_ids", served)
            if t.prompt is PromptMode.token_ids or st.status in (None, 401, 403, 404) or text is None:
                raise _refusal(t, st.status, st.error or f"usage.prompt_tokens={st.prompt_tokens} for {n} token ids")
        st, _ = await _completion(session, t, ids, text)
        if st.status != 200 or st.error or not st.done:
            raise _refusal(t, st.status, st.error or "the stream ended before [DONE]")
        return _result(t, st, "text", served)


def probe_sync(t: Target) -> ProbeResult:
    """``probe`` on a fresh event loop (the driver's pre-launch check, an engine's start)."""
    return asyncio.run(probe(t))
