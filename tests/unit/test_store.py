"""Parquet store: schemas, atomic writes (a killed writer leaves no final file), load, resume."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from orchestrator.config.root import cell_config_from_json
from orchestrator.errors import Status
from orchestrator.grid import cells, config_of
from orchestrator.results import status_tables
from orchestrator.store import READABLE_VERSIONS, RUNS_SCHEMA, SCHEMA_VERSION, Store, columns_table, load, runs_table


def _cell(cell_id):
    """A real cell (tiny on a T4, offline, simulated), renamed ``cell_id`` for readable files."""
    cfg = config_of(["model=tiny", "quantization=none", "gpu=t4", "workload=offline", "engine=simulated",
                     "sampler=none", "batch_size=2"])
    (cell,) = cells([cfg], {})
    return dataclasses.replace(cell, cell_id=cell_id)


def test_roundtrip_and_schema(tmp_path):
    store = Store.open(str(tmp_path))
    tables = status_tables(_cell("abc"), "t", Status.unsupported, "why")
    tables["requests"] = columns_table("requests", {"cell_id": ["abc"] * 3, "request_index": [0, 1, 2]})
    store.write_cell("abc", tables)
    t = load(str(tmp_path))
    assert t.runs.schema.names == RUNS_SCHEMA.names
    assert t.runs.column("status").to_pylist() == ["unsupported"]
    row = t.runs.to_pylist()[0]
    assert (row["schema_version"], row["engine"], row["engine_requested"]) == (SCHEMA_VERSION, "simulated", "simulated")
    assert SCHEMA_VERSION == 2 and READABLE_VERSIONS == (1, 2)
    assert (row["model"], row["gpu"], row["batch_size"], row["arrival"], row["error"]) == ("tiny", "t4", 2, "offline", "why")
    assert cell_config_from_json(row["config_json"]) == _cell("abc").config  # every field, typed
    assert json.loads(row["config_json"])["workload"]["arrival"] == "offline"  # enums stored as strings
    assert t.requests.num_rows == 3 and t.power.num_rows == 0
    assert store.completed() == {"abc": "unsupported"}
    with pytest.raises(KeyError):
        runs_table([{"cell_id": "x", "bogus_column": 1}])


def test_rewrite_replaces_rows(tmp_path):
    store = Store.open(str(tmp_path))
    for n in (5, 2):
        tables = status_tables(_cell("c1"), "t", Status.engine_error, "x")
        tables["requests"] = columns_table("requests", {"cell_id": ["c1"] * n, "request_index": list(range(n))})
        store.write_cell("c1", tables)
    assert load(str(tmp_path)).requests.num_rows == 2


def test_incomplete_cell_is_ignored(tmp_path):
    store = Store.open(str(tmp_path))
    tables = {"requests": columns_table("requests", {"cell_id": ["c2"], "request_index": [0]})}
    store._write_atomic(tables["requests"], store.path("requests", "c2"))  # no runs file: not complete
    assert load(str(tmp_path)).requests.num_rows == 0
    assert store.completed() == {}


WRITER = r"""
import sys, numpy as np
from orchestrator.store import Store, columns_table
store = Store.open(sys.argv[1])
n = 4_000_000
t = columns_table("power", {"cell_id": ["k"] * n, "t_ns": np.arange(n), "power_w": np.random.rand(n)})
print("ready", flush=True)
while True:
    store._write_atomic(t, store.path("power", "k"))
"""


def test_killed_writer_leaves_no_final_file(tmp_path):
    """SIGKILL a process in the middle of writing: no file may exist under the final name unless
    it is a complete Parquet file, and a fresh cell dir never shows a partial one."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    final = tmp_path / "power" / "k.parquet"
    deadline = time.time() + 60
    while time.time() < deadline:  # kill while a temp file is being written, before the first move
        if any(p.name.startswith("k.parquet.tmp-") for p in (tmp_path / "power").iterdir()):
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if final.exists():  # only possible if a whole write finished first: then it must be complete
        import pyarrow.parquet as pq

        assert pq.read_metadata(final).num_rows == 4_000_000
    else:
        assert any(p.name.startswith("k.parquet.tmp-") for p in (tmp_path / "power").iterdir())
    assert load(str(tmp_path)).power.num_rows == 0  # no runs file: nothing is loaded


def test_load_rejects_non_sweep(tmp_path):
    with pytest.raises(FileNotFoundError, match="no sweep here"):
        load(str(tmp_path))


def test_store_uri_on_a_pyarrow_filesystem(tmp_path):
    uri = f"file://{tmp_path}/remote"
    Store.open(uri).write_cell("u1", status_tables(_cell("u1"), "t", Status.infeasible, "too big"))
    assert load(uri).runs.column("cell_id").to_pylist() == ["u1"]
    assert (tmp_path / "remote" / "runs" / "u1.parquet").is_file()
