"""``sweep.json`` records the sweep's GPU duty (``store.gpu_duty``) after its dispatch, on a
real simulated sweep on a local Ray cluster: the figures are those of the stored runs rows (each
engine start once, every cell's wall, the ok cells' windows), per GPU type and overall; a resume
that runs nothing keeps them."""
from __future__ import annotations

import json

import pytest

from orchestrator.store.sweep_store import load
from tests.conftest import run_orchestrator


def test_sweep_json_records_the_gpu_duty_of_the_runs_rows(tmp_path):
    out = tmp_path / "duty"
    args = ["-m", "batch_size=1,8", "workload=offline", "engine=simulated", "gpu=h100", f"store.dir={out}",
            "dispatch.num_cpus=2"]
    run_orchestrator(args)
    manifest = json.loads((out / "sweep.json").read_text())
    rows = load(str(out)).runs.to_pylist()
    assert len(rows) == 2 and {r["status"] for r in rows} == {"ok"} and len(manifest["cells"]) == 2
    starts = {(r["host"], r["gpu_uuid"], r["engine_start_s"]): r["engine_start_s"] for r in rows}
    window = sum(r["window_s"] for r in rows)
    held = sum(starts.values()) + sum(r["cell_wall_s"] for r in rows)
    duty = manifest["gpu_duty"]
    assert duty["by_gpu"] == {"h100": duty["overall"]}
    o = duty["overall"]
    assert (o["cells"], o["cells_ok"], o["engine_starts"]) == (2, 2, 2)  # simulated cells share no start
    assert o["window_s"] == pytest.approx(window) and o["gpu_held_s"] == pytest.approx(held)
    assert o["engine_start_s"] == pytest.approx(sum(starts.values()))
    assert o["cell_wall_s"] == pytest.approx(sum(r["cell_wall_s"] for r in rows))
    assert o["duty"] == pytest.approx(window / held) and o["duty"] > 0
    again = run_orchestrator(args)  # everything complete: nothing dispatched, the duty stays
    assert "0 to run" in again.stdout
    assert json.loads((out / "sweep.json").read_text())["gpu_duty"] == duty
