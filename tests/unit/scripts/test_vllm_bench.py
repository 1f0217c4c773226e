"""scripts/bench_vllm.py without a GPU: it imports and parses its options, composes the same cell
configs as the orchestrator, and turns part results into the pass/fail table (synthetic numbers)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_vllm", ROOT / "scripts" / "bench_vllm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_help_runs():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_vllm.py"), "--help"], capture_output=True,
                         text=True, check=True)
    assert "--parts" in out.stdout and "vllm bench serve" in out.stdout


def test_both_sides_get_the_same_engine_arguments(bench):
    from orchestrator.config.root import CellConfig
    from orchestrator.engines.vllm.common import engine_args

    args = bench.parse_args(["--out", "/tmp/x", "--gpu", "h100"])
    off = bench.compose_cell(bench.overrides(args, "offline"), 256)
    chat = bench.compose_cell(bench.overrides(args, "chat_medium"), 256)
    assert isinstance(off, CellConfig) and off.batch_size == 256 and off.engine.name == "vllm"
    assert off.workload.num_batches == 4 and off.workload.input.mean_tokens == 128
    assert chat.workload.duration_s == 30.0 and chat.workload.rate_rps == 20.0
    a, b = engine_args(off, 256, "/m"), engine_args(chat, 256, "/m")
    assert a == b and a["max_num_batched_tokens"] == 8192


def results():
    return {
        "meta": {"gpu_name": "NVIDIA H100 80GB HBM3", "vllm": "0.26.0", "elapsed_s": 500},
        "offline": {"wall_s": 200, "cells": {
            "1": {"output_throughput_tok_s": 99.0, "energy_j": 1000.0, "energy_integrated_j": 1010.0, "window_s": 6.0},
            "256": {"output_throughput_tok_s": 9000.0, "energy_j": 8000.0, "energy_integrated_j": 8600.0,
                    "window_s": 14.0}},
            "overhead": {"max_per_cell_s": 4.0, "shared_per_cell_s": 3.0, "outside_cells_s": 10.0, "prestart_s": 2.0,
                         "vllm_start_s": 90.0, "per_cell": {"1": {"in_cell_s": 1.0}, "256": {"in_cell_s": 0.5}}}},
        "bare": {"wall_s": 150, "offline": {"1": {"output_tok_s": 100.0}, "256": {"output_tok_s": 9400.0}},
                 "sampler_on_off": {"batch_size": 64, "trials": {"on": [1, 1, 1], "off": [1, 1, 1]},
                                    "median_on_tok_s": 4000.0, "median_off_tok_s": 4010.0,
                                    "on_over_off": 4000 / 4010, "off_spread_rel": 0.002},
                 "energy_window": {"batch_size": 256, "window_s": 12.5, "energy_j": 5000.0,
                                   "energy_integrated_j": 5100.0}},
        "server": {"rc": 1, "log": "x.log", "log_tail": "boom",
                   "orchestrator": {"achieved_rate_rps": 19.8, "scheduled_rate_rps": 19.9, "ttft_p50_ms": 30.0,
                                    "tpot_p50_ms": 12.0, "window_s": 30.0, "client": {"send_lag_p99_ms": 1.0},
                                    "energy": {"energy_j": 9000.0, "energy_integrated_j": 9100.0}},
                   "bench_serve": {"median_ttft_ms": 28.0, "median_tpot_ms": 14.0}},
    }


def test_checks_compute_every_target(bench):
    rows = {r["check"]: r for r in bench.checks(results())}
    assert rows["(a) offline output tok/s, batch 1"]["pass"] is True  # 99%
    assert rows["(a) offline output tok/s, batch 256"]["pass"] is False  # 95.7%
    assert rows["(b) achieved arrival rate, chat_medium (Poisson 20 req/s)"]["pass"] is True
    ttft = next(r for k, r in rows.items() if k.startswith("(b) TTFT"))
    tpot = next(r for k, r in rows.items() if k.startswith("(b) TPOT"))
    assert ttft["pass"] is True and tpot["pass"] is False and "-14.3%" in tpot["measured"]
    energy = [r for k, r in rows.items() if k.startswith("(c)")]
    by_where = {r["check"].split(", ", 1)[1]: r["pass"] for r in energy}
    assert by_where == {"orchestrator offline batch 1": None,  # 6 s: too short to judge
                        "orchestrator offline batch 256": False,  # 7.5%
                        "bare busy window batch 256": True, "server chat_medium window": True}
    assert next(r for k, r in rows.items() if k.startswith("(d)"))["pass"] is True
    assert next(r for k, r in rows.items() if k.startswith("(e)"))["pass"] is True


def test_report_has_the_table_and_the_failures(bench, tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(results()))
    assert bench.main(["--out", str(tmp_path), "--report-only"]) == 0
    md = (tmp_path / "results.md").read_text()
    assert "| check | measured | target | result |" in md and md.count("| PASS |") >= 6 and "| FAIL |" in md
    assert "server: exit 1" in md and "boom" in md


def test_cell_overheads_subtract_start_window_warmup_and_idle(bench):
    cfg = json.dumps({"sampler": {"name": "nvml", "idle_baseline_s": 5.0}})
    extra = json.dumps({"vllm_start_s": 80.0})
    rows = [{"cell_id": "a", "batch_size": 1, "engine_start_s": 85.0, "engine_extra": extra, "config_json": cfg,
             "cell_wall_s": 16.0, "window_s": 8.0},
            {"cell_id": "b", "batch_size": 8, "engine_start_s": 85.0, "engine_extra": extra, "config_json": cfg,
             "cell_wall_s": 11.0, "window_s": 8.0}]
    reqs = pd.DataFrame({"cell_id": ["a", "a", "b"], "phase": ["warmup", "warmup", "warmup"],
                         "send_s": [0.0, 0.0, 0.0], "end_s": [2.0, 2.0, 2.0]})
    ov = bench.cell_overheads(rows, reqs, wall_s=130.0)
    assert ov["per_cell"]["1"]["in_cell_s"] == pytest.approx(1.0)  # 16 - 8 - 2 - 5 (idle)
    assert ov["per_cell"]["8"]["in_cell_s"] == pytest.approx(1.0)  # 11 - 8 - 2
    assert ov["outside_cells_s"] == pytest.approx(130 - 85 - 27) and ov["prestart_s"] == pytest.approx(5.0)
    assert ov["max_per_cell_s"] == pytest.approx(1.0 + (18 + 5) / 2)


def test_merge_results_of_separate_runs(bench, tmp_path):
    full = results()
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"meta": full["meta"], "offline": full["offline"], "bare": full["bare"],
                             "server": {"skipped": "no time"}}))
    b.write_text(json.dumps({"meta": full["meta"], "server": full["server"]}))
    out = tmp_path / "merged"
    assert bench.main(["--out", str(out), "--report-only", "--merge", str(a), str(b)]) == 0
    merged = json.loads((out / "results.json").read_text())
    assert set(merged) == {"meta", "offline", "bare", "server"} and "orchestrator" in merged["server"]
    assert "(b) TTFT p50" in (out / "results.md").read_text()
