"""Each engine's options block (``engine.<name>.*``), declared here so that the config schema is
static: importing the config package loads no engine module. An engine's block is named after
the engine (``engine.vllm`` for ``vllm``); only that block is part of the identity of the cells it
runs (``orchestrator.core.identity``). Fields that do not change what is measured are declared
``setting(...)``; options added after cells were stored are declared ``added(...)``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, Dict, List, Optional

from orchestrator.config.fields import added, check, setting

DEFAULT_MEMORY_FRACTION = 0.9
BUSY_POWER_FLOOR = 0.4
"""The simulator's default memory-bound share of busy power (``engine.simulated.busy_power_floor``)."""
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class EngineOptions:
    """What every engine's options block declares besides its fields.

    ``models_power``: True when the engine models its own power (the simulator), so the
    ``sampler`` group does not define its cells' measurement (it stays out of their identity).
    ``memory_fraction()``: the fraction of the GPU's memory the engine may use (the VRAM check's
    capacity). ``validate()``: one ``ConfigError`` line naming the key and what is allowed.
    ``batch_knob``: what a cell's ``batch_size`` sets in this engine, as the report names it
    ('' for an engine in which it sets nothing)."""

    models_power: ClassVar[bool] = False
    batch_knob: ClassVar[str] = "batch size"

    def memory_fraction(self) -> float:
        return DEFAULT_MEMORY_FRACTION

    def validate(self) -> None:
        """Nothing to check (a block with no constrained field)."""


class PromptMode(str, Enum):
    """How prompts travel: ``auto`` (the probe decides), ``token_ids`` or ``text``."""

    auto = "auto"
    token_ids = "token_ids"
    text = "text"


class Api(str, Enum):
    """Which OpenAI route requests go to: ``completions`` (``/v1/completions``, a prompt), ``chat``
    (``/v1/chat/completions``, one user message), or ``auto`` (an endpoint: completions where the
    server has the route, else chat)."""

    auto = "auto"
    completions = "completions"
    chat = "chat"


class CoreStart(str, Enum):
    """How ``vllm serve`` starts its engine-core process (``VLLM_WORKER_MULTIPROC_METHOD``)."""

    fork = "fork"  # a copy of the API server: its imports inherited (vLLM's library default)
    spawn = "spawn"  # a fresh interpreter that imports vLLM again (vLLM's CLI default)


class SchedulingPolicy(str, Enum):
    """vLLM's scheduler: first come first served, or by request priority."""

    fcfs = "fcfs"
    priority = "priority"


@dataclass
class VllmOptions(EngineOptions):
    """vLLM engine knobs (offline ``LLM`` and ``vllm serve`` alike). ``startup_timeout_s``,
    ``compile_cache_dir``, ``server_core_start`` and ``server_spare_idle_s`` do not change what is measured (not part of a
    cell's identity). ``server_core_start``: ``vllm serve``'s engine-core process forked from the
    API server (default: the ~16 s a spawned one spends importing vLLM again is saved; vLLM still
    spawns when CUDA is initialised in the API server) or spawned (the CLI's own default). The
    offline engine always spawns it: forking a Ray worker is unsafe. ``server_spare_idle_s``: once
    a server is up, a spare process imports what the next ``vllm serve`` on the node needs and
    waits this long for it (``engines.vllm.spare``; the ~20 s of a launch's imports saved); 0: none.
    ``compile_cache_dir``: vLLM's compile cache and the kernel caches a machine's first start
    fills (``engines.vllm.common.cache_env``); a folder shared by the nodes warms every first start.
    ``api``: the route server cells send to (completions | chat: one user message, the same
    prompt length and per-token timing), so the two APIs can be compared on one server."""

    batch_knob: ClassVar[str] = "max-num-seqs"

    enforce_eager: bool = False
    enable_chunked_prefill: bool = True
    enable_prefix_caching: bool = False  # off for measurement: no cell finds another's prompts cached
    max_num_batched_tokens: Optional[int] = None
    scheduling_policy: SchedulingPolicy = SchedulingPolicy.fcfs
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 2048
    dtype: str = "auto"
    startup_timeout_s: float = setting(600.0)
    compile_cache_dir: str = setting("~/.cache/orchestrator/vllm")
    server_core_start: CoreStart = setting(CoreStart.fork)
    server_spare_idle_s: float = setting(300.0)
    extra_args: Dict[str, str] = field(default_factory=dict)
    api: Api = added(Api.completions)
    # log every engine step from vLLM's scheduler (engines.vllm.step_recorder) for the steps table
    record_steps: bool = added(True)

    def memory_fraction(self) -> float:
        return float(self.gpu_memory_utilization)

    def validate(self) -> None:
        check("engine.vllm.gpu_memory_utilization", self.gpu_memory_utilization,
              0 < self.gpu_memory_utilization <= 1, "must be in (0, 1]")
        check("engine.vllm.max_model_len", self.max_model_len, self.max_model_len >= 1, "must be >= 1")
        check("engine.vllm.startup_timeout_s", self.startup_timeout_s, self.startup_timeout_s > 0, "must be > 0")
        check("engine.vllm.server_spare_idle_s", self.server_spare_idle_s, self.server_spare_idle_s >= 0,
              "must be >= 0 (0: no spare)")
        check("engine.vllm.api", self.api.value, self.api is not Api.auto, "completions or chat (vLLM serves both)")


class HfDevice(str, Enum):
    auto = "auto"  # cuda when torch sees a GPU, else cpu
    cpu = "cpu"
    cuda = "cuda"


class HfDtype(str, Enum):
    auto = "auto"  # fp32 on CPU, bf16 (fp16 where unsupported) on GPU
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


@dataclass
class HfOptions(EngineOptions):
    """transformers engine knobs."""

    dtype: HfDtype = HfDtype.auto
    device: HfDevice = HfDevice.auto
    int8_threshold: float = 0.0  # bitsandbytes llm_int8_threshold; 0.0 = pure INT8, 6.0 = mixed
    use_cache: bool = True

    def validate(self) -> None:
        check("engine.hf.int8_threshold", self.int8_threshold, self.int8_threshold >= 0, "must be >= 0")


# ------------------------------------------------------------------ pure helpers (tested alone)


@dataclass
class SimulatedOptions(EngineOptions):
    """Roofline simulator knobs: achieved fractions of the datasheet peaks and per-step cost.
    ``pace_s`` (wall seconds a cell sleeps, to exercise timeouts and node faults) does not change
    what is simulated (not part of a cell's identity)."""

    memory_efficiency: float = 0.8
    compute_efficiency: float = 0.55
    step_overhead_s: float = 0.0015
    # host-bound seconds per step in which the GPU waits, at idle draw (an eager engine's kernel
    # launches, a Python decode loop): 0 for vLLM with CUDA graphs, the simulator's reference
    host_step_s: float = added(0.0)
    busy_power_floor: float = BUSY_POWER_FLOOR  # see the module doc: the memory-bound share of busy W
    idle_power_w: Optional[float] = None  # None: the GPU config's datasheet idle_w
    # quantization name -> fraction of memory_efficiency at which its quantized linear weights are read
    # (every method listed, so that a plain override sets one: engine.simulated.quantized_weight_efficiency.awq=0.33)
    quantized_weight_efficiency: Dict[str, float] = field(
        default_factory=lambda: {"awq": 1.0, "gptq": 1.0, "int8": 1.0, "fp8": 1.0})
    power_sample_interval_s: float = 0.1
    pace_s: float = setting(0.0)
    # vLLM's automatic prefix caching, modeled (engines.prefix_cache): cached prompt blocks skip prefill
    enable_prefix_caching: bool = added(False)
    prefix_block_tokens: int = added(16)
    # seconds of one all-reduce's fixed cost (launch, synchronisation) of a tensor-parallel cell
    allreduce_latency_s: float = added(8e-6)
    models_power: ClassVar[bool] = True
    batch_knob: ClassVar[str] = "max-num-seqs"  # it models vLLM's scheduler

    def validate(self) -> None:
        for key in ("memory_efficiency", "compute_efficiency"):
            check(f"engine.simulated.{key}", getattr(self, key), 0 < getattr(self, key) <= 1, "must be in (0, 1]")
        check("engine.simulated.host_step_s", self.host_step_s, self.host_step_s >= 0, "must be >= 0")
        check("engine.simulated.allreduce_latency_s", self.allreduce_latency_s, self.allreduce_latency_s >= 0,
              "must be >= 0")
        check("engine.simulated.busy_power_floor", self.busy_power_floor, 0 <= self.busy_power_floor <= 1,
              "must be in [0, 1]")
        for name, value in self.quantized_weight_efficiency.items():
            check(f"engine.simulated.quantized_weight_efficiency.{name}", value, 0 < value <= 1, "must be in (0, 1]")
        check("engine.simulated.idle_power_w", self.idle_power_w, self.idle_power_w is None or self.idle_power_w >= 0,
              "must be >= 0 (or null: the GPU's idle_w)")
        check("engine.simulated.power_sample_interval_s", self.power_sample_interval_s,
              self.power_sample_interval_s > 0, "must be > 0")
        check("engine.simulated.pace_s", self.pace_s, self.pace_s >= 0, "must be >= 0")
        check("engine.simulated.prefix_block_tokens", self.prefix_block_tokens, self.prefix_block_tokens >= 1,
              "must be >= 1")


@dataclass
class EndpointOptions(EngineOptions):
    """``base_url``: the server (``http://host:port``, no ``/v1``); ``model``: the name it serves
    (empty: ``model.name``); ``api_key_env``: the NAME of the environment variable holding its key
    (empty: no key); ``tokenizer``: a local tokenizer directory (empty: ``model.path``, else the
    one generated from the model config); ``api``: auto | completions | chat (``Api``);
    ``prompt``: auto | token_ids | text (auto: the probe decides; chat sends text); ``gpu_uuids``:
    the server's GPUs (NVML UUIDs) whose energy a cell is charged with."""

    batch_knob: ClassVar[str] = ""  # none: the server schedules its own batches

    base_url: str = ""
    model: str = ""
    api_key_env: str = setting("")
    tokenizer: str = ""
    prompt: PromptMode = PromptMode.auto
    api: Api = added(Api.auto)
    gpu_uuids: List[str] = field(default_factory=list)
    request_timeout_s: float = setting(600.0)
    probe_timeout_s: float = setting(30.0)

    def validate(self) -> None:
        check("engine.endpoint.base_url", self.base_url,
              not self.base_url or self.base_url.startswith(("http://", "https://")), "must start with http:// or https://")
        check("engine.endpoint.api_key_env", self.api_key_env, not self.api_key_env or bool(_ENV_NAME.match(self.api_key_env)),
              "must be the NAME of an environment variable (the key itself never goes in the config)")
        for uuid in self.gpu_uuids:
            check("engine.endpoint.gpu_uuids", uuid, str(uuid).startswith(("GPU-", "MIG-")), "NVML UUIDs (GPU-...)")
        check("engine.endpoint.request_timeout_s", self.request_timeout_s, self.request_timeout_s > 0, "must be > 0")
        check("engine.endpoint.probe_timeout_s", self.probe_timeout_s, self.probe_timeout_s > 0, "must be > 0")
        check("engine.endpoint.api", self.api.value, not (self.api is Api.chat and self.prompt is PromptMode.token_ids),
              "chat sends text messages: engine.endpoint.prompt=token_ids needs api=completions")
