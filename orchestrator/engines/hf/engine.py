"""Hugging Face transformers engine: the seeds' "manual batching" path (static batches with
``padding_side="left"``, one ``model.generate`` per padded batch), on a CUDA GPU or the CPU.

Device: ``cuda`` when torch sees a GPU and ``engine.hf.device`` is not ``cpu`` (the GPU Ray
pinned to this task, its NVML name checked against ``gpu.nvml_name_contains``), else ``cpu``.
``uses_gpu`` follows the resolved device, so a CPU run gets the null sampler: energy columns
null, ``energy_source=none`` and the reason in ``energy_note``.

Precision (``engine.hf.dtype=auto``): fp32 on the CPU; on a GPU bf16 where it supports it, else
fp16. ``quantization=int8``: bitsandbytes LLM.int8 (``Linear8bitLt`` linears, fp16 elsewhere,
``lm_head`` kept fp16) with ``llm_int8_threshold = engine.hf.int8_threshold``: 0.0 is the
seed's "pure INT8" (every matmul in int8), 6.0 bitsandbytes' mixed-precision default (outlier
features in fp16). CUDA only; on the CPU, or where bitsandbytes does not import, the cell ends
``unsupported`` with the reason.

Weights: a checkpoint in the model directory is loaded with ``from_pretrained``. Otherwise small
shapes (at most ``SAVE_WEIGHTS_MAX_PARAMS``, e.g. ``model=tiny``) get random weights saved there
once (``models.save_random_weights``), and larger ones are created with random weights directly
on the target device and dtype (``from_config`` under ``torch.device``: a 7B never passes through
host RAM). With fixed output lengths, speed, memory and energy are those of the real model.

Timing, on ``time.monotonic()`` seconds: a static batch is sent when its prompt ids go to the
tokenizer's left padding; all its requests share that arrival. A streamer (``StepClock``, no
one-token first step) stamps the host time at which each decoding step's token ids reach the
CPU (generate already syncs the device there every step): stamp 1 is every request's first
token (TTFT), stamp k its k-th token. A batch runs ``max`` of its requested lengths (static
batching: shorter requests ride along); each request's output tokens are counted from the
generated ids, up to its requested count and its first EOS (``min_new_tokens = max_new_tokens``
suppresses EOS, so with fixed lengths it is exactly the requested count). The window runs from
the first measured batch's send to the last batch's end (after a device sync).
"""
from __future__ import annotations

import gc
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from orchestrator.client import model_files as models
from orchestrator.client.metrics import RequestRecord, WindowRun
from orchestrator.client.workload import RequestSpec, WorkloadPlan
from orchestrator.config.engine_options import HfOptions
from orchestrator.config.groups import WorkloadKind
from orchestrator.energy.gpuinfo import GpuIdentity, check_gpu_type
from orchestrator.engines.base import Engine, GpuUse, register_engine
from orchestrator.engines.hf.model import (
    bnb_config,
    check_host_memory,
    load_tokenizer,
    quantize_int8_,
    random_model,
    torch_dtype,
)
from orchestrator.engines.static_batches import run_static_batches
from orchestrator.errors import CellFailure, Status
from orchestrator.perf.roofline import total_params

if TYPE_CHECKING:
    from orchestrator.config.root import CellConfig

SAVE_WEIGHTS_MAX_PARAMS = 50_000_000
"""Shapes up to this many parameters get random weights saved once (fp32: <= 200 MB)."""
DTYPES = ("float32", "float16", "bfloat16")
TTFT_METHOD = "streamer: host time when each decoding step's token ids reach the CPU"


def resolve_device(requested: str, cuda_available: bool) -> str:
    """``cuda`` or ``cpu`` for ``engine.hf.device`` (auto | cpu | cuda)."""
    if requested not in ("auto", "cpu", "cuda"):
        raise CellFailure(Status.unsupported, f"engine.hf.device={requested}: allowed auto, cpu, cuda")
    if requested == "cuda" and not cuda_available:
        raise CellFailure(Status.unsupported, "engine.hf.device=cuda but torch sees no CUDA GPU on this worker")
    return "cuda" if cuda_available and requested != "cpu" else "cpu"


def resolve_dtype(requested: str, device: str, bf16_supported: bool, quantization: str = "none") -> str:
    """The torch dtype name the model computes in (see module doc).

    int8 keeps its non-quantized modules in fp16 (bitsandbytes' LLM.int8 default)."""
    if requested != "auto" and requested not in DTYPES:
        raise CellFailure(Status.unsupported, f"engine.hf.dtype={requested}: allowed auto, {', '.join(DTYPES)}")
    if quantization == "int8":
        return "float16"
    if requested == "bfloat16" and device == "cuda" and not bf16_supported:
        raise CellFailure(Status.unsupported, "engine.hf.dtype=bfloat16 but this GPU has no bf16")
    if requested != "auto":
        return requested
    if device == "cpu":
        return "float32"
    return "bfloat16" if bf16_supported else "float16"


def check_quantization(name: str, device: str) -> None:
    """``CellFailure('unsupported')`` unless this engine can run quantization ``name`` here."""
    if name == "none":
        return
    if name != "int8":
        raise CellFailure(Status.unsupported, f"engine hf runs quantization none or int8, not {name}")
    if device != "cuda":
        raise CellFailure(Status.unsupported, "bitsandbytes INT8 needs a CUDA GPU; this cell runs on the CPU")
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # ImportError, or a broken CUDA setup inside bitsandbytes
        why = f"bitsandbytes does not import here ({type(exc).__name__}: {exc})"
        raise CellFailure(Status.unsupported, why) from exc


def tokens_generated(new_ids: Sequence[int], eos_ids: Sequence[int]) -> int:
    """Tokens a sequence generated: up to and including its first EOS, else all ``new_ids``
    (what follows an EOS in a padded batch is padding)."""
    eos = set(eos_ids)
    for i, tok in enumerate(new_ids):
        if tok in eos:
            return i + 1
    return len(new_ids)


def request_record(spec: RequestSpec, send_s: float, step_times_s: Sequence[float], new_ids: Sequence[int],
                   eos_ids: Sequence[int]) -> RequestRecord:
    """One request of a static batch: its tokens are the first ``min(requested, generated)`` steps."""
    n = min(spec.output_tokens, tokens_generated(new_ids, eos_ids))
    times = np.asarray(step_times_s[:n], dtype=float)
    ok = n > 0
    return RequestRecord(
        index=spec.index, phase=spec.phase, arrival_s=send_s, send_s=send_s,
        first_token_s=float(times[0]) if ok else float("nan"),
        end_s=float(times[-1]) if ok else float("nan"),
        input_tokens=spec.input_tokens, output_tokens=int(n), requested_output_tokens=spec.output_tokens,
        token_times_s=times, status="ok" if ok else "error",
        error="" if ok else "no token generated", batch_index=spec.batch_index,
    )


class StepClock:
    """A transformers streamer (duck-typed ``put``/``end``) that stamps decoding steps.

    ``generate`` calls ``put`` once with the prompt ids, then once per step with that step's new
    token ids (already on the CPU). ``times_s[k]`` is the monotonic time (s) step k+1 arrived."""

    def __init__(self):
        self.times_s: List[float] = []
        self._prompt_seen = False

    def put(self, value) -> None:
        now = time.monotonic()
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.times_s.append(now)

    def end(self) -> None:
        pass


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


# ------------------------------------------------------------------ the engine


@register_engine("hf")
class HfEngine(Engine):
    """Static batching with ``transformers`` (see module doc). Cheap to build and pickle; the
    model exists only between ``start()`` and ``stop()``. Offline cells that differ only in
    batch size share one start."""

    quantizations = frozenset({"none", "int8"})
    workload_kinds = frozenset({WorkloadKind.offline})
    shared_axes = frozenset({"batch_size", "repeat"})
    gpu = GpuUse.optional
    auto_rank = 1  # engine=auto: the cells vllm refuses (bitsandbytes INT8 offline), on a GPU only
    auto_modules = ("torch", "transformers", "bitsandbytes")
    typical_start_s = 60.0  # a 7B in bf16 or INT8 created on the GPU (H200: 40-70 s)
    options: HfOptions

    def __init__(self, config: "CellConfig", max_batch_size: int):
        super().__init__(config, max_batch_size)
        self.device = ""  # resolved in start(): "cuda" | "cpu"
        self.dtype = ""  # resolved in start(): "float32" | "float16" | "bfloat16"
        self.weights: str = ""  # how the weights came to be (checkpoint / random ...)
        self._gpu: Optional[GpuIdentity] = None  # on cuda
        self._model: Any = None  # a transformers PreTrainedModel between start() and stop()
        self._tok: Any = None  # its tokenizer

    @property
    def uses_gpu(self) -> bool:
        """True once ``start()`` resolved the device to a CUDA GPU."""
        return self.device == "cuda"

    @property
    def quantization(self) -> str:
        return self.config.quantization.name

    def start(self) -> None:
        """Resolve device and dtype, check the GPU and quantization, load tokenizer and model."""
        import torch
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # per-shard bars would flood the Ray worker log
        self.device = resolve_device(self.options.device.value, torch.cuda.is_available())
        check_quantization(self.quantization, self.device)
        if self.device == "cuda":
            self._gpu = check_gpu_type(self.config.gpu.nvml_name_contains)
            bf16 = torch.cuda.is_bf16_supported() and bool(self.config.gpu.supports_bf16)
        else:
            bf16 = False
        self.dtype = resolve_dtype(self.options.dtype.value, self.device, bf16, self.quantization)
        if self.device == "cpu":
            check_host_memory(self.config.model, torch_dtype(self.dtype).itemsize)
        path = self._model_path()
        self._tok = load_tokenizer(path)
        self._model = self._load_model(path).eval()

    def _model_path(self) -> Path:
        """The model directory; small generated shapes get their random weights saved there."""
        model = self.config.model
        path = models.model_dir(model, self.config.quantization)
        if model.path or models.has_weights(path):
            return path
        if total_params(model) <= SAVE_WEIGHTS_MAX_PARAMS:
            models.save_random_weights(path)
        return path

    def _load_model(self, path: Path):
        int8 = self.quantization == "int8"
        if models.has_weights(path):
            self.weights = f"checkpoint {path}"
            return self._from_pretrained(path, int8)
        self.weights = f"random weights created on {self.device} (no checkpoint in {path})"
        model = random_model(path, self.device, self.dtype)
        if int8:
            import torch

            quantize_int8_(model, bnb_config(self.options.int8_threshold))
            torch.cuda.empty_cache()  # hand the freed fp16 weights back to the driver
        return model

    def _from_pretrained(self, path: Path, int8: bool):
        from transformers import AutoModelForCausalLM

        kwargs = models.dtype_kwarg(torch_dtype(self.dtype))
        if int8:
            kwargs.update(quantization_config=bnb_config(self.options.int8_threshold), device_map={"": 0})
            try:
                return AutoModelForCausalLM.from_pretrained(path, **kwargs)
            except ImportError as exc:  # e.g. accelerate or a bitsandbytes backend missing
                raise CellFailure(Status.unsupported, f"bitsandbytes INT8 loading failed here: {exc}") from exc
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        return model.to(self.device)  # type: ignore[arg-type]  # transformers' wrapped .to() hides its signature

    # -------------------------------------------------------------- run

    def run(self, plan: WorkloadPlan) -> WindowRun:
        """Every static batch of the plan, back to back (see module doc for the clock)."""
        return run_static_batches(self.name, plan, lambda specs: self._run_batch(specs, plan),
                                  lambda records, schedule: self._extra(), self.progress)

    def _run_batch(self, specs: List[RequestSpec], plan: WorkloadPlan) -> Tuple[List[RequestRecord], float, float]:
        """-> (records, send time s, end time s) of one padded ``generate``."""
        import torch

        vocab = int(self.config.model.vocab_size)
        ids = [plan.prompt_ids(s, vocab) for s in specs]
        n_new = max(s.output_tokens for s in specs)
        clock = StepClock()
        send_s = time.monotonic()
        enc = self._tok.pad({"input_ids": ids}, padding=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self._model.generate(
                **enc, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                use_cache=bool(self.options.use_cache), pad_token_id=self._tok.pad_token_id,
                eos_token_id=self._eos_ids(), streamer=clock,
            )
        if self.device == "cuda":
            torch.cuda.synchronize()
        end_s = time.monotonic()
        new_ids = out[:, enc["input_ids"].shape[1]:].tolist()
        if len(clock.times_s) != len(new_ids[0]):
            raise RuntimeError(f"streamer saw {len(clock.times_s)} steps, generate returned {len(new_ids[0])} tokens")
        eos = self._eos_ids()
        records = [request_record(s, send_s, clock.times_s, row, eos) for s, row in zip(specs, new_ids)]
        for rec, prompt in zip(records, ids):
            rec.prompt_hash = models.prompt_digest(prompt)
        return records, send_s, end_s

    def _eos_ids(self) -> List[int]:
        eos = self._model.generation_config.eos_token_id
        if eos is None:
            eos = self._tok.eos_token_id
        return list(eos) if isinstance(eos, (list, tuple)) else [int(eos)]

    def _extra(self) -> Dict:
        import torch

        extra = {"device": self.device, "dtype": self.dtype, "quantization": self.quantization,
                 "weights": self.weights, "ttft_method": TTFT_METHOD, "torch_threads": torch.get_num_threads()}
        if self.quantization == "int8":
            extra["llm_int8_threshold"] = float(self.options.int8_threshold)  # its version: engine_versions
        if self._gpu is not None:
            extra["gpu"] = self._gpu.name
        return extra

    # -------------------------------------------------------------- lifecycle

    def stop(self) -> None:
        """Drop the model and tokenizer and give cached GPU memory back (idempotent)."""
        self._model = None
        self._tok = None
        gc.collect()
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    def versions(self) -> Dict[str, str]:
        out = {p: package_version(p) for p in ("torch", "transformers", "bitsandbytes")}
        if self.device == "cuda":
            import torch

            out["cuda"] = str(torch.version.cuda)
        return out

    def gpu_uuid(self) -> Optional[str]:
        return self._gpu.uuid if self._gpu is not None else None
