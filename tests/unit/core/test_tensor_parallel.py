"""Cells over several GPUs (``tensor_parallel_size``, issue 32), everything but placement (that is
``tests/integration/test_tensor_parallel_placement.py``): a one-GPU cell keeps its id; engines
that run one GPU per cell refuse more before launch; the VRAM budget splits weights and KV cache
per GPU and names the size that fits; the simulator splits the work, adds the all-reduces and
draws N GPUs' power; vLLM gets the size and its multiprocessing backend; a vLLM engine claims
every GPU it was given (autospec'd NVML with two H100s) and the sampler sums them."""
from __future__ import annotations

import sys
import types

import pytest

from orchestrator.config.root import CellConfig
from orchestrator.core.identity import cell_identity, digest
from orchestrator.driver.grid import config_of, prelaunch_status
from orchestrator.errors import CellFailure, ConfigError, Status
from orchestrator.perf.roofline import allreduce_model
from orchestrator.perf.vram import min_gpus, vram_budget

SEVENTY = ["model=llama2_70b", "gpu=h100", "workload=offline", "engine=vllm"]


def test_a_one_gpu_cell_keeps_its_id_and_label():
    one, two = config_of(["tensor_parallel_size=1"]), config_of(["tensor_parallel_size=2"])
    assert "tensor_parallel_size" not in cell_identity(one, "vllm")
    assert digest(cell_identity(one, "vllm")) == digest(cell_identity(config_of([]), "vllm"))
    assert cell_identity(two, "vllm")["tensor_parallel_size"] == 2
    assert digest(cell_identity(two, "vllm")) != digest(cell_identity(one, "vllm"))
    assert "/tp" not in one.label() and "/h100/tp2/" in config_of(["gpu=h100", "tensor_parallel_size=2"]).label()
    # a stored config from before the field reads as one GPU
    assert CellConfig.__dataclass_fields__["tensor_parallel_size"].default == 1
    with pytest.raises(ConfigError, match="tensor_parallel_size"):
        config_of(["tensor_parallel_size=0"])


def test_engines_of_one_gpu_refuse_more_before_launch():
    cfg = config_of(["gpu=h100", "workload=offline", "tensor_parallel_size=2", "quantization=int8"])
    status, reason = prelaunch_status(cfg, "hf")
    assert status is Status.unsupported and "runs a cell on one GPU (tensor_parallel_size=2)" in reason
    assert prelaunch_status(config_of(["gpu=h100", "workload=offline", "tensor_parallel_size=2"]), "vllm") == (None, "")
    assert prelaunch_status(config_of(["gpu=h100", "workload=offline", "tensor_parallel_size=2"]), "simulated") == \
        (None, "")


def test_vram_splits_weights_and_kv_per_gpu_and_names_the_size_that_fits():
    cfg = config_of([*SEVENTY, "batch_size=8"])
    one = vram_budget(cfg.model, cfg.quantization, cfg.gpu, 8, 256)
    two = vram_budget(cfg.model, cfg.quantization, cfg.gpu, 8, 256, gpus=2)
    assert two.weights_gib == pytest.approx(one.weights_gib / 2) and two.kv_gib == pytest.approx(one.kv_gib / 2)
    assert two.activations_gib == one.activations_gib and two.capacity_gib == one.capacity_gib
    assert 128 < one.weights_gib < 129  # 69 B parameters in fp16
    assert min_gpus(cfg.model, cfg.quantization, cfg.gpu, 8, 256) == 2
    status, reason = prelaunch_status(cfg, "vllm")
    assert status is Status.infeasible and "fits with tensor_parallel_size >= 2" in reason
    assert prelaunch_status(config_of([*SEVENTY, "batch_size=8", "tensor_parallel_size=2"]), "vllm") == (None, "")
    # long contexts at batch 64 need four 80 GB cards
    big = config_of([*SEVENTY, "batch_size=64", "workload.input.mean_tokens=2048", "tensor_parallel_size=2"])
    status, reason = prelaunch_status(big, "vllm")
    assert status is Status.infeasible and "per GPU of 2" in reason and ">= 4" in reason


def test_allreduce_time_is_two_ring_allreduces_per_layer():
    cfg = config_of(["gpu=h100", "model=llama2_7b"])
    one = allreduce_model(cfg.model, cfg.gpu, 1, 8e-6)
    assert one.seconds(1000) == 0.0
    two = allreduce_model(cfg.model, cfg.gpu, 2, 8e-6)
    ring = 2 * (2 - 1) / 2 * 4096 * 2 * 1000 / (450e9)
    assert two.seconds(1000) == pytest.approx(2 * 32 * (8e-6 + ring))
    four = allreduce_model(cfg.model, cfg.gpu, 4, 8e-6)
    assert four.seconds(1000) > two.seconds(1000)  # 2(N-1)/N grows with N


def _simulate(tp: int, batch: int):
    from orchestrator.client.workload import build_plan
    from orchestrator.engines.simulated import ModeledPowerSampler, SimulatedEngine

    cfg = config_of(["gpu=h100", "model=llama2_7b", "workload=offline", "engine=simulated", f"batch_size={batch}",
                     f"tensor_parallel_size={tp}", "workload.num_batches=2", "workload.warmup_batches=0"])
    eng = SimulatedEngine(cfg, batch)
    eng.start()
    run = eng.run(build_plan(cfg.workload, batch))
    return run, ModeledPowerSampler(eng).known_idle_power_w(), eng.modeled_power()


def _tok_s(run) -> float:
    from orchestrator.client import metrics

    return metrics.summarize(run, None, True)["output_throughput_tok_s"]


def test_the_simulator_splits_the_work_adds_allreduces_and_draws_n_gpus():
    one, idle1, trace1 = _simulate(1, 1)
    two, idle2, trace2 = _simulate(2, 1)
    assert idle2 == pytest.approx(2 * idle1)
    assert trace2.power_w.max() > trace1.power_w.max() and trace2.power_w.max() <= 2 * 700
    tok1, tok2 = _tok_s(one), _tok_s(two)
    assert tok1 < tok2 < 2 * tok1  # faster at batch 1 (the weights read by two), but not twice: the all-reduces


def test_vllm_gets_the_size_and_its_multiprocessing_backend():
    from orchestrator.engines.vllm.common import engine_args, serve_flags

    one = engine_args(config_of(["gpu=h100"]), 8, "/m")
    assert "tensor_parallel_size" not in one and "distributed_executor_backend" not in one
    two = engine_args(config_of(["gpu=h100", "tensor_parallel_size=2"]), 8, "/m")
    assert two["tensor_parallel_size"] == 2 and two["distributed_executor_backend"] == "mp"
    flags = serve_flags(two)
    assert flags[flags.index("--tensor-parallel-size") + 1] == "2"
    assert flags[flags.index("--distributed-executor-backend") + 1] == "mp"


UUIDS = ("GPU-aaaaaaaa-0000-0000-0000-000000000001", "GPU-bbbbbbbb-0000-0000-0000-000000000002")


@pytest.fixture
def two_h100s(monkeypatch):
    """An autospec'd pynvml with two H100s (indices 0 and 1), nearly empty."""
    pynvml = pytest.importorskip("pynvml")
    from tests.conftest import autospec_pynvml

    m = autospec_pynvml()
    m.nvmlDeviceGetHandleByIndex.side_effect = lambda i: UUIDS[i]
    m.nvmlDeviceGetHandleByUUID.side_effect = lambda u: u
    m.nvmlDeviceGetUUID.side_effect = lambda h: h
    m.nvmlDeviceGetIndex.side_effect = lambda h: UUIDS.index(h)
    m.nvmlDeviceGetName.return_value = "NVIDIA H100 80GB HBM3"
    m.nvmlDeviceGetMemoryInfo.return_value = types.SimpleNamespace(total=80 * 2**30, used=512 * 2**20,
                                                                   free=79 * 2**30)
    m.nvmlSystemGetCudaDriverVersion.return_value = 12040
    m.nvmlSystemGetDriverVersion.return_value = "550.54"
    monkeypatch.setitem(sys.modules, "pynvml", m)
    assert pynvml is not None
    return m


def test_a_vllm_cell_claims_every_gpu_it_was_given_and_the_sampler_sums_them(two_h100s, monkeypatch):
    from orchestrator.energy import sampler_for
    from orchestrator.energy.nvml import GpuSetSampler
    from orchestrator.engines.vllm.offline import VllmOfflineEngine

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    cfg = config_of(["gpu=h100", "workload=offline", "engine=vllm", "sampler=nvml", "tensor_parallel_size=2"])
    eng = VllmOfflineEngine(cfg, 8)
    eng._claim_gpu()
    assert eng.energy_gpu_uuids() == UUIDS and eng.gpu_uuid() == UUIDS[0]
    assert isinstance(sampler_for(cfg.sampler, eng), GpuSetSampler)
    one = VllmOfflineEngine(config_of(["gpu=h100", "workload=offline", "engine=vllm"]), 8)
    one._claim_gpu()
    assert one.energy_gpu_uuids() == () and one.gpu_uuid() == UUIDS[0]  # one GPU: the plain sampler, as before
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(CellFailure, match="spans 2 GPUs, this process sees 1") as info:
        VllmOfflineEngine(cfg, 8)._claim_gpu()
    assert info.value.status == "wrong_gpu"
    two_h100s.nvmlDeviceGetName.side_effect = lambda h: "NVIDIA H100 80GB HBM3" if h == UUIDS[0] else "NVIDIA A100"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(CellFailure, match="Ray gave NVIDIA A100"):
        VllmOfflineEngine(cfg, 8)._claim_gpu()
