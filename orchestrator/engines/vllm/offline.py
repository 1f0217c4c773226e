"""vLLM offline engine: static batches through ``vllm.LLM.generate`` in the worker.

``start()`` checks the GPU type (``wrong_gpu``), waits until the GPU has the memory vLLM will ask
for, and builds ``vllm.LLM`` from ``vllm_common.engine_args`` with ``max_num_seqs`` = the largest
batch of the cells sharing this engine. The engine-core process is spawned, not forked
(``VLLM_WORKER_MULTIPROC_METHOD=spawn`` unless set). Start-up output (the frontend's and the
engine-core process's) goes to a log file whose lines classify a failed start (``vllm_log``);
after a start, the quantization method the frontend resolved and the linear kernels the log
names go into the run's extra (``vllm_quantization_method``, ``vllm_linear_kernel``), and the
start's phases (``start_phases``: from opening the log to ``LLM`` returning).

``run(plan)`` sends each static batch as one ``LLM.generate`` call of exactly ``batch_size``
prompts given as token ids, ``SamplingParams(max_tokens=min_tokens=requested, ignore_eos=True,
temperature=0)``. Output tokens are counted from ``token_ids``. Per request, the first-token and
last-token times are vLLM's engine-core timestamps (``RequestOutput.metrics.first_token_ts`` /
``last_token_ts``, ``time.monotonic()`` of the engine-core process: the same system-wide clock
as ours); when vLLM gives none, or one outside the batch's bounds, the first-token time is NaN
and the end is the batch's end (``extra['request_times']`` counts which). Every request of a
batch arrives (and is sent) at the batch's start. The window runs from the first measured
batch's start to the last measured batch's end (warm-up batches excluded), on
``time.monotonic()`` in seconds; the plan's ``BatchSchedule`` decides how many measured batches
run (at least ``num_batches``, more until the window reaches ``min_window_s``). Each batch's
prompts are built just before it runs (a few ms at batch 256).
"""
from __future__ import annotations

import gc
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from orchestrator.client.metrics import RequestRecord, WindowRun
from orchestrator.client.model_files import prompt_digest
from orchestrator.client.workload import RequestSpec, WorkloadPlan
from orchestrator.config.engine_options import Api
from orchestrator.config.groups import WorkloadKind
from orchestrator.engines.base import register_engine
from orchestrator.engines.static_batches import refuse_unless_offline, run_static_batches
from orchestrator.engines.vllm.common import (
    VllmEngine,
    cache_env,
    engine_args,
    log,
    model_path,
    new_log_path,
    output_to,
    sampling_kwargs,
    steps_file_for,
)
from orchestrator.engines.vllm.log import failure_from_log, read_tail
from orchestrator.engines.vllm.step_recorder import logged_steps

if TYPE_CHECKING:
    from orchestrator.config.root import CellConfig

CLOCK_SLACK_S = 1.0  # engine-core timestamps outside [batch start, end] +- this are not trusted


@register_engine("vllm")
class VllmOfflineEngine(VllmEngine):
    """Static batches through ``vllm.LLM.generate`` (see the module doc). Offline cells that
    differ only in batch size share one start (``max_num_seqs`` = their largest batch)."""

    workload_kinds = frozenset({WorkloadKind.offline})
    shared_axes = frozenset({"batch_size", "repeat"})

    @classmethod
    def option_refusal(cls, config: "CellConfig") -> str:
        if config.engine.vllm.api is not Api.completions:
            return (f"engine.vllm.api={config.engine.vllm.api.value}: offline cells run LLM.generate, no API; "
                    "the option applies to open/closed-loop (server) cells")
        return ""

    def __init__(self, config: "CellConfig", max_batch_size: int):
        super().__init__(config, max_batch_size)
        self._llm: Any = None  # a vllm.LLM between start() and stop()
        self._cache_reset: Optional[bool] = None  # the prefix cache was emptied before this cell (None: no cache)
        self._steps_file: Optional[Path] = None  # where vLLM's scheduler logs its steps (record_steps)
        self._request_ids: Dict[str, int] = {}  # vLLM's request id -> the plan's request index

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._claim_gpu()
        self._steps_file = steps_file_for(self.config)
        os.environ.update(cache_env(self.config, self._steps_file))
        # vLLM forks its engine-core process unless told otherwise; forking a Ray worker (gRPC
        # threads) is unsafe, so spawn it (what vLLM itself forces inside Ray actors).
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        self.args = engine_args(self.config, self.max_batch_size, str(model_path(self.config)))
        self._log_path = new_log_path("vllm-offline")
        log.info("vllm_offline: starting vllm.LLM (max_num_seqs=%d); log: %s", self.max_batch_size, self._log_path)
        t0, launched = time.monotonic(), time.time()
        with output_to(self._log_path):
            try:
                from vllm import LLM

                self._llm = LLM(**self.args)
            except Exception as exc:
                err = failure_from_log("vllm.LLM failed to start", read_tail(self._log_path), self._log_path, exc)
                raise err from exc
        self._start_info["vllm_start_s"] = time.monotonic() - t0
        self._note_engine_choices(frontend_quantization(self._llm), launched, time.time())

    def stop(self) -> None:
        llm, self._llm = self._llm, None
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:  # already gone; the worker process exits after its task anyway
            pass
        del llm
        gc.collect()

    # ------------------------------------------------------------------ measuring
    def run(self, plan: WorkloadPlan) -> WindowRun:
        refuse_unless_offline(self.name, plan)
        if plan.batch_size > self.max_batch_size:
            raise ValueError(f"batch {plan.batch_size} > this engine's max_num_seqs {self.max_batch_size}")
        # no state crosses from one cell to the next (nothing is running between cells: it succeeds)
        self._cache_reset = bool(self._llm.reset_prefix_cache()) if self.args.get("enable_prefix_caching") else None
        self._request_ids = {}
        wr = run_static_batches(self.name, plan, lambda specs: self._run_batch(plan, specs),
                                lambda records, schedule: self._extra(records, schedule.bounds), self.progress)
        # the engine core names a request by LLM's id and 8 random characters after a dash
        wr.steps = logged_steps(self._steps_file, wr.records, lambda rid: self._request_ids.get(rid.rsplit("-", 1)[0]))
        return wr

    def _run_batch(self, plan: WorkloadPlan, specs: Sequence[RequestSpec]) -> Tuple[List[RequestRecord], float, float]:
        """One ``LLM.generate`` of the batch's prompts -> (records, send s, end s)."""
        prompts, params = self._inputs(plan, specs)
        t_send, t_done, outs = self._generate(prompts, params)
        self._request_ids.update({str(o.request_id): s.index for s, o in zip(specs, outs)})
        return [self._record(s, o, t_send, t_done, p) for s, o, p in zip(specs, outs, prompts)], t_send, t_done

    def _inputs(self, plan: WorkloadPlan, specs: Sequence[RequestSpec]) -> Tuple[List[Dict], list]:
        """One batch's prompts (token ids) and ``SamplingParams`` (a few ms even at batch 256)."""
        from vllm import SamplingParams

        vocab = int(self.config.model.vocab_size)
        prompts = [{"prompt_token_ids": plan.prompt_ids(s, vocab)} for s in specs]
        return prompts, [SamplingParams(**sampling_kwargs(s, plan.ignore_eos)) for s in specs]

    def _generate(self, prompts: Sequence[Dict], params: Sequence) -> Tuple[float, float, list]:
        """One static batch: -> (start s, end s, RequestOutputs in prompt order)."""
        t_send = time.monotonic()
        try:
            outs = self._llm.generate(prompts, params, use_tqdm=False)
        except Exception as exc:
            err = failure_from_log("LLM.generate failed", read_tail(self._log_path), self._log_path, exc)
            raise err from exc
        return t_send, time.monotonic(), outs

    @staticmethod
    def _record(spec: RequestSpec, out, t_send: float, t_done: float, prompt: Dict) -> RequestRecord:
        n = len(out.outputs[0].token_ids)
        first, end = request_times(getattr(out, "metrics", None), t_send, t_done)
        return RequestRecord(
            index=spec.index, phase=spec.phase, arrival_s=t_send, send_s=t_send, first_token_s=first,
            end_s=end, input_tokens=len(out.prompt_token_ids or []) or spec.input_tokens, output_tokens=n,
            requested_output_tokens=spec.output_tokens, batch_index=spec.batch_index,
            prompt_hash=prompt_digest(prompt["prompt_token_ids"]), cached_tokens=getattr(out, "num_cached_tokens", None),
        )

    def _extra(self, records: List[RequestRecord], bounds) -> Dict:
        from_vllm = sum(1 for r in records if not math.isnan(r.first_token_s))
        return {
            **self._start_info,
            "request_times": {"vllm_metrics": from_vllm, "batch_bounds": len(records) - from_vllm},
            "batch_wall_s": [round(b - a, 6) for _, a, b in bounds],
            "prefix_cache_reset": self._cache_reset,
            "max_num_seqs": self.max_batch_size,
            "engine_args": {k: v for k, v in self.args.items() if k != "model"},
            "log_path": str(self._log_path),
        }


def frontend_quantization(llm) -> Optional[str]:
    """The quantization method the ``LLM`` frontend resolved (vLLM 0.26:
    ``llm.llm_engine.model_config.quantization``, after the checkpoint's override, e.g.
    ``auto_awq``); "none" when it is None; None when the attribute is missing."""
    cfg = getattr(getattr(llm, "llm_engine", None), "model_config", None)
    if cfg is None or not hasattr(cfg, "quantization"):
        return None
    return str(cfg.quantization) if cfg.quantization else "none"


def request_times(stats, t_send: float, t_done: float) -> Tuple[float, float]:
    """(first token s, last token s) from vLLM's ``RequestStateStats`` when present and inside
    the batch's bounds (+- ``CLOCK_SLACK_S``), else (NaN, batch end)."""
    first = float(getattr(stats, "first_token_ts", 0.0) or 0.0)
    last = float(getattr(stats, "last_token_ts", 0.0) or 0.0)
    lo, hi = t_send - CLOCK_SLACK_S, t_done + CLOCK_SLACK_S
    if lo <= first <= last <= hi:
        return first, min(last, t_done)
    return float("nan"), t_done
