"""A cell's identity under workload sources: only the chosen source's block counts (another
source's knobs never change a cell's id), a traffic file counts by its content (its SHA-256),
not its path, and a worker that finds other content at the path refuses the cell."""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from orchestrator.app.hydra_entry import typed
from orchestrator.client.trace_files import TraceFileError
from orchestrator.driver.grid import cell_configs, cells
from orchestrator.workloads import plan_for
from orchestrator.workloads.context import checked, file_sha256

TRACE = [{"timestamp": 1000 * k, "input_length": 40, "output_length": 8, "hash_ids": [k % 3]} for k in range(12)]


@pytest.fixture
def cell(compose):
    def make(*overrides):
        [cfg] = cell_configs([typed(compose(["model=tiny", "engine=simulated", *overrides]))])
        return cfg
    return make


def cell_id(cfg) -> str:
    (c,) = cells([cfg], {})
    return c.cell_id


def write_trace(path, rows=TRACE):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("other", ["workload.trace.speedup=2", "workload.trace.start_s=30",
                                   "workload.sessions.max_turns=9", "workload.dataset.offset=4",
                                   "workload.dataset.shuffle=false", "workload.trace.path=/nowhere.jsonl"])
def test_another_sources_block_never_changes_a_synthetic_cells_id(cell, other):
    assert cell_id(cell(other)) == cell_id(cell())


def test_a_sessions_cells_id_follows_its_own_block_only(cell):
    base = cell_id(cell("workload=sessions"))
    assert cell_id(cell("workload=sessions", "workload.trace.speedup=2")) == base
    assert cell_id(cell("workload=sessions", "workload.dataset.offset=4")) == base
    assert cell_id(cell("workload=sessions", "workload.sessions.max_turns=9")) != base
    assert cell_id(cell("workload=sessions", "workload.sessions.think=fixed")) != base
    # and the source itself is part of the identity
    assert cell_id(cell("workload=sessions", "workload.source=synthetic")) != base


def test_a_trace_cells_id_follows_its_block(tmp_path, cell):
    path = write_trace(tmp_path / "t.jsonl")
    args = ("workload=mooncake_sample", f"workload.trace.path={path}")
    base = cell_id(cell(*args))
    assert cell_id(cell(*args, "workload.sessions.max_turns=9")) == base
    assert cell_id(cell(*args, "workload.dataset.offset=4")) == base
    assert cell_id(cell(*args, "workload.trace.speedup=2")) != base
    assert cell_id(cell(*args, "workload.trace.rate_rps=2")) != base
    assert cell_id(cell(*args, "workload.trace.block_tokens=16")) != base


def test_the_driver_resolves_the_path_and_fills_in_the_files_sha256(tmp_path, cell, monkeypatch):
    path = write_trace(tmp_path / "t.jsonl")
    monkeypatch.chdir(tmp_path)
    cfg = cell("workload=mooncake_sample", "workload.trace.path=t.jsonl")
    assert cfg.workload.trace.path == str(path.resolve())
    assert cfg.workload.trace.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(str(path))


def test_moving_a_trace_keeps_the_cell_id_and_editing_it_changes_it(tmp_path, cell):
    a = write_trace(tmp_path / "a" / "trace.jsonl")
    b = tmp_path / "elsewhere" / "renamed.jsonl"
    b.parent.mkdir()
    shutil.copy(a, b)
    at_a = cell("workload=mooncake_sample", f"workload.trace.path={a}")
    at_b = cell("workload=mooncake_sample", f"workload.trace.path={b}")
    assert at_a.workload.trace.path != at_b.workload.trace.path
    assert cell_id(at_a) == cell_id(at_b)
    edited = [dict(r) for r in TRACE]
    edited[5]["output_length"] = 9
    write_trace(b, edited)
    assert cell_id(cell("workload=mooncake_sample", f"workload.trace.path={b}")) != cell_id(at_a)


def test_moving_a_dataset_keeps_the_cell_id_and_editing_it_changes_it(tmp_path, cell):
    a = tmp_path / "a.jsonl"
    a.write_text('{"prompt": "t5 t6 t7", "output_tokens": 4}\n{"prompt": "t8 t9"}\n')
    b = tmp_path / "sub" / "b.jsonl"
    b.parent.mkdir()
    shutil.copy(a, b)
    args = ("workload=sharegpt_sample", "workload.dataset.format=auto")
    ida = cell_id(cell(*args, f"workload.dataset.path={a}"))
    assert cell_id(cell(*args, f"workload.dataset.path={b}")) == ida
    b.write_text('{"prompt": "t5 t6 t7", "output_tokens": 5}\n{"prompt": "t8 t9"}\n')
    assert cell_id(cell(*args, f"workload.dataset.path={b}")) != ida


def test_a_sessions_dataset_counts_by_its_content(tmp_path, cell):
    conv = [{"conversations": [{"from": "human", "value": "t5 t6"}, {"from": "gpt", "value": "t7"}]}]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(conv))
    b.write_text(json.dumps(conv))
    ca = cell("workload=sessions", f"workload.sessions.dataset={a}")
    assert ca.workload.sessions.dataset_sha256 == hashlib.sha256(a.read_bytes()).hexdigest()
    assert cell_id(ca) == cell_id(cell("workload=sessions", f"workload.sessions.dataset={b}"))
    conv[0]["conversations"][1]["value"] = "t7 t8"
    b.write_text(json.dumps(conv))
    assert cell_id(ca) != cell_id(cell("workload=sessions", f"workload.sessions.dataset={b}"))
    assert cell_id(ca) != cell_id(cell("workload=sessions"))


def test_a_worker_that_finds_other_content_at_the_path_refuses(tmp_path, cell):
    path = write_trace(tmp_path / "t.jsonl")
    cfg = cell("workload=mooncake_sample", f"workload.trace.path={path}")
    cid = cell_id(cfg)
    assert plan_for(cfg, cid).requests  # the file the sweep was defined with: fine
    assert checked(str(path), cfg.workload.trace.sha256) == str(path)
    assert checked(str(path), "") == str(path)
    edited = [dict(r) for r in TRACE]
    edited[0]["input_length"] = 41  # the same size in bytes
    write_trace(path, edited)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    with pytest.raises(TraceFileError, match="not the file the sweep was defined with"):
        checked(str(path), cfg.workload.trace.sha256)
    with pytest.raises(TraceFileError, match="not the file the sweep was defined with"):
        plan_for(cfg, cid)
    path.unlink()
    with pytest.raises(TraceFileError, match="no such file"):
        plan_for(cfg, cid)


def test_a_worker_refuses_an_edited_dataset(tmp_path, cell):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "t5 t6 t7"}\n')
    cfg = cell("workload=sharegpt_sample", "workload.dataset.format=auto", f"workload.dataset.path={path}")
    cid = cell_id(cfg)
    assert plan_for(cfg, cid).requests
    path.write_text('{"prompt": "t5 t6 t7 t8"}\n')
    with pytest.raises(TraceFileError, match="not the file the sweep was defined with"):
        plan_for(cfg, cid)
