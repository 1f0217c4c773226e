"""The committed replay benchmark of active measurement (experiments/benchmarks/active_replay/)
regenerates byte-for-byte from the H200 study's stores, and its numbers say what its README
says: active's median errors within 5%, its mean coverage at least 90% for tok/s and 85% for J per
token (the issue's 90% not reached there yet: the README says so), active ahead of random on most
seeds and paying fewer engine starts."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "experiments" / "benchmarks" / "active_replay"
METRICS = ("output_throughput_tok_s", "energy_per_output_token_j")
COVERAGE = {"output_throughput_tok_s": 0.9, "energy_per_output_token_j": 0.85}


def test_replay_regenerates_and_meets_its_error_goal(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_active_replay.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True, text=True, timeout=600)
    assert (tmp_path / "results.md").read_text() == (BENCH / "results.md").read_text()
    assert (tmp_path / "results.json").read_text() == (BENCH / "results.json").read_text()
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["seeds"] >= 20 and doc["budget_cells"] == round(0.25 * doc["cells"])
    runs = doc["runs"]
    for m in METRICS:
        errors = sorted(r["active"][m]["median_abs_error_pct"] for r in runs)
        assert errors[len(errors) // 2] <= 5.0
        assert sum(r["active"][m]["coverage"] for r in runs) / len(runs) >= COVERAGE[m]
        wins = sum(r["active"][m]["median_abs_error_pct"] < r["random"][m]["median_abs_error_pct"] for r in runs)
        assert wins > len(runs) / 2
        assert all(r["active"]["measured"] == doc["budget_cells"] for r in runs)  # the budget, never more
    assert sorted(r["active_units"] for r in runs)[len(runs) // 2] < sorted(r["random_units"] for r in runs)[len(runs) // 2]
