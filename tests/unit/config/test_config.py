"""The real config composes for every option of every group, and bad input fails in one line."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from orchestrator.app.hydra_entry import typed
from orchestrator.config.engine_options import HfDevice, SchedulingPolicy
from orchestrator.config.fields import from_dict
from orchestrator.config.groups import Arrival, LengthDist, Precision, Weights, WorkloadKind
from orchestrator.config.root import CONFIG_GROUPS, CellConfig, Config, cell_config_from_json
from orchestrator.driver.grid import cells, config_of
from orchestrator.driver.overrides import available_options
from orchestrator.store import cell_tables as results
from tests.conftest import ROOT


@pytest.mark.parametrize("group", CONFIG_GROUPS + ("sweep",))
def test_every_option_composes(compose, group):
    options = available_options(group)
    assert options, group
    for option in options:
        prefix = "+" if group == "sweep" else ""
        cfg = compose([f"{prefix}{group}={option}"])
        if group != "sweep":
            assert cfg[group].name == option
        root = typed(cfg)  # the typed root config: every group's dataclass, values checked
        assert isinstance(root, Config)
        root.validate()
        if group != "sweep":
            assert getattr(root, group).name == option


def test_batch_size_is_an_integer_axis(compose):
    assert compose([]).batch_size == 8
    assert compose(["batch_size=24"]).batch_size == 24
    assert typed(compose(["batch_size=24"])).batch_size == 24


def test_datasheet_numbers(compose):
    cfg = compose(["gpu=t4"])
    assert cfg.gpu.accelerator_type == "T4" and cfg.gpu.memory_bandwidth_gbps == 320
    assert cfg.gpu.peak_tflops_fp16 / cfg.gpu.memory_bandwidth_gbps * 1e3 == pytest.approx(203, abs=1)
    h = compose(["gpu=h100"]).gpu
    assert (h.compute_capability, h.peak_tflops_fp8, h.tdp_w) == (9.0, 1979, 700)
    assert compose(["quantization=fp8"]).quantization.min_compute_capability == 8.0


def test_workloads(compose):
    assert compose(["workload=chat_medium"]).workload.rate_rps == 20
    assert compose(["workload=chat_high"]).workload.rate_rps == 50
    assert compose(["workload=offline"]).workload.arrival == "offline"
    offline = typed(compose(["workload=offline"])).workload
    assert offline.arrival is Arrival.offline and offline.kind is WorkloadKind.offline
    assert typed(compose(["workload=chat_medium"])).workload.kind is WorkloadKind.open_loop


def test_window_and_drain_settings(compose):
    """Offline windows of at least min_window_s (capped at max_batches); drains sized per cell
    unless drain_timeout_s is set."""
    wl = typed(compose(["workload=offline"])).workload
    assert (wl.min_window_s, wl.max_batches, wl.drain_timeout_s) == (10.0, 1000, None)
    wl = typed(compose(["workload=offline", "workload.min_window_s=0", "workload.max_batches=4"])).workload
    assert (wl.min_window_s, wl.max_batches) == (0.0, 4)
    chat = typed(compose(["workload=chat_high", "workload.drain_timeout_s=2.5"])).workload
    assert chat.drain_timeout_s == 2.5 and isinstance(chat.drain_timeout_s, float)
    assert typed(compose(["workload=chat_high", "workload.drain_timeout_s=0"])).workload.drain_timeout_s == 0.0
    assert typed(compose(["workload=chat_high", "workload.drain_timeout_s=null"])).workload.drain_timeout_s is None


def _run(*args):
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["model=gpt5"], "model=gpt5: unknown option; allowed: llama2_70b, llama2_7b"),
        (["gpu=v100"], "gpu=v100: unknown option; allowed: a100, a800, h100, h200, t4"),
        (["-m", "batch_size=1,0"], "batch_size=0: must be an integer >= 1"),
        (["batch_size=-3"], "batch_size=-3: must be an integer >= 1"),
        (["batch_size=abc"], "batch_size=abc: expected int"),
        (["workload.duration_s=abc"], "workload.duration_s=abc: expected float"),
        (["+sweep=nope"], "sweep=nope: unknown option"),
        (["workload.rate_rps=0"], "workload.rate_rps=0"),
        (["workload.rate_rps=-5"], "workload.rate_rps=-5"),
        (["workload.nope=1"], "unknown key 'nope'"),
        (["-m", "workload.rate_rps=10,0"], "workload.rate_rps=0"),
        (["repeats=0"], "repeats=0: must be >= 1"),
        (["sampler=nvml", "sampler.interval_s=0.5"], "sampler.interval_s=0.5: must be <= 0.1"),
        (["workload=offline", "workload.min_window_s=-1"], "workload.min_window_s=-1.0: must be >= 0"),
        (["workload=offline", "workload.max_batches=2"], "workload.max_batches=2: must be >= workload.num_batches (4)"),
        (["workload=offline", "-m", "workload.num_batches=1,8", "workload.max_batches=5"],
         "workload.max_batches=5: must be >= workload.num_batches (8)"),
        (["workload.drain_timeout_s=-0.5"], "workload.drain_timeout_s=-0.5: must be >= 0"),
        (["workload.drain_timeout_s=abc"], "workload.drain_timeout_s=abc: expected float"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, needle):
    proc = _run(*args, f"store.dir={tmp_path}/out")
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert "Ray" not in proc.stdout  # nothing was dispatched
    assert not (tmp_path / "out" / "runs").exists() or not any((tmp_path / "out" / "runs").iterdir())


# ------------------------------------------------------------------ stored config_json -> typed config


def _stored_cell():
    """A cell whose config differs from the defaults in enums, optionals and free-form mappings."""
    cfg = config_of(["model=mistral_7b", "quantization=awq", "gpu=a800", "workload=chat_high", "engine=vllm",
                     "sampler=nvml", "batch_size=16", "repeat=2", "workload.arrival=gamma",
                     "workload.input.dist=lognormal", "engine.vllm.scheduling_policy=priority",
                     "engine.vllm.max_num_batched_tokens=4096", "engine.hf.device=cpu", "sampler.interval_s=0.05"])
    opts = dataclasses.replace(cfg.engine.vllm, extra_args={"kv-cache-dtype": "fp8"})
    cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, vllm=opts))
    (cell,) = cells([cfg], {})
    return cell


def test_from_dict_rebuilds_the_stored_config():
    cell = _stored_cell()
    stored = json.loads(results.config_columns(cell, "x")["config_json"])
    assert stored["workload"]["arrival"] == "gamma" and stored["engine"]["vllm"]["scheduling_policy"] == "priority"
    back = from_dict(CellConfig, stored)
    assert back == cell.config
    assert back.workload.arrival is Arrival.gamma and back.workload.input.dist is LengthDist.lognormal
    assert back.engine.vllm.scheduling_policy is SchedulingPolicy.priority and back.engine.hf.device is HfDevice.cpu
    assert back.engine.vllm.extra_args == {"kv-cache-dtype": "fp8"} and back.repeat == 2
    assert cell_config_from_json(results.config_columns(cell, "x")["config_json"]) == cell.config


def test_from_dict_reads_a_version_1_config():
    """Version 1 stored the whole composed config as plain JSON: enums as strings and the engine
    block's ``supported_quantizations`` table (gone since engines declare what they run)."""
    cell = _stored_cell()
    v1 = json.loads(results.config_columns(cell, "x")["config_json"])
    v1["engine"]["supported_quantizations"] = {"simulated": ["none", "awq", "gptq", "int8", "fp8"],
                                               "vllm": ["none", "awq", "gptq", "int8", "fp8"], "hf": ["none", "int8"]}
    v1["model"]["weights"] = "dummy"
    v1["quantization"]["activation_dtype"] = "fp16"
    del v1["engine"]["simulated"]["pace_s"]  # a field an older store may lack takes its default
    back = from_dict(CellConfig, v1)
    assert back == cell.config
    assert back.model.weights is Weights.dummy and back.quantization.activation_dtype is Precision.fp16
    assert not hasattr(back.engine, "supported_quantizations")
    assert cell_config_from_json(json.dumps(v1)) == cell.config
