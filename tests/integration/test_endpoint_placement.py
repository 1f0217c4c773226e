"""Placement by node for ``engine=endpoint`` cells that measure the energy of a server's GPUs, on
a REAL Ray cluster of two nodes on 127.0.0.1: the head has no GPU, the worker node "holds" two
GPUs through a stand-in ``pynvml`` on its PYTHONPATH (NVML cannot run here; pynvml is the one
part the project fakes). The driver finds the node by UUID (a zero-CPU task per node), pins the
unit there, and the task runs there; UUIDs that no node holds are one ``ConfigError`` line."""
from __future__ import annotations

import os
import sys
import textwrap
import time

import pytest

from orchestrator.config.groups import DispatchConfig
from orchestrator.driver import placement
from orchestrator.driver.dispatch import Dispatcher, make_units
from orchestrator.driver.grid import cells, config_of
from orchestrator.driver.progress import SweepProgress
from orchestrator.errors import ConfigError, Status
from tests.conftest import ROOT

UUIDS = ("GPU-11111111-2222-3333-4444-555555555555", "GPU-66666666-7777-8888-9999-000000000000")
FAKE_PYNVML = textwrap.dedent(f'''
    """A stand-in pynvml: a node with two GPUs (placement tests only)."""
    class NVMLError(Exception):
        pass
    _UUIDS = {list(UUIDS)!r}
    def nvmlInit(): pass
    def nvmlShutdown(): pass
    def nvmlDeviceGetCount(): return len(_UUIDS)
    def nvmlDeviceGetHandleByIndex(i): return i
    def nvmlDeviceGetUUID(h): return _UUIDS[h]
''')


def where(unit):
    """A task body that reports the node it ran on (in its status row's error column)."""
    import ray

    from orchestrator.core.messages import CellResult, TaskStarted
    from orchestrator.store.cell_tables import status_tables

    yield TaskStarted(time.time())
    cell = unit.cells[0]
    node = ray.get_runtime_context().get_node_id()
    yield CellResult(cell.cell_id, Status.ok, False, status_tables(cell, unit.sweep, Status.ok, node))


def endpoint_cell(*uuids):
    cfg = config_of(["engine=endpoint", "model=tiny", "sampler=nvml", "engine.endpoint.base_url=http://127.0.0.1:9",
                     f"engine.endpoint.gpu_uuids=[{','.join(uuids)}]"])
    return cells([cfg], {})


@pytest.mark.slow
def test_a_cell_measuring_a_servers_gpus_runs_on_the_node_that_holds_them(ray_nodes, tmp_path):
    import ray
    from ray import cloudpickle  # Ray's own copy pickles the task body

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    fake = tmp_path / "fake_nvml"
    fake.mkdir()
    (fake / "pynvml.py").write_text(FAKE_PYNVML)
    ray_nodes.head(num_cpus=1)
    ray_nodes.worker(num_cpus=1, env={"PYTHONPATH": f"{fake}{os.pathsep}{ROOT}"})
    ray_nodes.wait_nodes(2)
    ray.init(address=ray_nodes.address, logging_level="ERROR")
    try:
        nodes = placement.node_gpu_uuids()
        holders = [n for n, gpus in nodes.items() if gpus]
        assert len(nodes) == 2 and len(holders) == 1 and nodes[holders[0]] == list(UUIDS)
        [unit] = placement.place_by_gpus(make_units(endpoint_cell(UUIDS[1]), "t", {}))
        assert unit.node_id == holders[0] and not unit.on_gpu
        got = []
        dispatcher = Dispatcher(DispatchConfig(progress=False), lambda cid, st, t: got.append(t), task_fn=where)
        dispatcher.run([unit], SweepProgress(1, enabled=False))
        assert [t["runs"].column("error")[0].as_py() for t in got] == [holders[0]]
        with pytest.raises(ConfigError) as exc:
            placement.place_by_gpus(make_units(endpoint_cell(UUIDS[0], "GPU-99999999-0000-0000-0000-000000000000"),
                                               "t", {}))
        assert "no live Ray node holds them all" in str(exc.value) and "\n" not in str(exc.value)
    finally:
        ray.shutdown()
