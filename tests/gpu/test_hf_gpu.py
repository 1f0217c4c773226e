"""The hf engine on the real GPU (``pytest -m gpu tests/gpu``): Llama-2-7B's shape with random
weights created on the card, through the orchestrator on a local Ray cluster into Parquet, with
energy measured by NVML; bitsandbytes INT8 runs where bitsandbytes imports, else ends
``unsupported`` with the reason."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json

import pytest

from orchestrator.store.sweep_store import load
from tests.conftest import run_orchestrator

pytestmark = pytest.mark.gpu


def _sweep(tmp_path, gpu_option, *overrides):
    out = tmp_path / "hf_gpu"
    run_orchestrator(["-m", "engine=hf", "model=llama2_7b", f"gpu={gpu_option}", "workload=offline", "batch_size=8",
                      "sampler=nvml", "workload.num_batches=2", "workload.input.mean_tokens=128",
                      "workload.output.mean_tokens=64", f"store.dir={out}", *overrides], timeout=600)
    t = load(str(out))
    runs = t.runs.to_pylist()
    assert len(runs) == 1, runs
    return t, runs[0]


def test_hf_fp16_7b_on_the_gpu_measures_speed_and_energy(tmp_path, gpu, gpu_option):
    t, r = _sweep(tmp_path, gpu_option, "engine.hf.dtype=float16")
    assert r["status"] == "ok", r["error"]
    extra = json.loads(r["engine_extra"])
    assert extra["device"] == "cuda" and extra["dtype"] == "float16" and "random" in extra["weights"]
    assert r["gpu_uuid"] == gpu.uuid and r["gpu_name"] == gpu.name
    # at least num_batches=2 batches of 8, more until the window reaches min_window_s (10 s)
    n = r["n_batches_measured"]
    assert n >= 2 and r["window_s"] >= r["min_window_s"] == 10.0 and not r["short_window"]
    assert r["n_requests_measured"] == 8 * n and r["output_tokens_in_window"] == 8 * n * 64
    assert 0 <= r["batch_output_tok_s_cv"] < 0.2  # batches of one shape run alike on a GPU
    assert not r["token_count_mismatch"] and r["output_throughput_tok_s"] > 0
    assert r["energy_source"] == "nvml" and r["energy_j"] > 0 and r["energy_per_1k_output_tokens_j"] > 0
    assert r["mean_power_w"] > 50 and not r["energy_invalid"]
    assert r["memory_used_max_mib"] > 13_000  # 6.7 B fp16 weights live on the card
    req = t.requests.to_pandas()
    assert (req.output_tokens == req.requested_output_tokens).all() and (req.first_token_s <= req.end_s).all()


def test_hf_int8_runs_with_bitsandbytes_or_says_why_not(tmp_path, gpu_option):
    _, r = _sweep(tmp_path, gpu_option, "quantization=int8", "engine.hf.int8_threshold=0.0")
    if importlib.util.find_spec("bitsandbytes") is None:
        assert r["status"] == "unsupported" and "bitsandbytes" in r["error"], r["error"]
        return
    assert r["status"] == "ok", r["error"]
    extra = json.loads(r["engine_extra"])
    assert extra["quantization"] == "int8" and extra["llm_int8_threshold"] == 0.0
    assert json.loads(r["engine_versions"])["bitsandbytes"] == importlib.metadata.version("bitsandbytes")
    assert r["energy_j"] > 0 and not r["token_count_mismatch"]
