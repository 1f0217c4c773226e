"""Roofline maths for decoder-only transformers (pure functions, SI units).

Conventions: a parameter's weight costs ``bits_per_weight / 8`` bytes when it sits in a
quantized linear layer; embeddings and the LM head stay fp16 (2 bytes). KV cache is fp16:
``2 (K and V) x layers x kv_heads x head_dim x 2 bytes`` per token, 512 KiB for Llama-2-7B.
A decode step of a batch reads every weight once plus the KV of every running sequence, and
does ``2 x linear params`` FLOPs per sequence plus ``4 x layers x heads x head_dim`` per cached
token (QK^T and PV).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.config.groups import Precision

if TYPE_CHECKING:
    from orchestrator.config.groups import GpuConfig, ModelConfig, QuantizationConfig

FP16_BYTES = 2


def head_dim(model: "ModelConfig") -> int:
    return model.hidden_size // model.n_heads


def linear_params(model: "ModelConfig") -> int:
    """Parameters in the attention and MLP projections of all layers (the quantizable ones)."""
    h, hd = model.hidden_size, head_dim(model)
    q_o = 2 * h * model.n_heads * hd
    k_v = 2 * h * model.n_kv_heads * hd
    mlp = 3 * h * model.intermediate_size
    return model.n_layers * (q_o + k_v + mlp)


def embedding_params(model: "ModelConfig") -> int:
    """Input embedding plus LM head (one matrix when tied)."""
    copies = 1 if model.tie_word_embeddings else 2
    return copies * model.vocab_size * model.hidden_size


def total_params(model: "ModelConfig") -> int:
    return linear_params(model) + embedding_params(model)


def weight_bytes(model: "ModelConfig", quantization: "QuantizationConfig") -> float:
    """Bytes of weights on the GPU: quantized linears + fp16 embeddings/LM head."""
    return linear_params(model) * quantization.bits_per_weight / 8 + embedding_params(
        model
    ) * FP16_BYTES


def quantized_weight_bytes(model: "ModelConfig", quantization: "QuantizationConfig") -> float:
    """Bytes of the linear weights a quantization method stores below 16 bits (0 for fp16)."""
    return linear_params(model) * quantization.bits_per_weight / 8 if quantization.bits_per_weight < 16 else 0.0


def kv_bytes_per_token(model: "ModelConfig") -> int:
    """fp16 KV-cache bytes per token of context: 2 x layers x kv_heads x head_dim x 2."""
    return 2 * model.n_layers * model.n_kv_heads * head_dim(model) * FP16_BYTES


def peak_flops(gpu: "GpuConfig", quantization: "QuantizationConfig") -> float:
    """Peak FLOP/s (dense) for the dtype the matmuls run in on this GPU."""
    act = Precision(quantization.activation_dtype)
    if gpu.compute_capability < quantization.activation_min_compute_capability:
        act = Precision.fp16
    if act is Precision.fp8 and gpu.peak_tflops_fp8:
        return gpu.peak_tflops_fp8 * 1e12
    if act is Precision.int8:
        return gpu.peak_tflops_int8 * 1e12
    return gpu.peak_tflops_fp16 * 1e12


def bandwidth_bytes_s(gpu: "GpuConfig") -> float:
    return gpu.memory_bandwidth_gbps * 1e9


def ridge_point(gpu: "GpuConfig", quantization: "QuantizationConfig") -> float:
    """Arithmetic intensity (FLOP/byte) where memory- and compute-bound ceilings meet."""
    return peak_flops(gpu, quantization) / bandwidth_bytes_s(gpu)


@dataclass(frozen=True)
class StepCost:
    """Work of one engine step: FLOPs and bytes moved; intensity in FLOP/byte."""

    flops: float
    bytes: float

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else 0.0


@dataclass(frozen=True)
class StepModel:
    """A step's bytes and FLOPs as linear functions of its new and cached tokens, for one
    model x quantization (computed once; ``cost`` is what a simulator calls every step)."""

    weight_bytes: float
    kv_bytes_per_token: float
    flops_per_new_token: float  # linears + LM head
    flops_per_cached_token: float  # QK^T and PV over the KV cache

    def cost(self, new_tokens: float, cached_tokens: float) -> StepCost:
        """Cost of a step that computes ``new_tokens`` tokens (prefill tokens plus one per
        decoding sequence) attending over ``cached_tokens`` tokens of KV in total (linear in
        both: a mean over steps may be fractional)."""
        return StepCost(flops=self.flops_per_new_token * new_tokens + self.flops_per_cached_token * cached_tokens,
                        bytes=self.weight_bytes + self.kv_bytes_per_token * (cached_tokens + new_tokens))


@dataclass(frozen=True)
class AllReduceModel:
    """The all-reduces of one tensor-parallel step: two per layer (after attention and after the
    MLP) of the step's hidden states (``new_tokens x hidden x 2`` bytes), each a ring all-reduce:
    ``latency_s + 2 (N - 1) / N x bytes / link bytes/s``. Zero on one GPU."""

    layers: int
    bytes_per_token: float
    gpus: int
    link_bytes_s: float
    latency_s: float

    def seconds(self, new_tokens: float) -> float:
        if self.gpus <= 1:
            return 0.0
        ring = 2.0 * (self.gpus - 1) / self.gpus * self.bytes_per_token * new_tokens / self.link_bytes_s
        return 2 * self.layers * (self.latency_s + ring)


def allreduce_model(model: "ModelConfig", gpu: "GpuConfig", gpus: int, latency_s: float) -> AllReduceModel:
    """``AllReduceModel`` of ``model`` over ``gpus`` GPUs of ``gpu``'s type (its
    ``interconnect_gbps``, each way)."""
    return AllReduceModel(layers=model.n_layers, bytes_per_token=float(model.hidden_size * FP16_BYTES), gpus=int(gpus),
                          link_bytes_s=gpu.interconnect_gbps * 1e9, latency_s=float(latency_s))


def step_model(model: "ModelConfig", quantization: "QuantizationConfig") -> StepModel:
    return StepModel(
        weight_bytes=weight_bytes(model, quantization),
        kv_bytes_per_token=kv_bytes_per_token(model),
        flops_per_new_token=2.0 * (linear_params(model) + model.vocab_size * model.hidden_size),
        flops_per_cached_token=4.0 * model.n_layers * model.n_heads * head_dim(model),
    )


def step_cost(model: "ModelConfig", quantization: "QuantizationConfig", new_tokens: float,
              cached_tokens: float) -> StepCost:
    """``StepModel.cost`` of ``model`` x ``quantization``."""
    return step_model(model, quantization).cost(new_tokens, cached_tokens)


def decode_cost(model: "ModelConfig", quantization: "QuantizationConfig", batch: float,
                context_tokens: float) -> StepCost:
    """One decode step of ``batch`` sequences each holding ``context_tokens`` of context (both
    may be means, fractional: an effective batch, a mean context)."""
    return step_cost(model, quantization, new_tokens=batch, cached_tokens=batch * context_tokens)


def decode_ceiling_tok_s(
    model: "ModelConfig", quantization: "QuantizationConfig", gpu: "GpuConfig", batch: float, context_tokens: float
) -> tuple[float, str]:
    """Roofline ceiling of decode throughput (tokens/s) and which roof bounds it."""
    cost = decode_cost(model, quantization, batch, context_tokens)
    t_mem = cost.bytes / bandwidth_bytes_s(gpu)
    t_compute = cost.flops / peak_flops(gpu, quantization)
    bound = "memory" if t_mem >= t_compute else "compute"
    return batch / max(t_mem, t_compute), bound


def batch_to_ridge(model: "ModelConfig", quantization: "QuantizationConfig", gpu: "GpuConfig",
                   context_tokens: float) -> float:
    """Smallest decode batch whose step intensity reaches the ridge point (sequences; may be
    fractional), or ``inf`` when KV traffic per sequence keeps decode memory-bound at any batch.

    With ``f`` FLOPs and ``k`` KV bytes per sequence per step and ``W`` weight bytes, intensity
    ``b f / (W + b k)`` reaches the ridge ``R`` at ``b = R W / (f - R k)`` when ``f > R k``."""
    one = decode_cost(model, quantization, 1, context_tokens)
    w = weight_bytes(model, quantization)
    f, k = one.flops, one.bytes - w
    r = ridge_point(gpu, quantization)
    return r * w / (f - r * k) if f > r * k else float("inf")


def step_seconds(model: "ModelConfig", quantization: "QuantizationConfig", gpu: "GpuConfig", new_tokens: int,
                 cached_tokens: int, memory_efficiency: float = 1.0, compute_efficiency: float = 1.0) -> float:
    """Roofline time (s) of one step (``step_cost``) at the given fractions of the datasheet
    bandwidth and peak FLOP/s: the slower of moving its bytes and computing its FLOPs."""
    cost = step_cost(model, quantization, new_tokens, cached_tokens)
    t_mem = cost.bytes / (bandwidth_bytes_s(gpu) * memory_efficiency)
    t_compute = cost.flops / (peak_flops(gpu, quantization) * compute_efficiency)
    return max(t_mem, t_compute)


def request_seconds(model: "ModelConfig", quantization: "QuantizationConfig", gpu: "GpuConfig", input_tokens: int,
                    output_tokens: int, batch: int, efficiency: float = 1.0) -> float:
    """Roofline time (s) of one request running among ``batch`` alike: its prefill, then
    ``output_tokens`` decode steps of the whole batch at the mean context (input + output / 2)."""
    prefill = step_seconds(model, quantization, gpu, input_tokens, 0, efficiency, efficiency)
    context = int(input_tokens + output_tokens / 2)
    decode = step_seconds(model, quantization, gpu, batch, batch * context, efficiency, efficiency)
    return prefill + output_tokens * decode
