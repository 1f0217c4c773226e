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
from orchestrator.driver.grid import cells, config_of
from orchestrator.errors import Status
from orchestrator.store.cell_tables import status_tables
from orchestrator.store.schema import READABLE_VERSIONS, RUNS_SCHEMA, SCHEMA_VERSION, columns_table, runs_table
from orchestrator.store.sweep_store import Store, load


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
    assert SCHEMA_VERSION == 3 and READABLE_VERSIONS == (1, 2, 3)
    assert (row["model"], row["gpu"], row["batch_size"], row["arrival"], row["error"]) == ("tiny", "t4", 2, "offline", "why")
    assert cell_config_from_json(row["config_json"]) == _cell("abc").config  # every field, typed
    assert json.loads(row["config_json"])["workload"]["arrival"] == "offline"  # enums stored as strings
    assert t.requests.num_rows == 3 and t.power.num_rows == 0
    assert store.completed() == {"abc": "unsupported"}
    with pytest.raises(KeyError):
        runs_table([{"cell_id": "x", "bogus_column": 1}])


def test_the_seed_column_is_the_seed_the_repeat_drew_with(tmp_path):
    """Issue 27: the ``seed`` column read the workload's seed (0) for every repeat."""
    from orchestrator.client.workload import build_plan
    from orchestrator.config.groups import REPEAT_SEED_STRIDE

    cell = _cell("r2")
    cell = dataclasses.replace(cell, config=dataclasses.replace(cell.config, repeat=2))
    row = status_tables(cell, "t", Status.ok, "")["runs"].to_pylist()[0]
    assert row["seed"] == cell.config.workload.seed + 2 * REPEAT_SEED_STRIDE == cell.config.workload.seed_for(2)
    plan = build_plan(cell.config.workload, 2, repeat=2)
    assert plan.seed == row["seed"]


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
from orchestrator.store.schema import columns_table
from orchestrator.store.sweep_store import Store
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
    store = Store.open(str(tmp_path))  # the resumed run claims the cell: what the killed writer left goes
    (tmp_path / "runs" / "other.parquet.tmp-0123").write_bytes(b"a live writer's")
    left = [p.name for p in (tmp_path / "power").iterdir() if p.name.startswith("k.parquet.tmp-")]
    assert store.discard_partial(["k"]) == len(left)
    assert not [p for p in (tmp_path / "power").iterdir() if ".tmp-" in p.name]
    assert (tmp_path / "runs" / "other.parquet.tmp-0123").exists()  # another cell's: untouched


def test_two_writers_of_one_file_each_use_their_own_temporary_file(tmp_path):
    """``sweep.json`` written by two drivers at once (threads here): every write lands whole, none
    fails on a temporary name the other renamed away, and none is left behind."""
    import threading

    store, errors = Store.open(str(tmp_path)), []

    def write(i):
        try:
            for k in range(200):
                store.write_text("sweep.json", json.dumps({"writer": i, "k": k, "pad": "x" * 20_000}))
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    [t.start() for t in threads], [t.join() for t in threads]
    assert not errors and json.loads((tmp_path / "sweep.json").read_text())["k"] == 199
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_load_rejects_non_sweep(tmp_path):
    with pytest.raises(FileNotFoundError, match="no sweep here"):
        load(str(tmp_path))


def test_store_uri_on_a_pyarrow_filesystem(tmp_path):
    uri = f"file://{tmp_path}/remote"
    Store.open(uri).write_cell("u1", status_tables(_cell("u1"), "t", Status.infeasible, "too big"))
    assert load(uri).runs.column("cell_id").to_pylist() == ["u1"]
    assert (tmp_path / "remote" / "runs" / "u1.parquet").is_file()


V3_RUNS = ("n_requests_cancelled", "drain_timeout_s", "drain_s", "min_window_s", "n_batches_measured",
           "batch_output_tok_s_cv")


def test_a_version_2_cell_loads_beside_version_3_with_the_new_columns_null(tmp_path):
    """Version 3 added bounded drains, offline window stability and prompt hashes: a version-2
    file (without those columns) still loads, its new columns null, next to a version-3 cell."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert set(V3_RUNS) <= set(RUNS_SCHEMA.names)
    store = Store.open(str(tmp_path))
    new = status_tables(_cell("v3"), "t", Status.ok, "")
    new["runs"] = runs_table([{**new["runs"].to_pylist()[0], "n_requests_cancelled": 2, "drain_timeout_s": 10.0,
                               "drain_s": 10.0, "min_window_s": 10.0, "n_batches_measured": 7,
                               "batch_output_tok_s_cv": 0.01}])
    new["requests"] = columns_table("requests", {"cell_id": ["v3"], "request_index": [0], "prompt_hash": ["ab" * 8]})
    store.write_cell("v3", new)
    old = status_tables(_cell("v2"), "t", Status.ok, "")["runs"]
    old = old.drop_columns(list(V3_RUNS)).replace_schema_metadata({"orchestrator_schema_version": "2"})
    old = old.set_column(old.schema.get_field_index("schema_version"), "schema_version", pa.array([2], pa.int64()))
    pq.write_table(old, tmp_path / "runs" / "v2.parquet")
    old_req = columns_table("requests", {"cell_id": ["v2"], "request_index": [0]}).drop_columns(["prompt_hash"])
    pq.write_table(old_req.replace_schema_metadata({"orchestrator_schema_version": "2"}),
                   tmp_path / "requests" / "v2.parquet")
    t = load(str(tmp_path))
    runs = {r["cell_id"]: r for r in t.runs.to_pylist()}
    assert runs["v2"]["schema_version"] == 2 and all(runs["v2"][c] is None for c in V3_RUNS)
    assert runs["v3"]["n_requests_cancelled"] == 2 and runs["v3"]["n_batches_measured"] == 7
    hashes = dict(zip(t.requests.column("cell_id").to_pylist(), t.requests.column("prompt_hash").to_pylist()))
    assert hashes == {"v2": None, "v3": "ab" * 8}
    assert store.completed() == {"v2": "ok", "v3": "ok"}
    # issue 27: the upgrade (the next run over the store, or `python -m orchestrator.store S --upgrade`)
    # gives every file the current columns, the old rows' values and version kept; a DuckDB query over
    # runs/*.parquet then sees every column without union_by_name
    before = pq.read_table(tmp_path / "runs" / "v2.parquet")
    old_extra = before.append_column("retired_column", pa.array(["x"]))  # a column the schema dropped
    pq.write_table(old_extra.replace_schema_metadata(before.schema.metadata), tmp_path / "runs" / "v2.parquet")
    assert Store.open(str(tmp_path)).upgrade() == 2 and Store.open(str(tmp_path)).upgrade() == 0
    for table, schema in (("runs", RUNS_SCHEMA), ("requests", columns_table("requests", {}).schema)):
        for f in sorted((tmp_path / table).glob("*.parquet")):
            assert pq.read_schema(f).names == schema.names, f
    after = pq.read_table(tmp_path / "runs" / "v2.parquet").to_pylist()[0]
    assert after["schema_version"] == 2 and after["cell_id"] == "v2" and all(after[c] is None for c in V3_RUNS)
    assert pq.read_schema(tmp_path / "runs" / "v2.parquet").metadata[b"orchestrator_schema_version"] == b"2"
    import duckdb

    con = duckdb.connect()
    rows = con.execute(f"select cell_id, request_dialect from read_parquet('{tmp_path}/runs/*.parquet') "
                       "order by cell_id").fetchall()
    assert rows == [("v2", None), ("v3", None)]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "zero_bytes"])
@pytest.mark.parametrize("table", ["runs", "requests"])
def test_an_unreadable_cell_file_is_set_aside_and_the_rest_is_read(tmp_path, table, damage):
    """Issue 27: one bad file never stops a read. The bad cell's files move (not deleted) under
    ``unreadable/``, one line names it, the cell no longer counts as done; the others load."""
    store = Store.open(str(tmp_path))
    for cid in ("good1", "bad", "good2"):
        tables = status_tables(_cell(cid), "t", Status.ok, "")
        tables["requests"] = columns_table("requests", {"cell_id": [cid] * 4, "request_index": list(range(4))})
        store.write_cell(cid, tables)
    path = tmp_path / table / "bad.parquet"
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not parquet at all" * 40,
                      "zero_bytes": b""}[damage])
    fresh = Store.open(str(tmp_path))
    t = fresh.load()
    assert sorted(t.runs.column("cell_id").to_pylist()) == ["good1", "good2"] and t.requests.num_rows == 8
    assert len(fresh.set_aside) == 1 and fresh.set_aside[0].startswith(f"unreadable file {path} moved aside")
    assert "cell bad counts as not done" in fresh.set_aside[0]
    assert fresh.completed() == {"good1": "ok", "good2": "ok"}  # a resumed sweep measures it again
    kept = sorted(p.relative_to(tmp_path / "unreadable").parts[0] for p in (tmp_path / "unreadable").rglob("*.parquet"))
    assert kept == ["requests", "runs"]  # every file of the cell, kept for a look
    assert not (tmp_path / "runs" / "bad.parquet").exists() and not (tmp_path / "requests" / "bad.parquet").exists()
