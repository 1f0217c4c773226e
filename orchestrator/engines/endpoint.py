"""``engine=endpoint``: measure an OpenAI-compatible server that is already running (a user's own
vLLM, SGLang, TGI...) with the project's workloads, client, metrics, energy and reports.

The server is ``engine.endpoint.base_url`` serving ``engine.endpoint.model`` (default:
``model.name``); its API key is read from the environment variable named by
``engine.endpoint.api_key_env`` (on the driver for the pre-launch probe, on the worker for the
cells) and only ever travels in a request header: the config, the store, the logs and the
report hold the variable's name, never the key.

Before launch (``check_before_launch``, on the driver): a sweep over ``batch_size`` is refused
(the server schedules its own batches), and every distinct endpoint is probed once
(``endpoint_probe``): an unreachable URL, a wrong model name or a bad key is one line and exit 2.
At ``start()`` on the worker the endpoint is probed again (what that node sees decides the
modes) and the modes go into every cell's row: ``prompt_mode``, ``token_times_source``,
``request_dialect`` (``vllm``: vLLM's extra fields sent; ``openai``: the server refused them,
OpenAI's fields only), and ``n_prompt_tokens_mismatch`` (ok requests whose
``usage.prompt_tokens`` differs from the count expected under the tokenizer: the ids sent, or the
text's tokens with the server's special ones).

``run(plan)`` drives the plan with ``client.StreamingClient`` in the probed dialect. Requests
that fail are error rows; when the server stopped answering during the cell (or every measured
request failed) the cell's status is ``engine_error`` and its request rows are kept. Energy:
with ``engine.endpoint.gpu_uuids`` the cell's task runs on the Ray node holding those GPUs
(``placement_gpu_uuids``) and the sampler sums them (``energy.nvml.GpuSetSampler``); without, energy is
null with the reason.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from orchestrator.client.endpoint import CHAT, Endpoint
from orchestrator.client.metrics import WindowRun
from orchestrator.client.model_files import prompt_digest
from orchestrator.client.probe import ProbeResult, Target, probe_sync
from orchestrator.client.prompts import TextPrompts, tokenizer_dir
from orchestrator.client.stream import StreamingClient
from orchestrator.client.workload import WorkloadPlan
from orchestrator.config.engine_options import EndpointOptions, PromptMode
from orchestrator.config.groups import WorkloadKind
from orchestrator.core.phases import Phase
from orchestrator.engines.base import Engine, GpuUse, register_engine
from orchestrator.errors import CellFailure, ConfigError, Status, first_line

if TYPE_CHECKING:
    from orchestrator.client.prompts import TextPrompts
    from orchestrator.config.root import CellConfig

log = logging.getLogger(__name__)
REACHABLE_TIMEOUT_S = 5.0


def api_key(opts: EndpointOptions) -> Optional[str]:
    """The key from the environment variable ``opts.api_key_env`` names (None: no key asked);
    ``ConfigError`` when the variable is named but not set in this process."""
    if not opts.api_key_env:
        return None
    key = os.environ.get(opts.api_key_env)
    if not key:
        raise ConfigError(f"engine.endpoint.api_key_env={opts.api_key_env}: that environment variable is not set")
    return key


def probe_target(config: "CellConfig") -> Tuple[Target, "TextPrompts"]:
    """The probe target of a cell's endpoint (its key read here) and its prompts helper (the
    cell's tokenizer, loaded on first use: text prompts, chat messages, counting a response)."""
    opts = config.engine.endpoint
    if not opts.base_url:
        raise ConfigError("engine.endpoint.base_url: required with engine=endpoint (e.g. http://127.0.0.1:8000)")
    prompts = TextPrompts(tokenizer_dir(config))
    text_of = prompts.text if opts.prompt is not PromptMode.token_ids else None
    endpoint = Endpoint(opts.base_url.rstrip("/"), opts.model or config.model.name, api_key(opts))
    return Target(endpoint, opts.prompt, int(config.model.vocab_size), text_of, opts.api_key_env,
                  float(opts.probe_timeout_s), opts.api, prompts.count), prompts


@register_engine("endpoint")
class EndpointEngine(Engine):
    """A running OpenAI-compatible server, measured by the streaming client (see module doc)."""

    quantizations = frozenset({"none", "awq", "gptq", "int8", "fp8"})  # the server's own business
    workload_kinds = frozenset({WorkloadKind.open_loop, WorkloadKind.closed_loop})
    shared_axes = frozenset({"workload", "repeat"})
    gpu = GpuUse.none
    starts_processes = False
    hosts_model = False
    options: EndpointOptions

    @classmethod
    def check_before_launch(cls, configs: List["CellConfig"]) -> List[str]:
        """Refuse a batch-size sweep; probe every distinct endpoint once (``ProbeError``)."""
        sizes = sorted({int(c.batch_size) for c in configs})
        if len(sizes) > 1:
            raise ConfigError(f"batch_size={','.join(map(str, sizes))}: engine=endpoint measures a server that "
                              "schedules its own batches; sweep workload.rate_rps or workload.concurrency instead")
        lines, seen = [], set()
        for c in configs:
            opts = c.engine.endpoint
            key = (opts.base_url, opts.model or c.model.name, opts.api_key_env, opts.prompt, opts.api, opts.tokenizer,
                   c.model.name, c.model.path)
            if key in seen:
                continue
            seen.add(key)
            target, _ = probe_target(c)
            result = probe_sync(target)
            lines.append(f"engine=endpoint: {target.endpoint.base_url} serves {target.endpoint.model}: "
                         f"{result.describe()}")
        return lines

    @classmethod
    def placement_gpu_uuids(cls, config: "CellConfig") -> Tuple[str, ...]:
        """The server's GPUs, where a GPU sampler measures them (``sampler=nvml`` or ``auto``)."""
        if config.sampler.name not in ("nvml", "auto"):
            return ()
        return tuple(config.engine.endpoint.gpu_uuids)

    def __init__(self, config: "CellConfig", max_batch_size: int):
        super().__init__(config, max_batch_size)
        self._target: Optional[Target] = None
        self._prompts: Optional["TextPrompts"] = None
        self.result: Optional[ProbeResult] = None
        self._expected: Dict[str, int] = {}  # prompt digest -> prompt tokens the server should count
        self._start_info: Dict = {}

    def start(self) -> None:
        """Read the key, probe the endpoint from this node (the tokenizer loads on first use)."""
        t0 = time.monotonic()
        try:
            self._target, self._prompts = probe_target(self.config)
            self.result = probe_sync(self._target)
        except ConfigError as exc:  # ProbeError included: the server changed, or this node sees another
            raise CellFailure(Status.engine_error, f"endpoint probe from the worker failed: {exc}") from None
        self._start_info = {"endpoint_probe_s": time.monotonic() - t0, "endpoint_url": self._target.endpoint.base_url,
                            "endpoint_model": self._target.endpoint.model,
                            "endpoint_served_models": list(self.result.served_models),
                            "endpoint_probe_notes": list(self.result.notes)}
        log.info("endpoint: %s serves %s: %s", self._target.endpoint.base_url, self._target.endpoint.model,
                 self.result.describe())

    def _probed(self) -> Tuple[Target, ProbeResult, "TextPrompts"]:
        """The target, what probing it found in ``start()`` and the prompts helper (``RuntimeError``
        before it)."""
        if self._target is None or self.result is None or self._prompts is None:
            raise RuntimeError("engine=endpoint: run before start() probed the endpoint")
        return self._target, self.result, self._prompts

    @property
    def _chat(self) -> bool:
        return self._probed()[1].api == CHAT

    def _text_of(self) -> Optional[Callable[[Sequence[int]], str]]:
        """A request's text prompt (exact length under the tokenizer), noting what the server
        should count; None when prompts travel as token ids."""
        result, prompts = self._probed()[1:]
        if result.prompt_mode != "text":
            return None
        chat = self._chat

        def text_of(ids: Sequence[int]) -> str:
            text = prompts.text(ids)
            self._expected[prompt_digest(ids)] = prompts.chat_count(text) if chat else prompts.server_count(text)
            return text

        return text_of

    def _ids_of(self, plan: WorkloadPlan):
        """A request's prompt ids (a chat prompt: as many fewer as its template adds, so the
        server sees the workload's length); as token ids, the server should count exactly them."""
        vocab = int(self.config.model.vocab_size)
        result, prompts = self._probed()[1:]
        overhead = prompts.chat_overhead() if self._chat else 0

        def ids_of(spec):
            ids = plan.prompt_ids(spec, vocab)
            if overhead:
                ids = ids[:max(1, len(ids) - overhead)]
            if result.prompt_mode != "text":
                self._expected[prompt_digest(ids)] = len(ids)
            return ids

        return ids_of

    def _client(self, plan: WorkloadPlan):
        target, result, prompts = self._probed()
        counting = prompts.count if result.token_count_source == "tokenized" else None
        return StreamingClient(replace(target.endpoint, api=result.api), self._ids_of(plan),
                               request_timeout_s=float(self.options.request_timeout_s), progress=self.progress,
                               dialect=result.dialect, prompt_text=self._text_of(), count_text=counting)

    def run(self, plan: WorkloadPlan) -> WindowRun:
        if plan.offline:
            raise ValueError("engine=endpoint runs open/closed-loop plans")
        self.progress(Phase.warmup)
        cr = asyncio.run(self._client(plan).run(plan))
        result, prompts = self._probed()[1:]
        extra = {**self._start_info, **cr.extra, "endpoint_prompt_mode": result.prompt_mode,
                 "endpoint_token_times": result.token_times, "endpoint_request_dialect": result.request_dialect,
                 "api": result.api, "token_count_source": result.token_count_source,
                 "chat_template_tokens": prompts.chat_overhead() if self._chat else None,
                 "output_lengths_forced": bool(result.vllm_extras and plan.ignore_eos),
                 "endpoint_prompt_tokens_mismatch": self._mismatches(cr.records)}
        return WindowRun(cr.records, cr.window_start_s, cr.window_end_s, extra=extra,
                         drain_timeout_s=plan.drain_timeout_s, drain_s=cr.drain_s, failure=self._failure(cr.records))

    def _mismatches(self, records) -> int:
        """Ok requests whose ``usage.prompt_tokens`` differs from the count expected."""
        n = 0
        for r in records:
            if r.status == "ok" and r.prompt_tokens_reported is not None:
                want = self._expected.get(r.prompt_hash)
                n += want is not None and r.prompt_tokens_reported != want
        return n

    def _failure(self, records) -> Optional[Tuple[str, str]]:
        """(status, error) when the server failed during the cell: every measured request failed,
        or some failed and the server no longer answers; else None (failed requests are data)."""
        measured = [r for r in records if r.phase == "measured"]
        failed = [r for r in measured if r.status == "error"]
        if not failed:
            return None
        gone = not self._reachable()
        if not gone and len(failed) < len(measured):
            return None
        why = "the server no longer answers" if gone else "every measured request failed"
        return (Status.engine_error.value, f"endpoint failed during the cell: {why}; {len(failed)} of {len(measured)} "
                f"measured requests failed (first: {first_line(failed[0].error) if failed[0].error else '?'})")

    def _reachable(self) -> bool:
        """Any HTTP answer from the server (its ``/v1/models``) within ``REACHABLE_TIMEOUT_S``."""
        import urllib.error
        import urllib.request

        endpoint = self._probed()[0].endpoint
        req = urllib.request.Request(endpoint.base_url + "/v1/models", headers=endpoint.headers())
        try:
            with urllib.request.urlopen(req, timeout=REACHABLE_TIMEOUT_S):
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def energy_gpu_uuids(self) -> Tuple[str, ...]:
        return tuple(self.options.gpu_uuids)

    def no_energy_reason(self) -> str:
        return ("engine endpoint: the server's GPUs are not named (engine.endpoint.gpu_uuids=[GPU-...] with "
                "sampler=nvml): energy not measured")
