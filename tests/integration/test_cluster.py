"""Several Ray nodes on 127.0.0.1: mixed GPU types, job submission, a node killed mid-sweep."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from orchestrator.store.sweep_store import load
from tests.conftest import ROOT, RayNodes, run_orchestrator

pytestmark = pytest.mark.slow
T4 = json.dumps({"accelerator_type:T4": 1})
A800 = json.dumps({"accelerator_type:A800": 1})
MIXED = ["-m", "engine=simulated", "gpu=t4,a800", "batch_size=1,2,4", "workload=offline",
         "model=llama2_7b_awq", "workload.num_batches=1", "dispatch.place_as_gpu=true", "dispatch.progress=false"]


@pytest.fixture(scope="module")
def mixed_cluster():
    """A head without GPUs (and the job API on 127.0.0.1) plus a T4 and an A800 worker."""
    nodes = RayNodes()
    try:
        nodes.head(num_cpus=1, num_gpus=0, dashboard=True)
        nodes.worker(num_cpus=1, num_gpus=1, resources=T4)
        nodes.worker(num_cpus=1, num_gpus=1, resources=A800)
        alive = nodes.wait_nodes(3)
        nodes.node_type = {n["NodeID"]: next((k.split(":")[1] for k in n["Resources"] if k.startswith("accelerator_type:")), None)
                           for n in alive}
        yield nodes
    finally:
        nodes.stop()


def _check_placement(runs, node_type):
    assert len(runs) == 6 and all(r["status"] == "ok" for r in runs), [r["error"] for r in runs]
    for r in runs:
        assert node_type[r["node_id"]] == r["accelerator_type"], r
        assert r["host"]
    assert {r["accelerator_type"] for r in runs} == {"T4", "A800"}


def test_mixed_gpu_types(tmp_path, mixed_cluster):
    out = tmp_path / "mixed"
    proc = run_orchestrator([*MIXED, f"store.dir={out}", f"dispatch.address={mixed_cluster.address}"])
    assert "attached to the Ray cluster" in proc.stdout
    _check_placement(load(str(out)).runs.to_pylist(), mixed_cluster.node_type)


def test_job_submission_collects_results(tmp_path, mixed_cluster):
    results = tmp_path / "fetched"
    env = {**os.environ}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.submit", "--address", f"http://127.0.0.1:{mixed_cluster.dashboard_port}",
         "--results", str(results), "--cluster-store", str(tmp_path / "on_head" / "${name}"),
         "--", *MIXED, "name=submitted"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sweep done: 6 ok" in proc.stdout and "SUCCEEDED" in proc.stdout
    _check_placement(load(str(results / "submitted")).runs.to_pylist(), mixed_cluster.node_type)
    # a second submission of the same sweep resumes it: nothing left to run
    again = subprocess.run(
        [sys.executable, "-m", "orchestrator.submit", "--address", f"http://127.0.0.1:{mixed_cluster.dashboard_port}",
         "--no-fetch", "--cluster-store", str(tmp_path / "on_head" / "${name}"), "--", *MIXED, "name=submitted"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0 and "0 to run, 6 already complete" in again.stdout


def test_bad_input_is_refused_before_submission(mixed_cluster):
    proc = subprocess.run([sys.executable, "-m", "orchestrator.submit", "--address",
                           f"http://127.0.0.1:{mixed_cluster.dashboard_port}", "--", "gpu=v100"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: gpu=v100")


def _raylet_of(proc):
    for child in psutil.Process(proc.pid).children(recursive=True):
        if "raylet" in child.name():
            return child
    raise AssertionError("no raylet under this node")


def test_node_killed_mid_sweep_every_cell_once(tmp_path):
    nodes = RayNodes()
    fast_health = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
                   "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "0"}
    try:
        nodes.head(num_cpus=1, num_gpus=0, env=fast_health)
        doomed = nodes.worker(num_cpus=1, num_gpus=1, resources=T4)
        nodes.worker(num_cpus=1, num_gpus=1, resources=T4)
        nodes.wait_nodes(3)
        out = tmp_path / "faults"
        args = [sys.executable, "-m", "orchestrator", "-m", "engine=simulated", "gpu=t4", "batch_size=1,2,3,4,5,6",
                "workload=offline", "model=llama2_7b_awq", "workload.num_batches=1", "engine.simulated.pace_s=4",
                "dispatch.place_as_gpu=true", "dispatch.progress=false", "dispatch.max_retries=2",
                f"dispatch.address={nodes.address}", f"store.dir={out}"]
        driver = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(6)  # both GPUs are busy with a cell each
        _raylet_of(doomed).kill()
        stdout, _ = driver.communicate(timeout=300)
        assert driver.returncode == 0, stdout[-3000:]
        runs = load(str(out)).runs.to_pylist()
        ids = [r["cell_id"] for r in runs]
        assert len(ids) == 6 == len(set(ids))
        assert all(r["status"] in ("ok", "worker_lost") for r in runs), stdout[-2000:]
        assert sum(r["status"] == "ok" for r in runs) >= 5, [(r["status"], r["error"]) for r in runs]
        t = load(str(out)).requests
        keys = list(zip(t.column("cell_id").to_pylist(), t.column("request_index").to_pylist()))
        assert len(keys) == len(set(keys))
    finally:
        nodes.stop()
