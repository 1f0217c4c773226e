"""``engine=auto`` on a real Ray cluster (issue 27): the engines' modules are probed on a node of
the cell's GPU type, and each cell gets the first usable engine that does not refuse it — vllm,
else hf for the bitsandbytes INT8 offline cells vllm refuses, the simulator only where no engine
can measure. The GPU node here is a Ray node that declares an H100; vllm and bitsandbytes cannot
be installed on this CPU machine, so its environment holds two empty distributions of those names
(what the probe reads: an importable package and its metadata). ``--plan`` runs nothing."""
from __future__ import annotations

import json
import re

from tests.conftest import run_orchestrator

FAKE_VERSION = "0.0.0+probe"


def _distribution(site, name: str) -> None:
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text("")
    info = site / f"{name}-{FAKE_VERSION}.dist-info"
    info.mkdir()
    info.joinpath("METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {FAKE_VERSION}\n")


def test_auto_sends_int8_offline_cells_to_hf_on_a_gpu_node_that_has_it(tmp_path, ray_nodes):
    site = tmp_path / "site"
    for name in ("vllm", "bitsandbytes"):
        _distribution(site, name)
    ray_nodes.head(num_cpus=1, num_gpus=0)
    ray_nodes.worker(num_cpus=1, num_gpus=1, resources=json.dumps({"accelerator_type:H100": 1}),
                     env={"PYTHONPATH": str(site)})
    ray_nodes.wait_nodes(2)
    plan = run_orchestrator(["-m", "model=llama2_7b", "gpu=h100", "quantization=none,int8",
                             "workload=offline,chat_medium", "batch_size=1,8", "--plan",
                             f"store.dir={tmp_path / 'auto'}", f"dispatch.address={ray_nodes.address}"], timeout=300)
    out = plan.stdout
    assert f"engine=auto: vllm for 6 H100 cells (a H100 node has vllm {FAKE_VERSION})" in out, out
    hf = re.search(r"^engine=auto: hf for 2 H100 cells \(vllm refuses it: engine vllm does not run quantization "
                   rf"int8; a H100 node has torch [^,]+, transformers [^,]+, bitsandbytes {re.escape(FAKE_VERSION)}\)$",
                   out, re.M)
    assert hf, out
    assert re.search(r"^  H100 +hf +2 cells: 0 complete, 2 to run in 1 engine starts", out, re.M), out
    # the INT8 chat cells: hf runs static batches only, so vllm's refusal stays their status
    assert re.search(r"^  H100 +vllm +6 cells: 0 complete, 2 unsupported, 4 to run", out, re.M), out
    assert not (tmp_path / "auto").exists()


def test_auto_falls_back_to_the_simulator_where_no_node_has_a_measuring_engine(tmp_path, ray_nodes):
    ray_nodes.head(num_cpus=1, num_gpus=1, resources=json.dumps({"accelerator_type:H100": 1}))
    ray_nodes.wait_nodes(1)
    plan = run_orchestrator(["model=llama2_7b", "gpu=h100", "quantization=int8", "workload=offline", "--plan",
                             f"store.dir={tmp_path / 'sim'}", f"dispatch.address={ray_nodes.address}"], timeout=300)
    line = next(x for x in plan.stdout.splitlines() if x.startswith("engine=auto:"))
    assert line.startswith("engine=auto: simulated for 1 H100 cell (a H100 node has no usable vllm (vllm is not "
                           "installed there)"), line
    assert "bitsandbytes is not installed there" in line
