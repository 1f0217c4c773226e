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

A server that refuses a request's body (HTTP 4xx other than 401/403/404: a strict server refuses
fields it does not know) is asked again in the same prompt mode with the OpenAI fields only (no
``return_token_ids``, ``request_id``, ``ignore_eos``, ``min_tokens``, continuous usage stats).

The answer (``ProbeResult``) says the prompt mode (``token_ids`` | ``text``), the request fields
it ended with (``vllm`` | ``openai``: ``ProbeResult.request_dialect``) and where per-token times
come from: ``token_ids`` (chunks name their ids), ``continuous_usage`` (chunks carry usage) or
``chunks`` (neither: one stamp per chunk, ITL per chunk). A server that reports no token count
at all (no usage, no ids) is refused: no request's output tokens could be known. Every refusal is
a ``ProbeError`` (a ``ConfigError``: one line, exit 2 before the sweep). The API key is sent in a
header and never appears in a message.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

from orchestrator.client.endpoint import Dialect, Endpoint
from orchestrator.client.model_files import prompt_token_ids
from orchestrator.client.sse import read_stream
from orchestrator.client.stream import completion_body
from orchestrator.client.workload import RequestSpec
from orchestrator.config.engine_options import PromptMode
from orchestrator.errors import ConfigError

PROBE_PROMPT_TOKENS = 8
PROBE_OUTPUT_TOKENS = 4
MESSAGE_CHARS = 200


class ProbeError(ConfigError):
    """The endpoint cannot be measured (unreachable, bad key, wrong model, no token counts)."""


@dataclass(frozen=True)
class ProbeResult:
    prompt_mode: str  # token_ids | text
    token_times: str  # token_ids | continuous_usage | chunks
    reports_usage: bool  # the final chunk carries usage.completion_tokens
    served_models: Tuple[str, ...] = ()
    vllm_extras: bool = True  # False: the server refused vLLM's fields, requests carry OpenAI's only

    @property
    def dialect(self) -> Dialect:
        return _dialect(self.prompt_mode == "text", self.vllm_extras)

    @property
    def request_dialect(self) -> str:
        """``vllm`` or ``openai``: the request fields the cells send (``Dialect.name``)."""
        return self.dialect.name

    def describe(self) -> str:
        itl = " (ITL per chunk)" if self.token_times == "chunks" else ""
        fields = "" if self.vllm_extras else ", OpenAI fields only (vLLM's extra fields refused)"
        return f"prompts as {self.prompt_mode.replace('_', ' ')}, token times from {self.token_times}{itl}{fields}"


def _dialect(text_prompts: bool, vllm_extras: bool) -> Dialect:
    """vLLM's extras ask for continuous usage stats too; the OpenAI fields only ask for neither."""
    return Dialect(text_prompts=text_prompts, vllm_extras=vllm_extras, continuous_usage=vllm_extras)


@dataclass(frozen=True)
class Target:
    """What to probe: the endpoint (its key already read), the prompt mode asked for, the
    model's vocabulary size (token-id prompts), ``text_of(ids)`` (text prompts; None: none),
    and the config key naming the key's variable (for messages)."""

    endpoint: Endpoint
    prompt: PromptMode = PromptMode.auto
    vocab_size: int = 32000
    text_of: Optional[Callable[[Sequence[int]], str]] = None
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
    ids = prompt_token_ids(PROBE_PROMPT_TOKENS, 0, t.vocab_size)
    return ids, (t.text_of(ids) if t.text_of is not None and t.prompt is not PromptMode.token_ids else None)


async def _completion(session, t: Target, ids: list, text: Optional[str], vllm_extras: bool):
    """One short streamed completion (``text`` when given, else token ids) -> an ``sse.SseStream``."""
    spec = RequestSpec(0, "probe", 0.0, PROBE_PROMPT_TOKENS, PROBE_OUTPUT_TOKENS)
    body = completion_body(spec, t.endpoint.model, ids, True, "probe-0", _dialect(text is not None, vllm_extras), text)
    return await read_stream(session, t.endpoint, json.dumps(body).encode())


def _accepted(st, n_ids: Optional[int]) -> bool:
    """A complete stream that, for a token-id prompt (``n_ids``), counted exactly the ids sent."""
    return st.status == 200 and not st.error and st.done and (n_ids is None or st.prompt_tokens in (None, n_ids))


def _body_refused(st) -> bool:
    """The server refused the request's body (a 4xx other than a key or route problem)."""
    return st.status is not None and 400 <= st.status < 500 and st.status not in (401, 403, 404)


def _why(st, n_ids: Optional[int]) -> str:
    if st.error:
        return st.error
    if n_ids is not None and st.done:
        return f"usage.prompt_tokens={st.prompt_tokens} for {n_ids} token ids"
    return "the stream ended before [DONE]"


def _result(t: Target, st, mode: str, vllm_extras: bool, served: Tuple[str, ...]) -> ProbeResult:
    if st.usage_tokens is None and not st.ids_seen and not st.continuous_seen:
        raise ProbeError(f"engine.endpoint.base_url={t.endpoint.base_url}: the server reports no token counts (no "
                         "usage, no token ids): output tokens cannot be known")
    times = "token_ids" if st.ids_seen else "continuous_usage" if st.continuous_seen else "chunks"
    return ProbeResult(mode, times, st.usage_tokens is not None, served, vllm_extras)


async def _try_mode(session, t: Target, ids: list, text: Optional[str], served: Tuple[str, ...]):
    """One prompt mode (``text``, else token ids): with vLLM's extras, then with the OpenAI fields
    only where the server refused the body. -> (ProbeResult or None, the last stream)."""
    n_ids = None if text is not None else len(ids)
    for vllm_extras in (True, False):
        st = await _completion(session, t, ids, text, vllm_extras)
        if _accepted(st, n_ids):
            return _result(t, st, "token_ids" if text is None else "text", vllm_extras, served), st
        if not _body_refused(st):
            break
    return None, st


async def probe(t: Target) -> ProbeResult:
    """Probe the endpoint (see module doc); ``ProbeError`` when it cannot be measured."""
    import aiohttp

    ids, text = _probe_prompt(t)
    modes = ([None] if t.prompt is not PromptMode.text else []) + ([text] if text is not None else [])
    if not modes:
        raise ProbeError("engine.endpoint.prompt=text: text prompts need a tokenizer (engine.endpoint.tokenizer)")
    timeout = aiohttp.ClientTimeout(total=t.timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        served = await _models(session, t)
        for mode_text in modes:
            result, st = await _try_mode(session, t, ids, mode_text, served)
            if result is not None:
                return result
            if st.status in (None, 401, 403, 404):  # no answer, the key, the route: text would not help
                break
        raise _refusal(t, st.status, _why(st, None if mode_text is not None else len(ids)))


def probe_sync(t: Target) -> ProbeResult:
    """``probe`` on a fresh event loop (the driver's pre-launch check, an engine's start)."""
    return asyncio.run(probe(t))
