"""VRAM budget: weights + KV cache x batch + activations + runtime overhead (GiB).

The engine's usable memory is ``memory_gib x gpu_memory_utilization`` (vLLM's knob; the HF
engine uses the same fraction). Runtime overhead (CUDA context, CUDA graphs, allocator slack)
is a fixed 1 GiB; activations are those of one step of ``step_tokens`` tokens
(``(4 x hidden + 2 x intermediate) x 2`` bytes per token) plus fp32 logits of the batch.

A cell over ``gpus`` GPUs (tensor parallelism) holds 1/gpus of the weights and of the KV cache on
each, and the whole activations and overhead on each (conservative: vLLM shards most of the
activations too, not the logits); every size is per GPU. ``min_gpus``: the fewest GPUs (a power
of two up to 8, as vLLM splits attention heads) a cell fits on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from orchestrator.perf.roofline import kv_bytes_per_token, weight_bytes

if TYPE_CHECKING:
    from orchestrator.config.groups import GpuConfig, ModelConfig, QuantizationConfig

GIB = 1024**3
RUNTIME_OVERHEAD_GIB = 1.0


@dataclass(frozen=True)
class VramBudget:
    """All sizes in GiB. ``max_batch``: largest batch whose KV fits beside everything else."""

    weights_gib: float
    kv_per_request_gib: float
    kv_gib: float
    activations_gib: float
    overhead_gib: float
    total_gib: float
    capacity_gib: float
    max_batch: int

    @property
    def fits(self) -> bool:
        return self.total_gib <= self.capacity_gib


def activation_bytes(model: "ModelConfig", step_tokens: int, batch: int) -> float:
    per_token = (4 * model.hidden_size + 2 * model.intermediate_size) * 2
    return step_tokens * per_token + batch * model.vocab_size * 4


def vram_budget(
    model: "ModelConfig",
    quantization: "QuantizationConfig",
    gpu: "GpuConfig",
    batch: int,
    context_tokens: int,
    memory_utilization: float = 0.9,
    step_tokens: int = 2048,
    gpus: int = 1,
) -> VramBudget:
    """Budget of ``batch`` sequences of ``context_tokens`` tokens each on ``gpu`` (per GPU of
    ``gpus`` a cell spans)."""
    w = weight_bytes(model, quantization) / GIB / gpus
    kv_req = kv_bytes_per_token(model) * context_tokens / GIB / gpus
    act = activation_bytes(model, max(step_tokens, batch), batch) / GIB
    capacity = gpu.memory_gib * memory_utilization
    free_for_kv = capacity - w - act - RUNTIME_OVERHEAD_GIB
    max_batch = max(0, int(free_for_kv // kv_req)) if kv_req > 0 else 0
    total = w + kv_req * batch + act + RUNTIME_OVERHEAD_GIB
    return VramBudget(
        weights_gib=w,
        kv_per_request_gib=kv_req,
        kv_gib=kv_req * batch,
        activations_gib=act,
        overhead_gib=RUNTIME_OVERHEAD_GIB,
        total_gib=total,
        capacity_gib=capacity,
        max_batch=max_batch,
    )


def min_gpus(model: "ModelConfig", quantization: "QuantizationConfig", gpu: "GpuConfig", batch: int,
             context_tokens: int, memory_utilization: float = 0.9) -> Optional[int]:
    """The fewest GPUs (1, 2, 4 or 8) over which ``batch`` sequences fit, or None (not on 8)."""
    for n in (1, 2, 4, 8):
        if vram_budget(model, quantization, gpu, batch, context_tokens, memory_utilization, gpus=n).fits:
            return n
    return None


def kv_capacity_tokens(cfg) -> int:
    """Tokens of KV cache a cell's engine holds: what its memory fraction leaves after the
    weights, the activations of one ``batch_size`` step and the runtime overhead (at least 1)."""
    fraction = cfg.engine.options(cfg.engine.name).memory_fraction()
    budget = vram_budget(cfg.model, cfg.quantization, cfg.gpu, int(cfg.batch_size), 1, fraction,
                         gpus=int(cfg.tensor_parallel_size))
    free_gib = budget.capacity_gib - budget.weights_gib - budget.activations_gib - budget.overhead_gib
    per_token_gib = kv_bytes_per_token(cfg.model) / GIB / int(cfg.tensor_parallel_size)  # per GPU
    return max(1, int(free_gib / per_token_gib)) if per_token_gib > 0 else 1
