"""The hf engine's pure helpers: device/dtype/quantization choice, static batches (the plan's
schedule), prompts, token counting from ids, per-request records and the step clock. No model is
loaded here."""
from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys

import numpy as np
import pytest

from orchestrator.app.hydra_entry import typed
from orchestrator.client import model_files as models
from orchestrator.client.workload import RequestSpec, build_plan
from orchestrator.config.groups import WorkloadKind
from orchestrator.driver.grid import cell_configs as grid_cell_configs
from orchestrator.driver.grid import group_option
from orchestrator.engines import ENGINES, engine_for
from orchestrator.engines.hf import engine as hf
from orchestrator.engines.hf import model as hf_model
from orchestrator.errors import CellFailure, Status


def _model(name):
    return group_option("model", name)


def _offline(compose, num_batches, warmup_batches, min_window_s=0):
    """The real offline workload config (Hydra compose, typed) with these batch counts."""
    cfg = compose(["workload=offline", f"workload.num_batches={num_batches}",
                   f"workload.warmup_batches={warmup_batches}", f"workload.min_window_s={min_window_s}"])
    return typed(cfg).workload


# ------------------------------------------------------------------ device, dtype, quantization


@pytest.mark.parametrize("requested, cuda, expected", [
    ("auto", True, "cuda"), ("auto", False, "cpu"), ("cpu", True, "cpu"), ("cuda", True, "cuda"),
])
def test_resolve_device(requested, cuda, expected):
    assert hf.resolve_device(requested, cuda) == expected


@pytest.mark.parametrize("requested", ["cuda", "tpu"])
def test_resolve_device_refuses_what_cannot_run(requested):
    with pytest.raises(CellFailure) as err:
        hf.resolve_device(requested, cuda_available=False)
    assert err.value.status is Status.unsupported and requested in str(err.value)


@pytest.mark.parametrize("requested, device, bf16, quant, expected", [
    ("auto", "cpu", False, "none", "float32"),
    ("auto", "cuda", True, "none", "bfloat16"),
    ("auto", "cuda", False, "none", "float16"),  # e.g. T4 (sm75): no bf16
    ("float16", "cuda", True, "none", "float16"),
    ("float32", "cuda", True, "none", "float32"),
    ("auto", "cuda", True, "int8", "float16"),  # LLM.int8 keeps the rest in fp16
])
def test_resolve_dtype(requested, device, bf16, quant, expected):
    assert hf.resolve_dtype(requested, device, bf16, quant) == expected


def test_resolve_dtype_refuses_bf16_where_the_gpu_has_none_and_unknown_names():
    with pytest.raises(CellFailure, match="bf16"):
        hf.resolve_dtype("bfloat16", "cuda", bf16_supported=False)
    with pytest.raises(CellFailure, match="fp8"):
        hf.resolve_dtype("fp8", "cuda", bf16_supported=True)


def test_int8_on_the_cpu_and_other_formats_are_unsupported_with_the_reason():
    hf.check_quantization("none", "cpu")
    with pytest.raises(CellFailure) as err:
        hf.check_quantization("int8", "cpu")
    assert err.value.status is Status.unsupported and "CUDA GPU" in str(err.value)
    with pytest.raises(CellFailure, match="awq"):
        hf.check_quantization("awq", "cuda")


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed here")
def test_int8_without_bitsandbytes_is_unsupported_and_says_why():
    with pytest.raises(CellFailure) as err:
        hf.check_quantization("int8", "cuda")
    assert err.value.status is Status.unsupported and "bitsandbytes does not import" in str(err.value)


def test_host_memory_check_stops_a_7b_on_a_small_host_and_lets_tiny_through():
    with pytest.raises(CellFailure) as err:
        hf_model.check_host_memory(_model("llama2_7b"), bytes_per_param=4, host_bytes=16 * 2**30)
    assert err.value.status is Status.oom and "llama2_7b" in str(err.value)
    hf_model.check_host_memory(_model("tiny"), bytes_per_param=4, host_bytes=2**30)


def test_random_model_has_the_config_shapes_on_the_device_and_dtype(tmp_path):
    import torch

    path = models.model_dir(_model("tiny"), group_option("quantization", "none"), root=tmp_path)
    a = hf_model.random_model(path, "cpu", "float32")
    assert a.config.num_hidden_layers == 2 and a.get_input_embeddings().weight.shape == (512, 64)
    assert next(a.parameters()).dtype == torch.float32 and next(a.parameters()).device.type == "cpu"
    b = hf_model.random_model(path, "cpu", "float32")
    assert torch.equal(a.get_input_embeddings().weight, b.get_input_embeddings().weight)  # seeded: every start
    assert hf_model.torch_dtype("float16") is torch.float16


# ------------------------------------------------------------------ batches and prompts


def _drive(schedule, seconds_per_batch):
    """Run ``schedule`` as an engine does (``ran`` after each batch), each batch taking this long."""
    out, t = [], 0.0
    for specs in schedule:
        out.append((schedule.step(), specs))
        schedule.ran(t, t + seconds_per_batch)
        t += seconds_per_batch
    return out


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_static_batches_are_exactly_batch_size_and_in_order(compose, batch_size):
    """The batches the hf engine runs (``plan.schedule()``): warm-up first, exactly batch_size each."""
    plan = build_plan(_offline(compose, num_batches=2, warmup_batches=1), batch_size)
    ran = _drive(plan.schedule(), 1.0)
    batches = [specs for _, specs in ran]
    assert len(batches) == 3 and all(len(b) == batch_size for b in batches)
    assert [b[0].phase for b in batches] == ["warmup", "measured", "measured"]
    assert [s.index for b in batches for s in b] == list(range(3 * batch_size))
    assert [s for b in batches for s in b] == plan.requests
    assert [step for step, _ in ran] == [("warmup", 0, 1), ("measured", 0, 2), ("measured", 1, 2)]


def test_static_batches_need_each_batch_reported(compose):
    """An engine must report each batch's bounds before the next (the window depends on them)."""
    plan = build_plan(_offline(compose, num_batches=2, warmup_batches=0), 2)
    with pytest.raises(RuntimeError, match="ran"):
        for _ in plan.schedule():
            pass


def test_prompt_ids_have_exact_length_ordinary_ids_and_are_deterministic(compose):
    wl = _offline(compose, num_batches=1, warmup_batches=0)
    plan = build_plan(wl, 1, prompt_key=5)
    spec = RequestSpec(index=5, phase="measured", arrival_s=0.0, input_tokens=128, output_tokens=8)
    ids = plan.prompt_ids(spec, vocab_size=512)
    assert len(ids) == 128 and min(ids) >= 3 and max(ids) < 512
    assert ids == build_plan(wl, 1, prompt_key=5).prompt_ids(spec, 512)
    other = RequestSpec(index=6, phase="measured", arrival_s=0.0, input_tokens=128, output_tokens=8)
    assert ids != plan.prompt_ids(other, 512) and ids != build_plan(wl, 1, prompt_key=6).prompt_ids(spec, 512)
    assert models.prompt_digest(ids) == models.prompt_digest(list(ids)) != models.prompt_digest(ids[:-1])
    assert len(models.prompt_digest(ids)) == 16 and not hasattr(hf, "prompt_ids")  # one source of prompts


# ------------------------------------------------------------------ counting and records


@pytest.mark.parametrize("ids, expected", [
    ([7, 8, 9, 10], 4),  # no EOS: every generated position counts
    ([7, 2, 0, 0], 2),  # EOS at position 1, then padding
    ([2, 0, 0, 0], 1),
    ([], 0),
])
def test_tokens_generated_counts_ids_up_to_the_first_eos(ids, expected):
    assert hf.tokens_generated(ids, eos_ids=[2]) == expected


def test_request_record_uses_step_times_and_requested_count():
    spec = RequestSpec(index=3, phase="measured", arrival_s=0.0, input_tokens=16, output_tokens=3, batch_index=1)
    steps = [10.1, 10.2, 10.3, 10.4, 10.5]  # the batch ran 5 steps: another request asked for 5
    rec = hf.request_record(spec, send_s=10.0, step_times_s=steps, new_ids=[5, 6, 7, 8, 9], eos_ids=[2])
    assert rec.output_tokens == 3 == rec.requested_output_tokens
    assert rec.first_token_s == 10.1 and rec.end_s == 10.3 and rec.arrival_s == rec.send_s == 10.0
    np.testing.assert_allclose(rec.token_times_s, [10.1, 10.2, 10.3])
    assert rec.status == "ok" and rec.batch_index == 1 and rec.phase == "measured"


def test_request_record_stops_at_an_early_eos_and_flags_an_empty_one():
    spec = RequestSpec(index=0, phase="warmup", arrival_s=0.0, input_tokens=4, output_tokens=4)
    early = hf.request_record(spec, 1.0, [1.1, 1.2, 1.3, 1.4], [9, 2, 0, 0], [2])
    assert early.output_tokens == 2 and early.end_s == 1.2
    empty = hf.request_record(spec, 1.0, [], [], [2])
    assert empty.status == "error" and empty.output_tokens == 0


def test_step_clock_skips_the_prompt_and_stamps_each_step():
    clock = hf.StepClock()
    clock.put(np.zeros((2, 5)))  # the prompt ids, once
    for _ in range(3):
        clock.put(np.zeros(2))
    clock.end()
    assert len(clock.times_s) == 3 and clock.times_s == sorted(clock.times_s)


# ------------------------------------------------------------------ the engine object before start()


def test_engine_is_registered_cheap_and_picklable_before_start(compose):
    root = typed(compose(["engine=hf", "model=tiny", "workload=offline"]))
    (cfg,) = grid_cell_configs([root])
    cls = engine_for("hf", cfg.workload.kind)
    assert cls is hf.HfEngine and ENGINES.variants("hf") == [hf.HfEngine]
    assert engine_for("hf", WorkloadKind.open_loop) is None and engine_for("hf", WorkloadKind.closed_loop) is None
    engine = cls(cfg, max_batch_size=4)
    assert engine.options is cfg.engine.hf and engine.config is cfg
    assert engine.uses_gpu is False and engine.gpu_uuid() is None
    assert pickle.loads(pickle.dumps(engine)).max_batch_size == 4
    assert set(engine.versions()) == {"torch", "transformers", "bitsandbytes"}
    engine.stop()  # idempotent, also before start
    assert engine.stop_report() == {}


def test_importing_the_engine_imports_neither_torch_nor_transformers():
    code = ("import sys, orchestrator, orchestrator.engines.hf.engine, orchestrator.engines.hf.model, orchestrator.client.model_files; "
            "print(sorted(m for m in ('torch', 'transformers', 'bitsandbytes') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
