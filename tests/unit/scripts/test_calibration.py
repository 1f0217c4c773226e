"""scripts/calibrate_simulator.py: the fit recovers a simulator it is given, and reads a real store."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "scripts"))

import calibrate_simulator as cal  # noqa: E402

from orchestrator.driver.grid import config_of  # noqa: E402

H200_STORE = ROOT / "experiments" / "benchmarks" / "vllm_h200_validity" / "store"
TRUE = {"memory_efficiency": 0.62, "compute_efficiency": 0.41, "step_overhead_s": 0.004, "busy_power_floor": 0.55,
        "idle_power_w": 110.0}


def _synthetic(batch_sizes):
    """'Measured' points made by the simulator with known options."""
    points = []
    for bs in batch_sizes:
        config = config_of(["engine=vllm", "gpu=h200", "workload=offline", f"batch_size={bs}"])
        sim = cal.simulate(config, TRUE)
        points.append({"batch_size": bs, "n": 1, "config": config, "idle_w": TRUE["idle_power_w"], **sim})
    return points


def test_the_fit_reproduces_a_known_simulator():
    points = _synthetic([1, 8, 64, 256])
    options = cal.fit(points)
    assert options["idle_power_w"] == pytest.approx(110.0)
    for row in cal.comparison(points, options):
        assert abs(row["tok_s_error"]) < 0.01 and abs(row["j_per_tok_error"]) < 0.01, row
    assert "engine.simulated.memory_efficiency=" in cal.overrides(options)


def test_measured_points_from_the_committed_h200_store():
    points = cal.measured_points(cal.selected_rows(str(H200_STORE), None, "none", "offline"))
    assert [(p["batch_size"], p["n"]) for p in points] == [(1, 3), (8, 3), (64, 3), (256, 3)]
    assert 200 < points[0]["tok_s"] < 220 and 100 < points[0]["idle_w"] < 140
    assert all(p["config"].gpu.name == "h200" for p in points)
    assert len(cal.selected_rows(str(H200_STORE), "llama2_7b", "none", "offline")) == 12
    for model, quant in ((None, "awq"), ("mistral_7b", "none")):
        with pytest.raises(SystemExit, match="no ok measured"):
            cal.selected_rows(str(H200_STORE), model, quant, "offline")


def test_a_selection_of_two_models_asks_for_one(tmp_path):
    """A copy of the store where one fp16 offline cell is another model: without --model the fit
    refuses (it would average two models per batch size); with it, the other model's cell is out."""
    store = tmp_path / "store"
    shutil.copytree(H200_STORE, store)
    one = sorted((store / "runs").glob("*.parquet"))[0]
    t = pq.read_table(one)
    pq.write_table(t.set_column(t.schema.get_field_index("model"), "model", pa.array(["mistral_7b"] * len(t))), one)
    with pytest.raises(SystemExit, match="span models llama2_7b, mistral_7b: choose one with --model"):
        cal.selected_rows(str(store), None, "none", "offline")
    assert len(cal.selected_rows(str(store), "llama2_7b", "none", "offline")) == 11


def test_the_kernel_fit_recovers_a_known_weight_efficiency():
    """AWQ 'measurements' made by the simulator with its weights read at 0.4 × memory_efficiency:
    the one-number fit, the other factors given, finds 0.4 again; the overrides flatten it."""
    truth = {**TRUE, "quantized_weight_efficiency": {"awq": 0.4}}
    points = []
    for bs in (1, 64):
        config = config_of(["engine=vllm", "gpu=h200", "workload=offline", "quantization=awq", f"batch_size={bs}"])
        points.append({"batch_size": bs, "n": 1, "config": config, "idle_w": TRUE["idle_power_w"],
                       **cal.simulate(config, truth)})
    assert cal.fit_kernel(points, TRUE, "awq") == pytest.approx(0.4, abs=0.002)
    assert "engine.simulated.quantized_weight_efficiency.awq=0.4" in cal.overrides(truth)
