"""Cells over several GPUs on a real local Ray cluster (three workers on 127.0.0.1 advertising
logical H100s: one with two GPUs, two with one): a cell over 2 GPUs runs on the node with two,
never split over the two one-GPU nodes; a cell over 4 ends ``unschedulable`` before dispatch
although the cluster holds 4 GPUs in all, saying what it asks and what each node offers; one-GPU
cells run anywhere, with today's ids. The simulator stands in for vLLM (``dispatch.place_as_gpu``
places it as a GPU cell)."""
from __future__ import annotations

import json

import pytest

from orchestrator.core.identity import cell_identity, digest
from orchestrator.driver.grid import config_of
from orchestrator.store.sweep_store import load
from tests.conftest import RayNodes, run_orchestrator

pytestmark = pytest.mark.slow
H100 = json.dumps({"accelerator_type:H100": 1})


@pytest.fixture(scope="module")
def cluster():
    nodes = RayNodes()
    try:
        nodes.head(num_cpus=1, num_gpus=0)
        nodes.worker(num_cpus=1, num_gpus=2, resources=H100)
        nodes.worker(num_cpus=1, num_gpus=1, resources=H100)
        nodes.worker(num_cpus=1, num_gpus=1, resources=H100)
        alive = nodes.wait_nodes(4)
        nodes.gpus = {n["NodeID"]: int(n["Resources"].get("GPU", 0)) for n in alive}
        yield nodes
    finally:
        nodes.stop()


def test_a_cell_spans_gpus_of_one_node_or_is_unschedulable(tmp_path, cluster):
    store = tmp_path / "tp"
    proc = run_orchestrator(["-m", "engine=simulated", "gpu=h100", "model=llama2_7b", "workload=offline",
                             "workload.num_batches=1", "batch_size=1,8", "tensor_parallel_size=1,2,4",
                             "dispatch.place_as_gpu=true", "dispatch.progress=false", f"store.dir={store}",
                             f"dispatch.address={cluster.address}"], check=False)
    runs = {(r["tensor_parallel_size"], r["batch_size"]): r for r in load(str(store)).runs.to_pylist()}
    assert len(runs) == 6, proc.stdout[-2000:] + proc.stderr[-2000:]
    for bs in (1, 8):
        two = runs[2, bs]
        assert two["status"] == "ok" and cluster.gpus[two["node_id"]] == 2, two
        assert runs[1, bs]["status"] == "ok"
        four = runs[4, bs]
        assert four["status"] == "unschedulable"
        assert "GPU=4" in four["error"] and "2 GPU H100" in four["error"] and "1 GPU H100" in four["error"]
    # a one-GPU cell's id is today's: the identity of its config has no tensor-parallel key
    one = runs[1, 8]
    cfg = config_of(["engine=simulated", "gpu=h100", "model=llama2_7b", "workload=offline", "workload.num_batches=1",
                     "batch_size=8", "dispatch.place_as_gpu=true"])
    assert one["cell_id"] == digest(cell_identity(cfg, "simulated"))
    assert runs[2, 8]["cell_id"] != one["cell_id"]
