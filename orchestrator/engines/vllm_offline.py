"""vLLM offline engine: static batches through ``vllm.LLM.generate`` in the worker (DESIGN §4, §6).

``start()`` checks the GPU type (``wrong_gpu``), waits until the GPU has the memory vLLM will ask
for, and builds ``vllm.LLM`` from ``engine_args`` — the same dictionary the server engine turns
into ``vllm serve`` flags, so both modes run with the same engine arguments: the model directory
from ``models.model_dir`` with ``load_format="dummy"``, ``max_num_seqs`` = the largest batch of
the cells sharing this engine (cells that differ only in offline batch size share one start), the
knobs of ``engine.vllm``, ``quantization`` from ``quantization.vllm_quantization``, the seed, and
``disable_log_stats=False`` (vLLM only keeps per-request timestamps with stats on). vLLM's compile
cache lives in ``engine.vllm.compile_cache_dir`` (``VLLM_CACHE_ROOT``), kept between cells; the
engine-core process is spawned, not forked (``VLLM_WORKER_MULTIPROC_METHOD=spawn`` unless set).
Start-up output (the frontend's and the engine-core process's) goes to a log file whose tail
classifies a failed start: ``oom``, ``kv_cache_too_small``, ``unsupported``, else an engine error.

``run(plan)`` sends each static batch as one ``LLM.generate`` call of exactly ``batch_size``
prompts given as token ids, ``SamplingParams(max_tokens=min_tokens=requested, ignore_eos=True,
temperature=0)``. Output tokens are counted from ``token_ids``. Per request, the first-token and
last-token times are vLLM's engine-core timestamps (``RequestOutput.metrics.first_token_ts`` /
``last_token_ts``, ``time.monotonic()`` of the engine-core process: the same system-wide clock
as ours); when vLLM gives none, or one outside the batch's bounds, the first-token time is NaN
and the end is the batch's end (``extra['request_times']`` counts which). Every request of a
batch arrives (and is sent) at the batch's start. The window runs from the first measured
batch's start to the last measured batch's end (warm-up batches excluded), on
``time.monotonic()`` in seconds.

The pure helpers in the middle section are shared with ``vllm_server`` (and the benchmark).
``vllm`` and ``torch`` are imported inside functions only.
"""
from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from orchestrator.engines.base import Engine
from orchestrator.errors import CellFailure
from orchestrator.metrics import RequestRecord, WindowRun
from orchestrator.workload import RequestSpec, WorkloadPlan

LOG_DIR_ENV = "ORCHESTRATOR_LOG_DIR"
LOG_TAIL_BYTES = 64 * 1024
CLOCK_SLACK_S = 1.0  # engine-core timestamps outside [batch start, end] +- this are not trusted
MEMORY_MARGIN_MIB = 512.0
MEMORY_WAIT_S = 60.0

# ============================================================================ shared helpers


def engine_args(config: Mapping, max_num_seqs: int, model_path: str) -> Dict:
    """The ``vllm.EngineArgs`` fields of a cell (``LLM(**args)``; ``serve_flags`` for the CLI).

    ``max_num_seqs``: the most sequences vLLM runs at once (offline: the largest batch of the
    cells sharing the engine; server: the cell's batch size)."""
    opts, quant = config["engine"]["vllm"], config["quantization"]
    args = {
        "model": str(model_path),
        "load_format": "auto" if config["model"].get("weights") == "real" else "dummy",
        "max_num_seqs": int(max_num_seqs),
        "enforce_eager": bool(opts["enforce_eager"]),
        "enable_chunked_prefill": bool(opts["enable_chunked_prefill"]),
        "scheduling_policy": opts["scheduling_policy"],
        "gpu_memory_utilization": float(opts["gpu_memory_utilization"]),
        "max_model_len": int(opts["max_model_len"]),
        "dtype": opts["dtype"],
        "seed": int(config["workload"]["seed"]),
        "disable_log_stats": False,
    }
    if opts.get("max_num_batched_tokens"):
        args["max_num_batched_tokens"] = int(opts["max_num_batched_tokens"])
    if quant.get("vllm_quantization"):
        args["quantization"] = quant["vllm_quantization"]
    args.update(parse_extra_args(opts.get("extra_args") or {}))
    return args


def parse_extra_args(extra: Mapping[str, str]) -> Dict:
    """``engine.vllm.extra_args`` (strings from YAML/CLI) -> EngineArgs fields: keys in
    snake_case, values parsed as YAML scalars (``"true"`` -> True, ``"8192"`` -> 8192)."""
    import yaml

    out = {}
    for key, value in extra.items():
        name = str(key).lstrip("-").replace("-", "_")
        out[name] = yaml.safe_load(value) if isinstance(value, str) else value
    return out


STORE_TRUE_FLAGS = ("disable_log_stats",)  # plain switches: no --no-<flag> form


def serve_flags(args: Mapping) -> List[str]:
    """``vllm serve`` flags for EngineArgs fields (the model is positional, not here): booleans
    as ``--x`` / ``--no-x`` (vLLM's BooleanOptionalAction), dicts and lists as JSON."""
    out: List[str] = []
    for key, value in args.items():
        if key == "model" or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                out.append(flag)
            elif key not in STORE_TRUE_FLAGS:
                out.append("--no-" + flag[2:])
        elif isinstance(value, (dict, list)):
            out += [flag, json.dumps(value)]
        else:
            out += [flag, str(value)]
    return out


def cache_env(config: Mapping) -> Dict[str, str]:
    """Environment of a vLLM engine: its compile cache (torch.compile artefacts) in
    ``engine.vllm.compile_cache_dir`` (``VLLM_CACHE_ROOT``, kept between cells; vLLM's default
    when the option is empty), no usage reporting, and no model hub (models are local)."""
    env = {"VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"}
    d = config["engine"]["vllm"].get("compile_cache_dir")
    if d:
        path = Path(os.path.expanduser(d))
        path.mkdir(parents=True, exist_ok=True)
        env["VLLM_CACHE_ROOT"] = str(path)
    return env


def model_path(config: Mapping) -> Path:
    from orchestrator.models import model_dir

    return model_dir(config["model"], config["quantization"])


from orchestrator.models import prompt_ids  # noqa: E402  (shared by every engine)


def sampling_kwargs(spec: RequestSpec, ignore_eos: bool) -> Dict:
    """``SamplingParams`` fields of one request: exactly ``spec.output_tokens`` new tokens with
    ``ignore_eos`` (min = max), greedy, no detokenisation (tokens are counted from ids)."""
    n = int(spec.output_tokens)
    return {"max_tokens": n, "min_tokens": n if ignore_eos else 0, "ignore_eos": bool(ignore_eos),
            "temperature": 0.0, "detokenize": False}


# Log lines -> statuses, checked in this order (lower-case substrings).
LOG_PATTERNS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("unsupported", (
        "is not supported for the current gpu",
        "is not supported for quantization method",
        "unknown quantization method",
        "quantization is currently not supported",
        "bfloat16 is only supported on gpus with compute capability",
    )),
    ("kv_cache_too_small", (
        "larger than the available kv cache memory",
        "no available memory for the cache blocks",
        "estimated maximum model length",
    )),
    ("oom", (
        "cuda out of memory",
        "outofmemoryerror",
        "cudaerrormemoryallocation",
        "cublas_status_alloc_failed",
        "less than desired gpu memory utilization",
    )),
)


def classify_log(text: str) -> Optional[Tuple[str, str]]:
    """(status, the line that says so) for a known failure in a vLLM log, else None."""
    lines = text.splitlines()
    for status, needles in LOG_PATTERNS:
        for line in reversed(lines):
            low = line.lower()
            if any(n in low for n in needles):
                return status, line.strip()[:1000]
    return None


def read_tail(path: Optional[Path], n_bytes: int = LOG_TAIL_BYTES) -> str:
    """The last ``n_bytes`` of a log file ('' if it does not exist)."""
    if path is None or not Path(path).exists():
        return ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - n_bytes))
        return f.read().decode(errors="replace")


def last_lines(text: str, n: int = 40) -> str:
    return "\n".join(text.splitlines()[-n:])


def failure_from_log(what: str, log_text: str, log_path: Optional[Path]) -> Exception:
    """``CellFailure`` for a recognised failure, else an ``EngineStartError`` (an engine_error
    worth a retry); both carry the log's last lines."""
    tail = last_lines(log_text)
    where = f" (log: {log_path})" if log_path else ""
    found = classify_log(log_text)
    if found:
        status, line = found
        return CellFailure(status, f"{what}: {line}{where}\n--- log tail ---\n{tail}")
    return EngineStartError(f"{what}{where}\n--- log tail ---\n{tail}")


class EngineStartError(RuntimeError):
    """vLLM failed in a way the log does not explain (classified ``engine_error``)."""


def log_dir() -> Path:
    """Where engine logs go: ``$ORCHESTRATOR_LOG_DIR`` or ``~/.cache/orchestrator/logs``."""
    d = Path(os.environ.get(LOG_DIR_ENV, Path.home() / ".cache" / "orchestrator" / "logs"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def new_log_path(prefix: str) -> Path:
    return log_dir() / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.log"


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so child processes
    started inside inherit it) to ``path``; restore them on exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def wait_for_gpu_memory(gpu, gpu_memory_utilization: float, timeout_s: float = MEMORY_WAIT_S) -> Dict:
    """Wait until the GPU has the memory vLLM will ask for (``utilization x total`` free, plus a
    margin): a previous cell's process may still be exiting. Never raises for lack of memory —
    vLLM then fails with its own message (``oom``). -> what was seen, for the run's extra."""
    from orchestrator.gpuinfo import memory_used_mib

    allowed = gpu.memory_total_mib * (1.0 - gpu_memory_utilization) - MEMORY_MARGIN_MIB
    t0 = time.monotonic()
    used = memory_used_mib(gpu.uuid)
    while used > allowed and time.monotonic() - t0 < timeout_s:
        time.sleep(0.5)
        used = memory_used_mib(gpu.uuid)
    return {"gpu_memory_used_before_start_mib": used, "gpu_memory_wait_s": time.monotonic() - t0,
            "gpu_memory_free_enough": used <= allowed}


def engine_versions(gpu) -> Dict[str, str]:
    """vllm and torch (package metadata: no import), CUDA runtime (when torch is already
    imported), driver and CUDA driver versions."""
    from importlib.metadata import PackageNotFoundError, version

    out: Dict[str, str] = {}
    for pkg in ("vllm", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    if "torch" in sys.modules:
        out["cuda_runtime"] = str(sys.modules["torch"].version.cuda)
    if gpu is not None:
        out.update(driver=gpu.driver_version, cuda_driver=gpu.cuda_driver_version)
    return out


# ============================================================================ the engine


class VllmOfflineEngine(Engine):
    """Static batches through ``vllm.LLM.generate`` (see the module doc)."""

    name = "vllm_offline"
    uses_gpu = True

    def __init__(self, config: Mapping, max_batch_size: int):
        super().__init__(config, max_batch_size)
        self._llm = None
        self._gpu = None
        self._log_path: Optional[Path] = None
        self._start_info: Dict = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        from orchestrator.gpuinfo import check_gpu_type

        opts = self.config["engine"]["vllm"]
        self._gpu = check_gpu_type(self.config["gpu"]["nvml_name_contains"])
        self._start_info = wait_for_gpu_memory(self._gpu, opts["gpu_memory_utilization"])
        os.environ.update(cache_env(self.config))
        # vLLM forks its engine-core process unless told otherwise; forking a Ray worker (gRPC
        # threads) is unsafe, so spawn it (what vLLM itself forces inside Ray actors).
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        self.args = engine_args(self.config, self.max_batch_size, str(model_path(self.config)))
        self._log_path = new_log_path("vllm-offline")
        print(f"vllm_offline: starting vllm.LLM (max_num_seqs={self.max_batch_size}); log: {self._log_path}",
              flush=True)
        t0 = time.monotonic()
        with output_to(self._log_path):
            try:
                from vllm import LLM

                self._llm = LLM(**self.args)
            except Exception as exc:
                err = failure_from_log(f"vllm.LLM failed to start: {type(exc).__name__}: {exc}",
                                       read_tail(self._log_path), self._log_path)
                raise err from exc
        self._start_info["vllm_start_s"] = time.monotonic() - t0

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

    def versions(self) -> Dict[str, str]:
        return engine_versions(self._gpu)

    def gpu_uuid(self) -> Optional[str]:
        return self._gpu.uuid if self._gpu is not None else None

    # ------------------------------------------------------------------ measuring
    def run(self, plan: WorkloadPlan) -> WindowRun:
        if not plan.offline:
            raise ValueError("vllm_offline runs offline plans only (workload.arrival=offline)")
        if plan.batch_size > self.max_batch_size:
            raise ValueError(f"batch {plan.batch_size} > this engine's max_num_seqs {self.max_batch_size}")
        batches = self._prepare(plan)
        records: List[RequestRecord] = []
        bounds: List[Tuple[str, float, float]] = []
        for specs, prompts, params in batches:
            t_send, t_done, outs = self._generate(prompts, params)
            bounds.append((specs[0].phase, t_send, t_done))
            records += [self._record(s, o, t_send, t_done) for s, o in zip(specs, outs)]
        measured = [(a, b) for phase, a, b in bounds if phase == "measured"]
        t0, t1 = (measured[0][0], measured[-1][1]) if measured else (bounds[0][1], bounds[-1][2])
        return WindowRun(records, t0, t1, extra=self._extra(records, bounds))

    def _prepare(self, plan: WorkloadPlan):
        """Per batch (in order): its specs, prompts as token ids, SamplingParams — all built
        before the first batch runs."""
        from vllm import SamplingParams

        vocab = int(self.config["model"]["vocab_size"])
        by_batch: Dict[int, List[RequestSpec]] = {}
        for spec in plan.requests:
            by_batch.setdefault(spec.batch_index, []).append(spec)
        out = []
        for b in sorted(by_batch):
            specs = by_batch[b]
            prompts = [{"prompt_token_ids": prompt_ids(s, plan.seed, vocab)} for s in specs]
            params = [SamplingParams(**sampling_kwargs(s, plan.ignore_eos)) for s in specs]
            out.append((specs, prompts, params))
        return out

    def _generate(self, prompts: Sequence[Dict], params: Sequence) -> Tuple[float, float, list]:
        """One static batch: -> (start s, end s, RequestOutputs in prompt order)."""
        t_send = time.monotonic()
        try:
            outs = self._llm.generate(prompts, params, use_tqdm=False)
        except Exception as exc:
            err = failure_from_log(f"LLM.generate failed: {type(exc).__name__}: {exc}",
                                   read_tail(self._log_path), self._log_path)
            raise err from exc
        return t_send, time.monotonic(), outs

    @staticmethod
    def _record(spec: RequestSpec, out, t_send: float, t_done: float) -> RequestRecord:
        n = len(out.outputs[0].token_ids)
        first, end = request_times(getattr(out, "metrics", None), t_send, t_done)
        return RequestRecord(
            index=spec.index, phase=spec.phase, arrival_s=t_send, send_s=t_send, first_token_s=first,
            end_s=end, input_tokens=len(out.prompt_token_ids or []) or spec.input_tokens, output_tokens=n,
            requested_output_tokens=spec.output_tokens, batch_index=spec.batch_index,
        )

    def _extra(self, records: List[RequestRecord], bounds) -> Dict:
        from_vllm = sum(1 for r in records if not math.isnan(r.first_token_s))
        return {
            **self._start_info,
            "request_times": {"vllm_metrics": from_vllm, "batch_bounds": len(records) - from_vllm},
            "batch_wall_s": [round(b - a, 6) for _, a, b in bounds],
            "max_num_seqs": self.max_batch_size,
            "engine_args": {k: v for k, v in self.args.items() if k != "model"},
            "log_path": str(self._log_path),
        }


def request_times(stats, t_send: float, t_done: float) -> Tuple[float, float]:
    """(first token s, last token s) from vLLM's ``RequestStateStats`` when present and inside
    the batch's bounds (+- ``CLOCK_SLACK_S``), else (NaN, batch end)."""
    first = float(getattr(stats, "first_token_ts", 0.0) or 0.0)
    last = float(getattr(stats, "last_token_ts", 0.0) or 0.0)
    lo, hi = t_send - CLOCK_SLACK_S, t_done + CLOCK_SLACK_S
    if lo <= first <= last <= hi:
        return first, min(last, t_done)
    return float("nan"), t_done
