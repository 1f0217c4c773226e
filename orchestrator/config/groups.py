"""Dataclass schemas of the config groups that are not plug-in specific, with their value checks.

Every number carries its unit in its name (``memory_gib``, ``rate_rps``, ``duration_s``). The YAML
files under ``conf/<group>/`` give the values; these classes give the types (choice fields are
``str`` enums), so a misspelt key, a wrong type or an unknown choice fails at compose time, and
each schema's ``validate()`` checks the values, all before any Ray task starts. Each engine's
options block is declared in ``config.engine_options``; ``config.engine`` holds them. Plug-in
names (``engine.name``, ``sampler.name``) are checked against the registries by the driver
(``driver.grid.check_plugins``), which knows them.

Schemas are plain dataclasses (Hydra merges YAML into them, so they cannot be frozen); code never
mutates a config object — ``dataclasses.replace`` makes a changed copy — so group objects can be
shared between the cells of a grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Dict, Optional

from omegaconf import MISSING

from orchestrator.config.fields import added, check, chosen_by, setting
from orchestrator.config.workload_sources import DatasetSource, SessionsSource, Source, TraceSource

REPEAT_SEED_STRIDE = 1_000_003
"""Between the seeds of consecutive repeats of a workload (``WorkloadConfig.seed_for``)."""


class LogLevel(str, Enum):
    """How much the package logs, on the driver and on every worker (``log_level=DEBUG``)."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class Weights(str, Enum):
    """Where a model's weights come from: its checkpoint (``real``) or random of the right
    shapes and dtype (``dummy``: vLLM ``load_format=dummy``, HF random init)."""

    real = "real"
    dummy = "dummy"


class Precision(str, Enum):
    """The number format matmuls compute in."""

    fp16 = "fp16"
    int8 = "int8"
    fp8 = "fp8"


class WorkloadKind(str, Enum):
    """What drives the engine: static batches, open-loop arrivals, or closed-loop clients."""

    offline = "offline"
    open_loop = "open_loop"
    closed_loop = "closed_loop"


class Arrival(str, Enum):
    """How requests arrive (see ``WorkloadConfig``)."""

    poisson = "poisson"
    constant = "constant"
    gamma = "gamma"
    closed = "closed"
    offline = "offline"

    @property
    def kind(self) -> WorkloadKind:
        if self is Arrival.offline:
            return WorkloadKind.offline
        if self is Arrival.closed:
            return WorkloadKind.closed_loop
        return WorkloadKind.open_loop


class LengthDist(str, Enum):
    """A token-length distribution, clipped to [min, max]."""

    fixed = "fixed"
    uniform = "uniform"
    normal = "normal"
    lognormal = "lognormal"


@dataclass
class ModelConfig:
    """Architecture numbers of a decoder-only transformer (used by the performance model).

    ``path`` is a local directory holding ``config.json`` and a tokenizer (no hub); when it is
    empty the engine that needs files generates them from these numbers.
    ``quantization`` pins the checkpoint's own format (e.g. AWQ weights): it overrides the
    quantization axis for this model.
    """

    name: str = MISSING
    hf_architecture: str = "LlamaForCausalLM"
    model_type: str = "llama"
    path: str = ""
    weights: Weights = Weights.dummy
    n_layers: int = MISSING
    hidden_size: int = MISSING
    intermediate_size: int = MISSING
    n_heads: int = MISSING
    n_kv_heads: int = MISSING
    vocab_size: int = MISSING
    max_context_tokens: int = 4096
    tie_word_embeddings: bool = False
    quantization: Optional[str] = None

    def validate(self) -> None:
        for key in ("n_layers", "hidden_size", "intermediate_size", "n_heads", "n_kv_heads", "vocab_size",
                    "max_context_tokens"):
            check(f"model.{key}", getattr(self, key), getattr(self, key) >= 1, "must be >= 1")
        check("model.n_kv_heads", self.n_kv_heads, self.n_heads % self.n_kv_heads == 0,
              f"must divide model.n_heads ({self.n_heads})")


@dataclass
class QuantizationConfig:
    """A weight format: bits per weight and where it runs.

    ``min_compute_capability``: the lowest CUDA compute capability that runs it at all.
    ``activation_dtype`` is what the matmuls compute in when the GPU's capability is at least
    ``activation_min_compute_capability``; below that (e.g. fp8 on sm80, which vLLM runs as
    W8A16 Marlin) they compute in fp16.
    """

    name: str = MISSING
    bits_per_weight: float = 16.0
    min_compute_capability: float = 7.0
    activation_dtype: Precision = Precision.fp16
    activation_min_compute_capability: float = 0.0
    vllm_quantization: Optional[str] = None
    description: str = setting("")

    def validate(self) -> None:
        check("quantization.bits_per_weight", self.bits_per_weight, 0 < self.bits_per_weight <= 32,
              "must be in (0, 32]")


@dataclass
class GpuConfig:
    """Datasheet numbers of one GPU type (dense tensor-core peaks, no sparsity)."""

    name: str = MISSING
    accelerator_type: str = MISSING  # Ray's accelerator_type resource, e.g. "H100"
    nvml_name_contains: str = MISSING  # substring of nvmlDeviceGetName that identifies it
    memory_gib: float = MISSING
    memory_bandwidth_gbps: float = MISSING  # GB/s (1e9 bytes per second)
    peak_tflops_fp16: float = MISSING
    peak_tflops_int8: float = MISSING  # TOPS
    peak_tflops_fp8: Optional[float] = None
    tdp_w: float = MISSING
    idle_w: float = MISSING  # typical idle draw with a model loaded (simulated energy)
    compute_capability: float = MISSING
    supports_bf16: bool = True
    # GB/s one GPU sends to another each way (NVLink, else PCIe): the simulator's all-reduce time of a
    # tensor-parallel cell. Not in a cell's identity: added after cells were stored, and a one-GPU
    # cell never uses it (a setting, like a timeout)
    interconnect_gbps: float = setting(16.0)

    def validate(self) -> None:
        for key in ("memory_gib", "memory_bandwidth_gbps", "peak_tflops_fp16", "tdp_w", "interconnect_gbps"):
            check(f"gpu.{key}", getattr(self, key), getattr(self, key) > 0, "must be > 0")


@dataclass
class LengthConfig:
    """A token-length distribution, rounded and clipped to [min_tokens, max_tokens]."""

    dist: LengthDist = LengthDist.fixed
    mean_tokens: int = 128
    std_tokens: float = 0.0
    min_tokens: int = 1
    max_tokens: int = 4096

    def validate(self, key: str) -> None:
        check(f"{key}.mean_tokens", self.mean_tokens, self.mean_tokens >= 1, "must be >= 1")
        check(f"{key}.min_tokens", self.min_tokens, 1 <= self.min_tokens <= self.max_tokens,
              "must be 1 <= min <= max")
        check(f"{key}.std_tokens", self.std_tokens, self.std_tokens >= 0, "must be >= 0")


@dataclass
class WorkloadConfig:
    """How requests arrive.

    ``arrival``: poisson | constant | gamma (open loop at ``rate_rps``), closed (``concurrency``
    clients in a loop), offline (static batches of ``batch_size`` prompts, ``num_batches`` of
    them). Open loop: ``duration_s`` of measured arrivals after ``warmup_requests``.
    ``exact_count`` (poisson only): the Poisson process conditioned on holding exactly
    ``round(rate_rps x duration_s)`` measured arrivals (sorted uniform times), so every cell is
    offered exactly the nominal rate instead of one random draw of it.

    Offline windows: at least ``num_batches`` measured batches, then more until the window is at
    least ``min_window_s`` seconds long, at most ``max_batches`` measured batches (a window still
    shorter is flagged ``short_window``). Open/closed loop: after the window closes, requests
    still queued or in flight get at most ``drain_timeout_s`` seconds to finish, then they are
    cancelled and kept as ``cancelled`` rows (the cell is flagged ``saturated``); ``None`` sizes
    it from the cell (``workload.drain_limit_s``: 3 x the roofline time of one request at half
    the datasheet peaks, at least 10 s).

    ``source``: what the requests are made of (``config.workload_sources``): ``synthetic``
    (lengths drawn from ``input``/``output``), ``dataset``, ``trace`` or ``sessions``, each with
    its own block (``workload.trace.path=...``); only the chosen block is part of the identity.
    A trace sets its own arrivals (``arrival`` must be an open-loop one); sessions arrive
    open-loop at ``rate_rps`` sessions per second.
    """

    name: str = MISSING
    arrival: Arrival = Arrival.poisson
    rate_rps: float = 20.0
    gamma_shape: float = 1.0
    concurrency: int = 8
    duration_s: float = 60.0
    exact_count: bool = False
    warmup_requests: int = 10
    num_batches: int = 4
    warmup_batches: int = 1
    min_window_s: float = 10.0
    max_batches: int = 1000
    drain_timeout_s: Optional[float] = None
    input: LengthConfig = field(default_factory=LengthConfig)
    output: LengthConfig = field(default_factory=LengthConfig)
    ignore_eos: bool = True
    seed: int = 0
    source: Source = added(Source.synthetic)
    dataset: DatasetSource = chosen_by("source", Source.dataset, DatasetSource)
    trace: TraceSource = chosen_by("source", Source.trace, TraceSource)
    sessions: SessionsSource = chosen_by("source", Source.sessions, SessionsSource)

    @property
    def kind(self) -> WorkloadKind:
        return self.arrival.kind

    def mean_lengths(self) -> "tuple[float, float]":
        """(input, output) tokens of a typical request: a trace's own means where the driver
        read them (``TraceSource.mean_*``); a session turn's mean prompt (the system prompt, its
        user turn, and the history of half the session's earlier turns and answers); else the
        length distributions' means. (A dataset's prompts are known only once tokenized.)"""
        n_in, n_out = float(self.input.mean_tokens), float(self.output.mean_tokens)
        if self.source is Source.trace and self.trace.mean_input_tokens > 0:
            return float(self.trace.mean_input_tokens), float(self.trace.mean_output_tokens)
        if self.source is Source.sessions:
            turns = (self.sessions.min_turns + self.sessions.max_turns) / 2
            return self.sessions.system_prompt_tokens + n_in + (turns - 1) / 2 * (n_in + n_out), n_out
        return n_in, n_out

    def seed_for(self, repeat: int) -> int:
        """The seed of a repeat's arrivals and lengths: ``seed + REPEAT_SEED_STRIDE x repeat`` (each
        repeat its own draws; prompts are keyed by the cell's id besides)."""
        return int(self.seed) + REPEAT_SEED_STRIDE * int(repeat)

    def validate(self) -> None:
        kind = self.kind
        if kind is WorkloadKind.open_loop:
            check("workload.rate_rps", self.rate_rps, self.rate_rps > 0 and math.isfinite(self.rate_rps),
                  "must be > 0")
            check("workload.duration_s", self.duration_s, self.duration_s > 0, "must be > 0")
            check("workload.gamma_shape", self.gamma_shape, self.gamma_shape > 0, "must be > 0")
        if self.exact_count:
            check("workload.exact_count", self.exact_count, self.arrival is Arrival.poisson,
                  "applies to arrival=poisson only")
            check("workload.exact_count", self.exact_count, round(self.rate_rps * self.duration_s) >= 1,
                  "needs rate_rps x duration_s >= 1 request")
        if kind is WorkloadKind.closed_loop:
            check("workload.concurrency", self.concurrency, self.concurrency >= 1, "must be >= 1")
            check("workload.duration_s", self.duration_s, self.duration_s > 0, "must be > 0")
        if kind is WorkloadKind.offline:
            check("workload.num_batches", self.num_batches, self.num_batches >= 1, "must be >= 1")
            check("workload.warmup_batches", self.warmup_batches, self.warmup_batches >= 0, "must be >= 0")
            check("workload.max_batches", self.max_batches, self.max_batches >= self.num_batches,
                  f"must be >= workload.num_batches ({self.num_batches})")
        check("workload.min_window_s", self.min_window_s, self.min_window_s >= 0, "must be >= 0")
        check("workload.drain_timeout_s", self.drain_timeout_s,
              self.drain_timeout_s is None or self.drain_timeout_s >= 0, "must be >= 0 (or null: sized per cell)")
        check("workload.warmup_requests", self.warmup_requests, self.warmup_requests >= 0, "must be >= 0")
        self.input.validate("workload.input")
        self.output.validate("workload.output")
        if self.source in (Source.trace, Source.sessions):
            check("workload.arrival", self.arrival.value, kind is WorkloadKind.open_loop,
                  f"workload.source={self.source.value} arrives open-loop: poisson, constant or gamma")
        if self.source is not Source.synthetic:
            getattr(self, self.source.value).validate()


@dataclass
class SamplerConfig:
    """Energy sampling. ``name``: a registered sampler (``nvml``, ``none``) or ``auto`` (nvml on
    a GPU engine, none otherwise; an engine that models its own power ignores it)."""

    name: str = MISSING
    interval_s: float = 0.02  # mean s between samples (>= 10 Hz; why 50: experiments/benchmarks/vllm_h200_validity)
    idle_baseline_s: float = 5.0  # seconds of idle GPU (engine loaded) measured before the window
    mismatch_tolerance: float = 0.05  # counter vs integrated power, relative

    def validate(self) -> None:
        check("sampler.interval_s", self.interval_s, self.interval_s > 0, "must be > 0")
        check("sampler.interval_s", self.interval_s, self.name == "none" or self.interval_s <= 0.1,
              "must be <= 0.1 (instant power is sampled at >= 10 Hz)")
        check("sampler.idle_baseline_s", self.idle_baseline_s, self.idle_baseline_s >= 0, "must be >= 0")
        check("sampler.mismatch_tolerance", self.mismatch_tolerance, self.mismatch_tolerance > 0, "must be > 0")


@dataclass
class DispatchConfig:
    """Ray dispatch (never part of a cell's identity). ``address``: an existing cluster (else
    ``RAY_ADDRESS``, else a local one). ``place_as_gpu``: simulated cells ask for the GPU
    resources a real cell would (placement tests without GPUs)."""

    address: Optional[str] = None
    num_cpus: Optional[int] = None
    place_as_gpu: bool = False
    share_engines: bool = True  # cells differing only in their engine's shared_axes share one engine start
    max_retries: int = 1
    cell_timeout_s: float = 3600.0  # a running task is cancelled after this many seconds per cell
    pending_timeout_s: float = 120.0  # a task no node can run ends unschedulable after this long
    progress: bool = True
    runtime_env: Dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        check("dispatch.max_retries", self.max_retries, self.max_retries >= 0, "must be >= 0")
        check("dispatch.cell_timeout_s", self.cell_timeout_s, self.cell_timeout_s > 0, "must be > 0")
        check("dispatch.pending_timeout_s", self.pending_timeout_s, self.pending_timeout_s > 0, "must be > 0")


@dataclass
class StoreConfig:
    """Where results go: ``dir`` (local) or ``uri`` (any pyarrow filesystem URI)."""

    dir: str = "outputs/${name}"
    uri: Optional[str] = None
    retry_failed: bool = True
    claim_ttl_s: float = 60.0  # a driver's claim on its cells expires this long after its last refresh

    def validate(self) -> None:
        check("store.dir", self.dir, bool(self.uri) or bool(str(self.dir).strip()),
              "empty: give the store's directory (default outputs/<name>) or store.uri")
        check("store.claim_ttl_s", self.claim_ttl_s, self.claim_ttl_s > 0, "must be > 0")

    @property
    def location(self) -> str:
        return self.uri or self.dir
