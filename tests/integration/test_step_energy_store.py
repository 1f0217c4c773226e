"""A real simulated sweep (``python -m orchestrator``: multi-turn sessions with prefix caching, an
offline workload and an open-loop chat workload) writes a ``steps`` table for every ok cell, read
back both by ``store.sweep_store.load`` and by DuckDB straight from the Parquet files: the list
columns come back as lists, the steps' energy plus the energy outside steps is the cell's energy
(gross and net), so is the requests' energy, each step's per-request token lists sum to its
totals, and the runs row's step columns agree with the steps and requests tables."""
from __future__ import annotations

import math
from collections import defaultdict

import pyarrow as pa
import pytest

from tests.conftest import run_orchestrator

from orchestrator.store.schema import STEPS_SCHEMA
from orchestrator.store.sweep_store import load

duckdb = pytest.importorskip("duckdb")

WORKLOADS = ("sessions", "offline", "chat_medium")
REL = 1e-9


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("step_energy") / "sweep"
    proc = run_orchestrator(["-m", f"workload={','.join(WORKLOADS)}", "engine=simulated",
                             "engine.simulated.enable_prefix_caching=true", "model=llama2_7b", "gpu=h100",
                             "batch_size=8", "workload.duration_s=10", "name=step_energy", f"store.dir={out}",
                             "dispatch.progress=false", "dispatch.num_cpus=2"], timeout=300)
    assert "sweep done: 3 ok" in proc.stdout, proc.stdout[-2000:]
    return out


def sql(query: str, store):
    """Rows (dicts) of ``query``, ``{t}`` naming each table's Parquet files."""
    q = query.format(**{t: f"read_parquet('{store}/{t}/*.parquet')" for t in ("runs", "requests", "steps")})
    rel = duckdb.sql(q)
    return [dict(zip(rel.columns, row)) for row in rel.fetchall()]


def close(a, b, rel=REL):
    return math.isclose(a, b, rel_tol=rel, abs_tol=rel * max(abs(a), abs(b), 1.0))


def test_every_ok_cell_has_its_steps_table(store):
    t = load(str(store))
    ok = {r["cell_id"]: r for r in t.runs.to_pylist() if r["status"] == "ok"}
    assert sorted(r["workload"] for r in ok.values()) == sorted(WORKLOADS)
    for cell_id in ok:
        assert (store / "steps" / f"{cell_id}.parquet").is_file()
    assert set(t.steps.column("cell_id").to_pylist()) == set(ok)
    assert t.steps.schema.remove_metadata().equals(STEPS_SCHEMA)
    rows = sql("select cell_id, count(*) as n, min(step_source) as s0, max(step_source) as s1, "
               "min(step_index) as i0, max(step_index) as i1 from {steps} group by cell_id", store)
    assert {r["cell_id"] for r in rows} == set(ok)
    for r in rows:
        assert r["s0"] == r["s1"] == "simulated"
        assert r["i0"] == 0 and r["i1"] == r["n"] - 1
        assert ok[r["cell_id"]]["n_steps"] == r["n"] > 50
        assert ok[r["cell_id"]]["step_source"] == "simulated"


def test_list_columns_read_back_as_lists(store):
    t = load(str(store))
    for name in ("request_index", "request_prefill_tokens", "request_decode_tokens"):
        assert t.steps.schema.field(name).type == pa.list_(pa.int64())
    row = t.steps.slice(0, 1).to_pylist()[0]
    assert isinstance(row["request_index"], list) and all(isinstance(x, int) for x in row["request_index"])
    described = {r["column_name"]: r["column_type"] for r in
                 sql("select * from (describe select * from {steps})", store)}
    assert described["request_index"] == described["request_prefill_tokens"] == "BIGINT[]"
    # DuckDB and pyarrow read the same lists
    duck = sql("select cell_id, step_index, request_index, request_prefill_tokens, request_decode_tokens "
               "from {steps} order by cell_id, step_index", store)
    arrow = sorted(t.steps.select(["cell_id", "step_index", "request_index", "request_prefill_tokens",
                                   "request_decode_tokens"]).to_pylist(), key=lambda r: (r["cell_id"], r["step_index"]))
    assert duck == arrow and len(duck) > 150


def test_per_step_request_lists_sum_to_the_step_totals(store):
    bad = sql("select cell_id, step_index from {steps} where "
              "len(request_index) != n_requests or len(request_prefill_tokens) != n_requests "
              "or len(request_decode_tokens) != n_requests "
              "or list_sum(request_prefill_tokens) != prefill_tokens "
              "or list_sum(request_decode_tokens) != decode_tokens or n_requests < 1", store)
    assert bad == []
    t = load(str(store))
    for r in t.steps.to_pylist():
        assert sum(r["request_prefill_tokens"]) == r["prefill_tokens"]
        assert sum(r["request_decode_tokens"]) == r["decode_tokens"]
        assert len(r["request_index"]) == len(set(r["request_index"])) == r["n_requests"]
        assert r["end_s"] >= r["start_s"]
        assert r["prefill_share"] == (1.0 if r["decode_tokens"] == 0 else r["prefill_share"])
        if r["prefill_tokens"] == 0:
            assert r["prefill_share"] == 0.0


def test_steps_energy_plus_outside_is_the_cells_energy(store):
    rows = sql("select r.cell_id, r.energy_j, r.net_energy_j, r.energy_outside_steps_j, "
               "r.net_energy_outside_steps_j, r.energy_in_steps_j, s.e, s.net from {runs} r join "
               "(select cell_id, sum(energy_j) as e, sum(net_energy_j) as net from {steps} group by cell_id) s "
               "using (cell_id) where r.status = 'ok'", store)
    assert len(rows) == len(WORKLOADS)
    for r in rows:
        assert r["energy_j"] > 0 and r["net_energy_j"] > 0
        assert close(r["e"] + r["energy_outside_steps_j"], r["energy_j"]), r
        assert close(r["net"] + r["net_energy_outside_steps_j"], r["net_energy_j"]), r
        assert close(r["energy_in_steps_j"], r["e"]), r
    # the same from the tables load() gives
    t = load(str(store))
    e, net = defaultdict(float), defaultdict(float)
    for s in t.steps.to_pylist():
        e[s["cell_id"]] += s["energy_j"]
        net[s["cell_id"]] += s["net_energy_j"]
    for r in t.runs.to_pylist():
        assert close(e[r["cell_id"]] + r["energy_outside_steps_j"], r["energy_j"])
        assert close(net[r["cell_id"]] + r["net_energy_outside_steps_j"], r["net_energy_j"])


def test_requests_energy_plus_outside_is_the_cells_energy(store):
    rows = sql("select r.cell_id, r.energy_j, r.net_energy_j, r.energy_outside_steps_j, r.net_energy_outside_steps_j, "
               "r.prefill_energy_share, q.e, q.net, q.pre, q.dec, q.net_pre, q.net_dec, q.n, q.n_energy "
               "from {runs} r join (select cell_id, sum(energy_j) as e, sum(net_energy_j) as net, "
               "sum(energy_prefill_j) as pre, sum(energy_decode_j) as dec, sum(net_energy_prefill_j) as net_pre, "
               "sum(net_energy_decode_j) as net_dec, count(*) as n, count(energy_j) as n_energy "
               "from {requests} group by cell_id) q using (cell_id) where r.status = 'ok'", store)
    assert len(rows) == len(WORKLOADS)
    for r in rows:
        assert close(r["e"] + r["energy_outside_steps_j"], r["energy_j"]), r
        assert close(r["net"] + r["net_energy_outside_steps_j"], r["net_energy_j"]), r
        assert close(r["pre"] + r["dec"], r["e"]) and close(r["net_pre"] + r["net_dec"], r["net"])
        assert close(r["prefill_energy_share"], r["net_pre"] / r["net"], rel=1e-6)
        assert 0 < r["n_energy"] <= r["n"]
    # per request: energy = prefill + decode; a request in no step has none
    t = load(str(store))
    in_steps = defaultdict(set)
    for s in t.steps.to_pylist():
        in_steps[s["cell_id"]].update(s["request_index"])
    for q in t.requests.to_pylist():
        if q["request_index"] in in_steps[q["cell_id"]]:
            assert q["energy_j"] is not None and close(q["energy_j"], q["energy_prefill_j"] + q["energy_decode_j"])
        else:
            assert q["energy_j"] is None and q["net_energy_j"] is None


def test_each_requests_prefill_entry_is_its_uncached_prompt(store):
    """Each step's prefill tokens are the uncached prompts of the requests it started: a request's
    entry with prefill tokens appears once, and equals its input less its cached tokens."""
    t = load(str(store))
    reqs = {}
    for q in t.requests.to_pylist():
        reqs[(q["cell_id"], q["request_index"])] = q
    seen = set()
    for s in t.steps.to_pylist():
        for i, p in zip(s["request_index"], s["request_prefill_tokens"]):
            if p:
                key = (s["cell_id"], i)
                assert key not in seen
                seen.add(key)
                q = reqs[key]
                assert p == q["input_tokens"] - (q["cached_tokens"] or 0)
    assert any((q["cached_tokens"] or 0) > 0 for q in reqs.values())  # the sessions cell hit its cache
