"""Dataclass schemas for every config group, registered in Hydra's ConfigStore.

Every number carries its unit in its name (``memory_gib``, ``rate_rps``, ``duration_s``).
The YAML files under ``conf/<group>/`` give the values; these classes give the types, so a
misspelt key or a wrong type fails at compose time, before any Ray task starts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from omegaconf import MISSING

CONFIG_GROUPS = ("model", "quantization", "gpu", "workload", "engine", "sampler")
"""The groups whose choice is an axis of the grid (``sweep`` only sets axes). The batch size is an
axis too, but a plain integer key (``batch_size=8``): Hydra rejects integer group choices, and any
value must work, not only those with a file."""


@dataclass
class ModelConfig:
    """Architecture numbers of a decoder-only transformer (used by roofline and VRAM maths).

    ``path`` is a local directory holding ``config.json`` and a tokenizer (no hub); when it is
    empty the engine that needs files generates them from these numbers.
    ``quantization`` pins the checkpoint's own format (e.g. AWQ weights): it overrides the
    quantization axis for this model.
    """

    name: str = MISSING
    hf_architecture: str = "LlamaForCausalLM"
    model_type: str = "llama"
    path: str = ""
    weights: str = "dummy"  # real | dummy (vLLM load_format=dummy / random init)
    n_layers: int = MISSING
    hidden_size: int = MISSING
    intermediate_size: int = MISSING
    n_heads: int = MISSING
    n_kv_heads: int = MISSING
    vocab_size: int = MISSING
    max_context_tokens: int = 4096
    tie_word_embeddings: bool = False
    quantization: Optional[str] = None


@dataclass
class QuantizationConfig:
    """A weight format: bits per weight and where it runs.

    ``min_compute_capability``: the lowest CUDA compute capability that runs it at all.
    ``activation_dtype`` is what the matmuls compute in (fp16, int8 or fp8) when the GPU's
    capability is at least ``activation_min_compute_capability``; below that (e.g. fp8 on sm80,
    which vLLM runs as W8A16 Marlin) they compute in fp16.
    """

    name: str = MISSING
    bits_per_weight: float = 16.0
    min_compute_capability: float = 7.0
    activation_dtype: str = "fp16"
    activation_min_compute_capability: float = 0.0
    vllm_quantization: Optional[str] = None
    description: str = ""


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


@dataclass
class LengthConfig:
    """A token-length distribution: fixed | uniform | normal | lognormal, clipped to [min, max]."""

    dist: str = "fixed"
    mean_tokens: int = 128
    std_tokens: float = 0.0
    min_tokens: int = 1
    max_tokens: int = 4096


@dataclass
class WorkloadConfig:
    """How requests arrive.

    ``arrival``: poisson | constant | gamma (open loop at ``rate_rps``), closed (``concurrency``
    clients in a loop), offline (static batches of ``batch_size`` prompts, ``num_batches`` of
    them). Open loop: ``duration_s`` of measured arrivals after ``warmup_requests``.
    ``exact_count`` (poisson only): the Poisson process conditioned on holding exactly
    ``round(rate_rps x duration_s)`` measured arrivals (sorted uniform times), so every cell is
    offered exactly the nominal rate instead of one random draw of it.
    """

    name: str = MISSING
    arrival: str = "poisson"
    rate_rps: float = 20.0
    gamma_shape: float = 1.0
    concurrency: int = 8
    duration_s: float = 60.0
    exact_count: bool = False  # poisson: exactly round(rate x duration) measured arrivals
    warmup_requests: int = 10
    num_batches: int = 4
    warmup_batches: int = 1
    input: LengthConfig = field(default_factory=LengthConfig)
    output: LengthConfig = field(default_factory=LengthConfig)
    ignore_eos: bool = True
    seed: int = 0


@dataclass
class VllmOptions:
    """vLLM engine knobs (offline ``LLM`` and ``vllm serve`` alike)."""

    enforce_eager: bool = False
    enable_chunked_prefill: bool = True
    max_num_batched_tokens: Optional[int] = None
    scheduling_policy: str = "fcfs"
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 2048
    dtype: str = "auto"
    startup_timeout_s: float = 600.0
    compile_cache_dir: str = "~/.cache/orchestrator/vllm"
    extra_args: Dict[str, str] = field(default_factory=dict)


@dataclass
class SimulatedOptions:
    """Roofline simulator knobs: achieved fractions of the datasheet peaks and per-step cost."""

    memory_efficiency: float = 0.8
    compute_efficiency: float = 0.55
    step_overhead_s: float = 0.0015
    power_sample_interval_s: float = 0.1
    pace_s: float = 0.0  # wall seconds a cell sleeps (to exercise timeouts and node faults)


@dataclass
class HfOptions:
    """transformers engine knobs."""

    dtype: str = "auto"  # auto: fp32 on CPU, fp16 (bf16 where supported) on GPU
    device: str = "auto"  # auto | cpu | cuda
    int8_threshold: float = 0.0  # bitsandbytes llm_int8_threshold; 0.0 = pure INT8
    use_cache: bool = True


@dataclass
class EngineConfig:
    """Which engine runs a cell. ``auto``: vllm where a GPU of the cell's type and vllm exist,
    else simulated. ``supported_quantizations`` lists what each engine can run."""

    name: str = MISSING
    supported_quantizations: Dict[str, List[str]] = field(
        default_factory=lambda: {
            "simulated": ["none", "awq", "gptq", "int8", "fp8"],
            "vllm": ["none", "awq", "gptq", "int8", "fp8"],
            "hf": ["none", "int8"],
        }
    )
    vllm: VllmOptions = field(default_factory=VllmOptions)
    simulated: SimulatedOptions = field(default_factory=SimulatedOptions)
    hf: HfOptions = field(default_factory=HfOptions)


@dataclass
class SamplerConfig:
    """Energy sampler: nvml (counter + instant power thread) or null (no measurement)."""

    name: str = MISSING
    interval_s: float = 0.1
    idle_baseline_s: float = 5.0
    mismatch_tolerance: float = 0.05


@dataclass
class DispatchConfig:
    """Ray dispatch. ``address``: an existing cluster (else ``RAY_ADDRESS``, else a local one).
    ``place_as_gpu``: simulated cells ask for the GPU resources a real cell would (placement
    tests without GPUs)."""

    address: Optional[str] = None
    num_cpus: Optional[int] = None
    place_as_gpu: bool = False
    share_engines: bool = True  # offline cells differing only in batch size/repeat share one engine start
    max_retries: int = 1
    cell_timeout_s: float = 3600.0
    progress: bool = True
    runtime_env: Dict[str, str] = field(default_factory=dict)


@dataclass
class StoreConfig:
    """Where results go: ``dir`` (local) or ``uri`` (any pyarrow filesystem URI)."""

    dir: str = "outputs/${name}"
    uri: Optional[str] = None
    retry_failed: bool = True


@dataclass
class Config:
    """The root config: one choice per group, plus sweep-wide settings."""

    model: ModelConfig = MISSING
    quantization: QuantizationConfig = MISSING
    gpu: GpuConfig = MISSING
    workload: WorkloadConfig = MISSING
    engine: EngineConfig = MISSING
    sampler: SamplerConfig = MISSING
    batch_size: int = 8  # vLLM max_num_seqs; offline/HF: prompts per static batch
    name: str = "default"
    repeats: int = 1
    dispatch: DispatchConfig = field(default_factory=DispatchConfig)
    store: StoreConfig = field(default_factory=StoreConfig)


GROUP_SCHEMAS = {
    "model": ModelConfig,
    "quantization": QuantizationConfig,
    "gpu": GpuConfig,
    "workload": WorkloadConfig,
    "engine": EngineConfig,
    "sampler": SamplerConfig,
}


def register_configs() -> None:
    """Register the root schema so every group option is validated against its dataclass."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="base_config", node=Config)
