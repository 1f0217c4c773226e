"""``sweep.strategy=active`` end to end on a real local Ray cluster with the simulator: the budget
is never exceeded, predictions live in ``active_sweep.json`` and never as rows (so a plain resume
of the grid runs them), a resumed active sweep continues its rounds and re-runs nothing, the
engine variants of a grid are its minority options, and bad input is one line before any cell."""
from __future__ import annotations

import json
import math

import pytest

from orchestrator.driver import grid
from orchestrator.search.active_sweep import METRICS, variants
from orchestrator.store.sweep_store import load
from tests.conftest import interrupt_once_stored, run_orchestrator, start_orchestrator

GRID = ["-m", "batch_size=1,2,4,8,16,32,64", "quantization=none,fp8", "workload=offline", "engine=simulated",
        "gpu=h100", "sweep.strategy=active", "dispatch.num_cpus=2", "dispatch.progress=false"]
N = 14


def record(store):
    return json.loads((store / "active_sweep.json").read_text())


def test_an_active_sweep_measures_its_budget_predicts_the_rest_and_resumes(tmp_path):
    store = tmp_path / "active"
    first = run_orchestrator([*GRID, "sweep.budget=0.3", f"store.dir={store}"])
    budget = math.ceil(0.3 * N)
    assert f"{N} launchable cells, measuring at most {budget}" in first.stdout
    runs = load(str(store)).runs.to_pylist()
    assert len(runs) == budget and all(r["status"] == "ok" for r in runs)  # never more than the budget
    doc = record(store)
    cells = {c["cell_id"]: c for c in doc["cells"]}
    assert len(cells) == N and doc["stopped"] == "the budget is spent"
    measured = {r["cell_id"]: r for r in runs}
    assert {k for k, c in cells.items() if c["source"] == "measured"} == set(measured)
    assert sum(len(r["cells"]) for r in doc["rounds"]) == budget
    assert {k for r in doc["rounds"] for k in r["cells"]} == set(measured)
    first_round = doc["rounds"][0]["cells"]
    labels = [cells[k]["label"] for k in first_round]
    assert {lab.split("/")[1] for lab in labels} == {"none", "fp8"}  # each new engine path first
    assert all(lab.split("/")[3] in ("bs1", "bs64") for lab in labels)  # at a corner of its series
    for k, r in measured.items():
        assert cells[k]["values"]["output_throughput_tok_s"] == r["output_throughput_tok_s"]
    for c in cells.values():
        if c["source"] == "predicted":
            for m in METRICS:
                v = c["values"]
                assert 0 < v[f"{m}_low"] <= v[m] <= v[f"{m}_high"]
            assert c["level"]

    # resumed with a larger budget: the rounds go on, nothing measured is measured again
    started = {r["cell_id"]: r["started_unix_s"] for r in runs}
    more = run_orchestrator([*GRID, "sweep.budget=0.5", f"store.dir={store}"])
    runs2 = load(str(store)).runs.to_pylist()
    assert len(runs2) == math.ceil(0.5 * N)
    assert all(r["started_unix_s"] == started[r["cell_id"]] for r in runs2 if r["cell_id"] in started)
    doc2 = record(store)
    assert doc2["rounds"][: len(doc["rounds"])] == doc["rounds"] and len(doc2["rounds"]) > len(doc["rounds"])
    assert "active sweep round" in more.stdout

    # the same budget again: no round, no run
    again = run_orchestrator([*GRID, "sweep.budget=0.5", f"store.dir={store}"])
    assert "active sweep round" not in again.stdout and "dispatched" not in again.stdout
    assert record(store)["rounds"] == doc2["rounds"]

    # the predicted cells are not results: the plain grid runs exactly them
    plain = run_orchestrator([a for a in GRID if a != "sweep.strategy=active"] + [f"store.dir={store}"])
    assert f"{N - len(runs2)} to run, {len(runs2)} already complete" in plain.stdout


def test_bad_active_settings_are_one_line_before_any_cell(tmp_path):
    for bad, says in (("sweep.budget=0", "sweep.budget=0.0: must be in (0, 1]"),
                      ("sweep.round_cells=0", "sweep.round_cells=0: must be >= 1"),
                      ("sweep.strategy=best", "sweep.strategy")):
        proc = run_orchestrator([*GRID, bad, f"store.dir={tmp_path / 'x'}"], check=False)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert says in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "x").exists()


def test_variants_are_the_grids_minority_options():
    jobs = [["batch_size=1", "engine.vllm.enforce_eager=false"], ["batch_size=8", "engine.vllm.enforce_eager=false"],
            ["batch_size=8", "engine.vllm.enforce_eager=true"]]
    configs = [grid.config_of(["engine=vllm", "gpu=h200", *job]) for job in jobs]
    names = variants(configs, ["vllm"] * 3)
    assert names == ["", "", "engine.enforce_eager=true"]


def test_a_failed_cell_counts_against_the_budget_and_is_not_run_again(tmp_path):
    """A cell of the grid that timed out in an earlier plain sweep: the active sweep counts it,
    never picks it, and its final tally dispatches nothing (store.retry_failed is on by default)."""
    store = tmp_path / "failed"
    axes = ["model=llama2_7b", "gpu=h100", "workload=offline", "engine=simulated", "dispatch.num_cpus=2",
            "dispatch.progress=false", f"store.dir={store}"]
    run_orchestrator([*axes, "batch_size=8", "engine.simulated.pace_s=30", "dispatch.cell_timeout_s=2",
                      "dispatch.max_retries=0"], check=False)
    [failed] = load(str(store)).runs.to_pylist()
    assert failed["status"] == "timeout"
    proc = run_orchestrator(["-m", "batch_size=1,2,4,8", *axes, "sweep.strategy=active", "sweep.budget=0.5"],
                            check=False)
    assert proc.returncode in (0, 3), proc.stdout[-2000:] + proc.stderr[-2000:]
    runs = {r["cell_id"]: r for r in load(str(store)).runs.to_pylist()}
    assert len(runs) == 2 and runs[failed["cell_id"]]["started_unix_s"] == failed["started_unix_s"]
    assert sorted(r["status"] for r in runs.values()) == ["ok", "timeout"]
    cells = {c["cell_id"]: c for c in record(store)["cells"]}
    assert cells[failed["cell_id"]]["source"] == "failed"
    assert proc.stdout.count("dispatched") == 1  # the one round; the final tally runs nothing


def test_a_check_measures_predicted_cells_against_their_frozen_intervals(tmp_path):
    """``sweep.strategy=check`` after an active sweep: a seeded draw of its predicted cells is
    frozen (prediction and interval) before they run, then measured; each error is the runs row's
    value over the frozen prediction; a resumed check runs nothing; without a record it is one line."""
    store = tmp_path / "check"
    empty = run_orchestrator([*GRID, "sweep.strategy=check", f"store.dir={store}"], check=False)
    assert empty.returncode == 2 and "holds no active_sweep.json" in empty.stderr and "Traceback" not in empty.stderr
    assert not store.exists()

    run_orchestrator([*GRID, "sweep.budget=0.3", f"store.dir={store}"])
    predicted = {c["cell_id"]: c for c in record(store)["cells"] if c["source"] == "predicted"}
    before = len(load(str(store)).runs.to_pylist())
    out = run_orchestrator([*GRID, "sweep.strategy=check", "sweep.check_cells=3", "sweep.seed=7", f"store.dir={store}"])
    assert f"measuring 3 of its {len(predicted)} predicted cells (seed 7)" in out.stdout
    check = json.loads((store / "active_check.json").read_text())
    runs = {r["cell_id"]: r for r in load(str(store)).runs.to_pylist()}
    assert len(runs) == before + 3 and len(check["cells"]) == 3
    for c in check["cells"]:
        assert c["cell_id"] in predicted and c["status"] == "ok"
        assert c["values"] == predicted[c["cell_id"]]["values"]  # the prediction as the record gave it
        row = runs[c["cell_id"]]
        for m in METRICS:
            got = row[m] if m in row else row[m.replace("per_output_token", "per_1k_output_tokens")] / 1000
            assert c["measured"][m] == pytest.approx(got, rel=1e-12)
            assert c["error"][m] == pytest.approx(got / c["values"][m] - 1, rel=1e-9, abs=1e-12)
            assert c["covered"][m] == (c["values"][f"{m}_low"] <= got <= c["values"][f"{m}_high"])
    for m in METRICS:
        s = check["summary"][m]
        errors = sorted(abs(c["error"][m]) for c in check["cells"])
        assert s["n"] == 3 and s["median_abs_error"] == errors[1] and s["max_abs_error"] == errors[2]
        assert s["coverage"] == sum(c["covered"][m] for c in check["cells"]) / 3
        assert f"check {m}: 3 of 3 cells measured" in out.stdout

    # the active sweep resumed now counts the checked cells as measured; the check keeps its frozen draw
    again = run_orchestrator([*GRID, "sweep.strategy=check", "sweep.check_cells=5", f"store.dir={store}"])
    assert "dispatched" not in again.stdout and len(load(str(store)).runs.to_pylist()) == before + 3
    assert [c["cell_id"] for c in json.loads((store / "active_check.json").read_text())["cells"]] == \
        [c["cell_id"] for c in check["cells"]]


def test_an_interrupted_check_records_the_cells_it_completed(tmp_path):
    """Ctrl-C during a check (as the GPU session's limit does): the cells complete by then are set
    against their frozen predictions in ``active_check.json`` (the rest have no status yet), and the
    same command measures the rest of the same draw."""
    store = tmp_path / "icheck"
    run_orchestrator([*GRID, "sweep.budget=0.3", f"store.dir={store}"])
    before = len(load(str(store)).runs.to_pylist())
    args = [*GRID, "sweep.strategy=check", "sweep.check_cells=6", "engine.simulated.pace_s=4", f"store.dir={store}"]
    proc = start_orchestrator(args)
    stdout, stderr = interrupt_once_stored(proc, store, rows_before=before)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    kept = len(load(str(store)).runs.to_pylist()) - before
    check = json.loads((store / "active_check.json").read_text())
    done = [c for c in check["cells"] if c["status"] == "ok"]
    assert 1 <= kept == len(done) < 6 and all(c["status"] == "" for c in check["cells"] if c not in done)
    assert all(c["error"][m] is not None for c in done for m in METRICS)
    assert all(check["summary"][m]["n"] == kept for m in METRICS)
    assert f"check {METRICS[0]}: {kept} of 6 cells measured" in stdout

    again = run_orchestrator(args)
    assert f"{6 - kept} to run, {kept} already complete" in again.stdout
    resumed = json.loads((store / "active_check.json").read_text())
    assert [c["cell_id"] for c in resumed["cells"]] == [c["cell_id"] for c in check["cells"]]
    assert all(c["status"] == "ok" for c in resumed["cells"]) and resumed["summary"][METRICS[0]]["n"] == 6
