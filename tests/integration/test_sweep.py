"""End to end on a real local Ray cluster: the smoke sweep, resume after a kill, placement by GPU type."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc

from orchestrator.store import load
from tests.conftest import ROOT, run_orchestrator


def test_smoke_sweep_end_to_end_and_rerun_skips(tmp_path):
    out = tmp_path / "smoke"
    proc = run_orchestrator(["+sweep=smoke", f"store.dir={out}", "dispatch.num_cpus=2"])
    assert "engine=auto: simulated for H100 cells" in proc.stdout
    assert "sweep done: 6 ok" in proc.stdout
    t = load(str(out))
    runs = t.runs.to_pylist()
    assert len(runs) == 6 and {r["engine"] for r in runs} == {"simulated"}
    assert {r["batch_size"] for r in runs} == {1, 4, 16}
    for r in runs:
        assert r["energy_source"] == "simulated" and r["energy_j"] > 0 and r["output_throughput_tok_s"] > 0
        assert r["output_tokens_per_request_mean"] == 128 and not r["token_count_mismatch"]
        n = pc.sum(pc.equal(t.requests.column("cell_id"), r["cell_id"])).as_py()
        assert n == r["n_requests_total"]
    offline = [r for r in runs if r["workload"] == "offline"]
    assert all(r["n_requests_measured"] == 2 * r["batch_size"] for r in offline)
    again = run_orchestrator(["+sweep=smoke", f"store.dir={out}"])
    assert "0 to run, 6 already complete" in again.stdout and "Ray" not in again.stdout


def test_killed_sweep_resumes_each_cell_exactly_once(tmp_path):
    out = tmp_path / "resume"
    args = [sys.executable, "-m", "orchestrator", "-m", "engine=simulated", "workload=chat_high",
            "batch_size=1,2,3,4,6,8,12,16", "gpu=h100,h200", "workload.duration_s=20",
            f"store.dir={out}", "dispatch.num_cpus=1", "dispatch.progress=false"]
    env = {**os.environ}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    runs_dir = out / "runs"
    deadline = time.time() + 240
    while time.time() < deadline:
        if runs_dir.exists() and len(list(runs_dir.glob("*.parquet"))) >= 3:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # driver and its local Ray cluster, mid-sweep
    proc.wait()
    done_before = len(list(runs_dir.glob("*.parquet")))
    assert 3 <= done_before < 16
    second = run_orchestrator(args[3:], timeout=400)
    assert f"{16 - done_before} to run, {done_before} already complete" in second.stdout
    t = load(str(out))
    ids = t.runs.column("cell_id").to_pylist()
    assert len(ids) == 16 == len(set(ids))
    keys = list(zip(t.requests.column("cell_id").to_pylist(), t.requests.column("request_index").to_pylist()))
    assert len(keys) == len(set(keys))
    assert not list(Path(out).rglob("*.tmp-*"))


def test_gpu_cells_land_on_their_gpu_type(tmp_path, ray_nodes):
    ray_nodes.head(num_cpus=1, num_gpus=1, resources=json.dumps({"accelerator_type:T4": 1}))
    ray_nodes.worker(num_cpus=1, num_gpus=1, resources=json.dumps({"accelerator_type:H100": 1}))
    nodes = ray_nodes.wait_nodes(2)
    node_type = {n["NodeID"]: next(k.split(":")[1] for k in n["Resources"] if k.startswith("accelerator_type:"))
                 for n in nodes}
    out = tmp_path / "placed"
    proc = run_orchestrator(["-m", "engine=simulated", "gpu=t4,h100", "batch_size=1,2,4", "workload=offline",
                             "model=llama2_7b_awq", "workload.num_batches=1", f"store.dir={out}",
                             f"dispatch.address={ray_nodes.address}", "dispatch.place_as_gpu=true",
                             "dispatch.progress=false"])
    assert "attached to the Ray cluster" in proc.stdout
    runs = load(str(out)).runs.to_pylist()
    assert len(runs) == 6 and all(r["status"] == "ok" for r in runs)
    for r in runs:
        assert node_type[r["node_id"]] == r["accelerator_type"], r["cell_id"]
        assert f"accelerator_type:{r['accelerator_type']}" in json.loads(r["assigned_resources"])
    assert {node_type[r["node_id"]] for r in runs} == {"T4", "H100"}
