"""The real config composes for every option of every group, and bad input fails in one line."""
from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator.config import CONFIG_GROUPS
from orchestrator.grid import available_options
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


def test_batch_size_is_an_integer_axis(compose):
    assert compose([]).batch_size == 8
    assert compose(["batch_size=24"]).batch_size == 24


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


def _run(*args):
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["model=gpt5"], "model=gpt5: unknown option; allowed: llama2_7b"),
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
