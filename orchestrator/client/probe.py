"""What an OpenAI-compatible server accepts and reports, found by asking it once (``engine=endpoint``).

``probe(target)`` sends, through the project's streaming client (``sse.read_stream``):

1. ``GET /v1/models`` (with the key): a connection error is an unreachable URL, 401/403 a bad
   key, a list without ``engine.endpoint.model`` a wrong model name (a server without the route
   skips this step);
2. on ``/v1/completions`` (``api=completions``, or ``auto``): a short streamed completion with
   the prompt as **token ids** (asking for vLLM's extras and continuous usage stats), taken when
   the server answers 200, completes the stream and, where it reports ``usage.prompt_tokens``,
   counts exactly the ids sent; otherwise the same prompt as **text** (exact length under the
   cell's tokenizer, ``prompts``);
3. on ``/v1/chat/completions`` (``api=chat``, or ``auto`` where the server has no completions
   route: HTTP 404 or 405 without naming the model): one user message holding the text prompt.

A server that refuses a request's body (HTTP 4xx other than 401/403/404/405: a strict server
refuses fields it does not know, and its message says which) is asked again in the same mode with
the OpenAI fields only (no ``return_token_ids``, ``request_id``, ``ignore_eos``, ``min_tokens``,
continuous usage stats): output lengths are then not forced (``max_tokens`` bounds them) and the
refusal is kept in the result's notes. A stream is complete at ``[DONE]`` or at a finish reason
and the end of the stream.

The answer (``ProbeResult``) says the API (``completions`` | ``chat``), the prompt mode
(``token_ids`` | ``text``), the request fields it ended with (``vllm`` | ``openai``:
``ProbeResult.request_dialect``), where per-token times come from (``token_ids``,
``continuous_usage``, or ``chunks``: one stamp per chunk, ITL per chunk) and where output token
counts come from (``usage``, ``token_ids``, ``continuous_usage``, or ``tokenized``: the streamed
text under the model's tokenizer, for a server that reports no count). Every refusal is a
``ProbeError`` (a ``ConfigError``: one line, exit 2 before the sweep) naming what is missing: the
route, the key, the model, the field the server refused, a tokenizer. The API key is sent in a
header and never appears in a message.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence, Tuple

from orchestrator.client.endpoint import CHAT, COMPLETIONS, ROUTES, Dialect, Endpoint
from orchestrator.client.model_files import prompt_token_ids
from orchestrator.client.sse import read_stream
from orchestrator.client.stream import request_body
from orchestrator.client.workload import RequestSpec
from orchestrator.config.engine_options import Api, PromptMode
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
    served_models: Tuple[str, ...] = ()
    vllm_extras: bool = True  # False: the server refused vLLM's fields, requests carry OpenAI's only
    api: str = COMPLETIONS  # completions | chat
    token_count_source: str = "usage"  # usage | token_ids | continuous_usage | tokenized
    notes: Tuple[str, ...] = ()  # what the probe found missing or refused on its way (one line each)

    @property
    def reports_usage(self) -> bool:
        """The server reports usage.completion_tokens (the count comes from it)."""
        return self.token_count_source == "usage"

    @property
    def dialect(self) -> Dialect:
        return _dialect(self.prompt_mode == "text", self.vllm_extras)

    @property
    def request_dialect(self) -> str:
        """``vllm`` or ``openai``: the request fields the cells send (``Dialect.name``)."""
        return self.dialect.name

    def describe(self) -> str:
        itl = " (ITL per chunk)" if self.token_times == "chunks" else ""
        fields = "" if self.vllm_extras else ", OpenAI fields only (vLLM's extra fields refused: output lengths not forced)"
        count = f", output tokens counted from {self.token_count_source}" if self.token_count_source != "usage" else ""
        notes = f" [{'; '.join(self.notes)}]" if self.notes else ""
        return (f"{ROUTES[self.api]}, prompts as {self.prompt_mode.replace('_', ' ')}, token times from "
                f"{self.token_times}{itl}{count}{fields}{notes}")


def _dialect(text_prompts: bool, vllm_extras: bool) -> Dialect:
    """vLLM's extras ask for continuous usage stats too; the OpenAI fields only ask for neither."""
    return Dialect(text_prompts=text_prompts, vllm_extras=vllm_extras, continuous_usage=vllm_extras)


@dataclass(frozen=True)
class Target:
    """What to probe: the endpoint (its key already read), the prompt mode and API asked for, the
    model's vocabulary size (token-id prompts), ``text_of(ids)`` (text prompts; None: none),
    ``count_text(text)`` (counting a response's tokens; None: no tokenizer), and the config key
    naming the key's variable (for messages)."""

    endpoint: Endpoint
    prompt: PromptMode = PromptMode.auto
    vocab_size: int = 32000
    text_of: Optional[Callable[[Sequence[int]], str]] = None
    api_key_env: str = ""
    timeout_s: float = 30.0
    api: Api = Api.auto
    count_text: Optional[Callable[[str], int]] = None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:MESSAGE_CHARS]


def _refusal(t: Target, status: Optional[int], error: str, route: str = "") -> ProbeError:
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
    if _route_missing(status, error):
        return ProbeError(f"engine.endpoint.base_url={url}: the server has no {route} route (HTTP {status})")
    return ProbeError(f"engine.endpoint.base_url={url}: the probe request to {route} failed: {_one_line(error)}")


def _route_missing(status: Optional[int], error: str) -> bool:
    """404/405 that does not name the model: the route does not exist there."""
    return status in (404, 405) and "model" not in error.lower()


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
    except ProbeError:  # (a ValueError too) the key, the server: said above
        raise
    except ValueError:  # not JSON: a server that is not OpenAI-compatible there
        return ()
    if names and t.endpoint.model not in names:
        raise ProbeError(f"engine.endpoint.model={t.endpoint.model}: not served at {t.endpoint.base_url}; "
                         f"it serves: {', '.join(names)}")
    return names


def _probe_prompt(t: Target) -> Tuple[list, Optional[str], str]:
    """The probe's prompt: its token ids, its text (None without one) and why there is no text
    ('' when there is, or none was asked for). Built before any request: loading a tokenizer takes
    seconds, longer than a server keeps a connection. A tokenizer that cannot load (no
    transformers: the base install) leaves token ids to try; the reason is raised only if text is
    needed."""
    ids = prompt_token_ids(PROBE_PROMPT_TOKENS, 0, t.vocab_size)
    if t.text_of is None or t.prompt is PromptMode.token_ids:
        return ids, None, "text prompts need a tokenizer (engine.endpoint.tokenizer)"
    try:
        return ids, t.text_of(ids), ""
    except ConfigError as exc:
        return ids, None, str(exc)


async def _request(session, t: Target, endpoint: Endpoint, ids: list, text: Optional[str], vllm_extras: bool):
    """One short streamed request (``text`` when given, else token ids) -> an ``sse.SseStream``."""
    spec = RequestSpec(0, "probe", 0.0, PROBE_PROMPT_TOKENS, PROBE_OUTPUT_TOKENS)
    dialect = _dialect(text is not None, vllm_extras)
    body = request_body(spec, endpoint, ids, True, "probe-0", dialect, text)
    return await read_stream(session, endpoint, json.dumps(body).encode(), dialect.continuous_usage,
                             keep_text=t.count_text is not None)


def _accepted(st, n_ids: Optional[int]) -> bool:
    """A complete stream that, for a token-id prompt (``n_ids``), counted exactly the ids sent."""
    return st.status == 200 and not st.error and st.complete and (n_ids is None or st.prompt_tokens in (None, n_ids))


def _body_refused(st) -> bool:
    """The server refused the request's body (a 4xx other than a key or route problem)."""
    return st.status is not None and 400 <= st.status < 500 and st.status not in (401, 403, 404, 405)


def _why(st, n_ids: Optional[int]) -> str:
    if st.error:
        return st.error
    if n_ids is not None and st.complete:
        return f"usage.prompt_tokens={st.prompt_tokens} for {n_ids} token ids"
    return "the stream ended before [DONE] or a finish reason"


def _result(t: Target, st, endpoint: Endpoint, mode: str, vllm_extras: bool, served: Tuple[str, ...],
            notes: Tuple[str, ...]) -> ProbeResult:
    per_token = st.tokens_known and (st.ids_seen or st.continuous_seen)
    if st.usage_tokens is not None:
        counted = "usage"
    elif per_token:
        counted = "token_ids" if st.ids_seen else "continuous_usage"
    elif t.count_text is not None:
        counted = "tokenized"
        t.count_text("".join(st.text))  # the tokenizer loads (ConfigError: one line, e.g. no transformers)
    else:
        raise ProbeError(f"engine.endpoint.base_url={t.endpoint.base_url}: the server reports no token counts (no "
                         "usage, no token ids) and there is no tokenizer to count its text: set engine.endpoint.tokenizer")
    times = ("token_ids" if st.ids_seen else "continuous_usage") if per_token else "chunks"
    return ProbeResult(mode, times, served, vllm_extras, endpoint.api, counted, notes)


async def _try_mode(session, t: Target, endpoint: Endpoint, ids: list, text: Optional[str],
                    served: Tuple[str, ...], notes: Tuple[str, ...]):
    """One prompt mode on one route (``text``, else token ids): with vLLM's extras, then with the
    OpenAI fields only where the server refused the body. -> (ProbeResult or None, the last stream)."""
    n_ids = None if text is not None else len(ids)
    for vllm_extras in (True, False):
        st = await _request(session, t, endpoint, ids, text, vllm_extras)
        if _accepted(st, n_ids):
            mode = "token_ids" if text is None else "text"
            return _result(t, st, endpoint, mode, vllm_extras, served, notes), st
        if not _body_refused(st):
            break
        notes = (*notes, f"{ROUTES[endpoint.api]} refused vLLM's fields: {_one_line(st.error or '')}")
    return None, st


def _modes(t: Target, api: str, text: Optional[str]) -> list:
    """The prompt modes to try on a route (None: token ids; a string: that text)."""
    if api == CHAT:
        return [text] if text is not None else []
    return ([None] if t.prompt is not PromptMode.text else []) + ([text] if text is not None else [])


async def _probe_routes(session, t: Target, ids: list, text: Optional[str], no_text: str,
                        served: Tuple[str, ...]) -> ProbeResult:
    """Each route the API setting allows, each prompt mode on it (see module doc); ``auto`` goes
    on to chat only where the server has no completions route."""
    if t.api is Api.auto:  # chat sends text: with token-id prompts forced, completions only
        apis = [COMPLETIONS] if t.prompt is PromptMode.token_ids else [COMPLETIONS, CHAT]
    else:
        apis = [t.api.value]
    notes: Tuple[str, ...] = ()
    missing: list = []  # routes the server does not have
    for api in apis:
        endpoint = replace(t.endpoint, api=api)
        modes = _modes(t, api, text)
        if not modes:
            why = f" (the server has no {', '.join(missing)})" if missing else ""
            raise ProbeError(f"engine.endpoint.api={t.api.value}: {ROUTES[api]} sends text prompts{why}: {no_text}")
        for mode_text in modes:
            result, st = await _try_mode(session, t, endpoint, ids, mode_text, served, notes)
            if result is not None:
                return result
            error = st.error or ""
            if _route_missing(st.status, error):
                missing.append(f"{ROUTES[api]} (HTTP {st.status})")
                notes = (*notes, f"no {ROUTES[api]} (HTTP {st.status})")
                break  # another prompt mode would not help: the next route
            if st.status in (None, 401, 403, 404):  # no answer, the key, the model: nothing else would help
                raise _refusal(t, st.status, error, ROUTES[api])
            last = _refusal(t, st.status, _why(st, None if mode_text is not None else len(ids)), ROUTES[api])
        else:  # every prompt mode failed on a route the server has: its reason, not another route's
            if text is None and t.prompt is not PromptMode.token_ids and no_text:
                raise ProbeError(f"{last}; text prompts instead: {no_text}")  # e.g. token ids refused, no tokenizer
            raise last
    raise ProbeError(f"engine.endpoint.base_url={t.endpoint.base_url}: the server has no {' and no '.join(missing)} "
                     "route")


async def probe(t: Target) -> ProbeResult:
    """Probe the endpoint (see module doc); ``ProbeError`` when it cannot be measured."""
    import aiohttp

    ids, text, no_text = _probe_prompt(t)
    if t.prompt is PromptMode.text and text is None:
        raise ProbeError(f"engine.endpoint.prompt=text: {no_text}")
    timeout = aiohttp.ClientTimeout(total=t.timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        served = await _models(session, t)
        return await _probe_routes(session, t, ids, text, no_text, served)


def probe_sync(t: Target) -> ProbeResult:
    """``probe`` on a fresh event loop (the driver's pre-launch check, an engine's start)."""
    return asyncio.run(probe(t))
