"""Parquet store: schemas, atomic writes (a killed writer leaves no final file), load, resume."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from orchestrator.rows import status_tables
from orchestrator.store import RUNS_SCHEMA, Store, columns_table, load, runs_table


def _cfg():
    from orchestrator.grid import _option_node

    return {"model": _option_node("model", "tiny"), "quantization": _option_node("quantization", "none"),
            "gpu": _option_node("gpu", "t4"), "workload": _option_node("workload", "offline"),
            "engine": _option_node("engine", "simulated"), "sampler": _option_node("sampler", "none"),
            "batch_size": 2, "repeat": 0}


def test_roundtrip_and_schema(tmp_path):
    store = Store.open(str(tmp_path))
    tables = status_tables("abc", _cfg(), "t", "unsupported", "why")
    tables["requests"] = columns_table("requests", {"cell_id": ["abc"] * 3, "request_index": [0, 1, 2]})
    store.write_cell("abc", tables)
    t = load(str(tmp_path))
    assert t.runs.schema.names == RUNS_SCHEMA.names
    assert t.runs.column("status").to_pylist() == ["unsupported"]
    assert t.requests.num_rows == 3 and t.power.num_rows == 0
    assert store.completed() == {"abc": "unsupported"}
    with pytest.raises(KeyError):
        runs_table([{"cell_id": "x", "bogus_column": 1}])


def test_rewrite_replaces_rows(tmp_path):
    store = Store.open(str(tmp_path))
    for n in (5, 2):
        tables = status_tables("c1", _cfg(), "t", "engine_error", "x")
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
    Store.open(uri).write_cell("u1", status_tables("u1", _cfg(), "t", "infeasible", "too big"))
    assert load(uri).runs.column("cell_id").to_pylist() == ["u1"]
    assert (tmp_path / "remote" / "runs" / "u1.parquet").is_file()
