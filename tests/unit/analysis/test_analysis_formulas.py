"""Roofline, VRAM, cost and formatting formulas against values computed by hand.

Llama-2-7B: 32 layers, hidden 4096, 32 heads of 128 (no GQA), MLP 11008, vocab 32000.
"""
from __future__ import annotations

import dataclasses
import math

import pytest

from orchestrator.analysis import format as fmt
from orchestrator.analysis.cost import CostAssumptions, monthly_kwh
from orchestrator.analysis.roofline_table import roofline_row
from orchestrator.config.groups import GpuConfig, ModelConfig, Precision, QuantizationConfig
from orchestrator.driver.grid import config_of
from orchestrator.perf import roofline, vram

# Typed objects with the numbers written out by hand (not read from conf/), so the expected
# values below check the maths, not the YAML.
LLAMA2_7B = ModelConfig(name="llama2_7b", n_layers=32, hidden_size=4096, intermediate_size=11008, n_heads=32,
                        n_kv_heads=32, vocab_size=32000, tie_word_embeddings=False)
MISTRAL_7B = dataclasses.replace(LLAMA2_7B, name="mistral_7b", intermediate_size=14336, n_kv_heads=8)
FP16 = QuantizationConfig(name="none", bits_per_weight=16, activation_dtype=Precision.fp16)
AWQ = QuantizationConfig(name="awq", bits_per_weight=4.25, activation_dtype=Precision.fp16)
INT8 = QuantizationConfig(name="int8", bits_per_weight=8, activation_dtype=Precision.int8,
                          activation_min_compute_capability=7.5)
T4 = GpuConfig(name="t4", accelerator_type="T4", nvml_name_contains="T4", memory_gib=15.0, memory_bandwidth_gbps=320,
               peak_tflops_fp16=65, peak_tflops_int8=130, peak_tflops_fp8=None, tdp_w=70, idle_w=27,
               compute_capability=7.5)
H100 = GpuConfig(name="h100", accelerator_type="H100", nvml_name_contains="H100", memory_gib=79.6,
                 memory_bandwidth_gbps=3350, peak_tflops_fp16=989, peak_tflops_int8=1979, peak_tflops_fp8=1979,
                 tdp_w=700, idle_w=70, compute_capability=9.0)

# By hand: per layer q,o: 2 x 4096 x 4096; k,v: 2 x 4096 x 4096; MLP: 3 x 4096 x 11008.
LINEAR = 32 * (2 * 4096 * 4096 + 2 * 4096 * 4096 + 3 * 4096 * 11008)  # 6,476,005,376
EMBED = 2 * 32000 * 4096  # input embedding + LM head: 262,144,000
KV_PER_TOKEN = 2 * 32 * 4096 * 2  # K and V x layers x hidden x 2 bytes


def test_llama2_7b_kv_cache_is_512_kib_per_token():
    assert KV_PER_TOKEN == 512 * 1024
    assert roofline.kv_bytes_per_token(LLAMA2_7B) == 524_288


def test_mistral_7b_kv_cache_is_a_quarter_with_8_kv_heads():
    assert roofline.kv_bytes_per_token(MISTRAL_7B) == 2 * 32 * 8 * 128 * 2 == 131_072


def test_llama2_7b_parameters_and_fp16_weights_are_13_5_gb():
    assert LINEAR == 6_476_005_376 and EMBED == 262_144_000
    assert roofline.linear_params(LLAMA2_7B) == LINEAR
    assert roofline.total_params(LLAMA2_7B) == 6_738_149_376  # 6.74 B (norm weights not counted)
    w = roofline.weight_bytes(LLAMA2_7B, FP16)
    assert w == 2 * (LINEAR + EMBED) == 13_476_298_752
    assert 13.4e9 < w < 13.6e9  # the seed's "~13.5 GB"


def test_awq_weights_keep_embeddings_in_fp16():
    assert roofline.weight_bytes(LLAMA2_7B, AWQ) == LINEAR * 4.25 / 8 + EMBED * 2 == 3_964_665_856


def test_ridge_points_match_the_datasheets():
    assert roofline.ridge_point(T4, FP16) == pytest.approx(65e12 / 320e9) == pytest.approx(203.125)  # seed: 203
    assert roofline.ridge_point(T4, INT8) == pytest.approx(406.25)
    assert roofline.ridge_point(H100, FP16) == pytest.approx(989e12 / 3350e9)


def test_decode_intensity_at_batch_1_by_hand():
    context = 255  # attention over 255 cached tokens, KV read for 256 (255 + the new one)
    flops = 2 * (LINEAR + 32000 * 4096) + 4 * 32 * 4096 * context
    fp16_bytes = 13_476_298_752 + KV_PER_TOKEN * 256
    awq_bytes = 3_964_665_856 + KV_PER_TOKEN * 256
    assert roofline.decode_cost(LLAMA2_7B, FP16, 1, context).intensity == pytest.approx(flops / fp16_bytes)
    awq = roofline.decode_cost(LLAMA2_7B, AWQ, 1, context).intensity
    assert awq == pytest.approx(flops / awq_bytes) == pytest.approx(3.256, abs=1e-3)  # seed: "AI ≈ 3 at batch 1"


def test_decode_ceiling_is_memory_bound_at_small_batch():
    tok_s, bound = roofline.decode_ceiling_tok_s(LLAMA2_7B, FP16, H100, 1, 255)
    assert bound == "memory"
    assert tok_s == pytest.approx(3350e9 / (13_476_298_752 + KV_PER_TOKEN * 256))  # one token per full read


def test_batch_to_ridge_reaches_the_ridge_or_never():
    short = roofline.batch_to_ridge(LLAMA2_7B, FP16, H100, 10)
    assert roofline.decode_cost(LLAMA2_7B, FP16, short, 10).intensity == pytest.approx(roofline.ridge_point(H100, FP16))
    # Llama-2 (no GQA) at 384 tokens: KV bytes per sequence (512 KiB x 385) outweigh its FLOPs/ridge.
    assert math.isinf(roofline.batch_to_ridge(LLAMA2_7B, FP16, H100, 384))


def test_roofline_row_achieved_fraction():
    cell = dataclasses.replace(config_of(["model=llama2_7b", "quantization=none", "gpu=h100"]),
                               model=LLAMA2_7B, quantization=FP16, gpu=H100)
    row = roofline_row(cell, 8, 8, 255, 1000.0)
    ceiling, _ = roofline.decode_ceiling_tok_s(LLAMA2_7B, FP16, H100, 8, 255)
    assert row["ceiling_tok_s"] == pytest.approx(ceiling)
    assert row["achieved_fraction"] == pytest.approx(1000.0 / ceiling)
    per_token_flops = 2 * (LINEAR + 32000 * 4096) + 4 * 32 * 4096 * 255
    assert row["achieved_tflops"] == pytest.approx(1000.0 * per_token_flops / 1e12)


def test_vram_budget_by_hand():
    b = vram.vram_budget(LLAMA2_7B, FP16, H100, batch=8, context_tokens=384, memory_utilization=0.9)
    gib = 1024**3
    weights = 13_476_298_752 / gib
    kv_req = KV_PER_TOKEN * 384 / gib
    act = (2048 * (4 * 4096 + 2 * 11008) * 2 + 8 * 32000 * 4) / gib
    assert kv_req == 0.1875
    assert b.weights_gib == pytest.approx(weights) and b.kv_per_request_gib == pytest.approx(kv_req)
    assert b.activations_gib == pytest.approx(act)
    assert b.total_gib == pytest.approx(weights + 8 * kv_req + act + 1.0)
    assert b.capacity_gib == pytest.approx(79.6 * 0.9)
    assert b.max_batch == math.floor((79.6 * 0.9 - weights - act - 1.0) / kv_req) == 309


def test_fp16_llama2_7b_does_not_fit_a_t4():
    assert not vram.vram_budget(LLAMA2_7B, FP16, T4, 1, 384).fits


def test_monthly_energy_cost_and_carbon():
    # The second seed: 14.16 J/request, 1M requests/month, $0.04/kWh, 555 gCO2/kWh.
    kwh = monthly_kwh(14.16, 1_000_000)
    assert kwh == pytest.approx(14.16e6 / 3.6e6) == pytest.approx(3.9333, abs=1e-4)
    # (the seed's table prints 3,933 kWh / $157 / 2,183 kg: 1000x too much — J taken for kJ)
    assert kwh * 0.04 == pytest.approx(0.1573, abs=1e-4)
    assert kwh * 555 / 1000 == pytest.approx(2.183, abs=1e-3)
    assert CostAssumptions().requests_per_month == 1_000_000


@pytest.mark.parametrize("value,text", [
    (5781.3, "5,781"), (548.23, "548.2"), (18.094, "18.09"), (0.6123, "0.612"), (20.0, "20"), (100.0, "100"),
    (None, "—"), (float("nan"), "—"), (0, "0"),
])
def test_number_format(value, text):
    assert fmt.num(value) == text


def test_percent_ratio_batch_format():
    assert fmt.pct(348.46) == "+348.5%" and fmt.pct(-95.71) == "-95.7%" and fmt.pct(None) == "—"
    assert fmt.ratio(3.456) == "3.46×" and fmt.ratio(55.5) == "55.5×"
    assert fmt.batch(16.0) == "16" and fmt.batch(2.5) == "2.50"
