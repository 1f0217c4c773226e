"""``+search=energy_slo`` end to end on the simulator with a real local Ray cluster: the search
finds the grid's optimum in a fraction of its cells, never picks an infeasible or saturated
point, resumes from its completed trials without running them again, and the report shows it;
bad SLO values fail with one line and exit 2 before any Ray task."""
from __future__ import annotations

from orchestrator.analysis.search import read_search
from orchestrator.search.record import read_record
from orchestrator.store.sweep_store import Store
from tests.conftest import run_orchestrator

SPACE = ["batch_size=1,2,4,8,16,32,64,128", "quantization=none,fp8"]
BASE = ["+search=energy_slo", "engine=simulated", "gpu=h100", "model=llama2_7b", "workload=chat_medium",
        "workload.duration_s=10", "search.slo.ttft_p99_ms=500", "search.slo.tpot_p99_ms=50",
        "dispatch.num_cpus=2", "dispatch.progress=false", *SPACE]


def _search(store, *extra):
    return run_orchestrator([*BASE, f"store.dir={store}", *extra], timeout=300)


def test_search_resumes_finds_the_grid_optimum_and_is_reported(tmp_path):
    store = tmp_path / "s"
    _search(store, "search.max_cells=4")  # cut short: one round of 2 trials, then confirmation
    first = read_record(Store.open(str(store)))
    ran_first = {t.cell_id for t in first.trials if t.source == "measured" and not t.confirmation}
    assert len(ran_first) == 2 and first.rounds == 2

    proc = _search(store, "search.max_cells=8")  # the same search with more budget: resumes
    second = read_record(Store.open(str(store)))
    replayed = [t for t in second.trials if t.round == 0]
    assert {t.cell_id for t in replayed} == ran_first and {t.source for t in replayed} == {"store"}
    assert not ran_first & {t.cell_id for t in second.trials if t.source == "measured"}
    assert second.cells_launched <= 8 and "search energy_slo (energy_slo): pick" in proc.stdout

    _search(store, "search.method=grid")  # brute force into the same store: re-uses the search's cells
    grid = read_record(Store.open(str(store)), "grid")
    assert grid.cells_launched == grid.grid_launchable_cells == 16
    by_cell = {t.cell_id: t for t in grid.trials}
    feasible = [t.value for t in by_cell.values() if t.feasible]
    assert any(not t.feasible and "saturated" in t.reasons for t in by_cell.values())
    picked = by_cell[second.pick.cell_ids[0]]
    assert picked.feasible and not picked.saturated  # never an SLO-violating or saturated point
    assert picked.value <= 1.05 * min(feasible)

    view = read_search(str(store))
    assert view.grid is not None and view.grid.gap <= 0.05 and view.regions
    proc = run_orchestrator_report(store, tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Search: least energy under latency SLOs" in text and "### Ruled out" in text
    gap = "at the grid's optimum" if view.grid.gap == 0 else "above the grid's optimum"
    assert gap in text and "saturated" in text


def run_orchestrator_report(store, out):
    import subprocess
    import sys

    from tests.conftest import ROOT

    return subprocess.run([sys.executable, "-m", "orchestrator.report", str(store), "--out", str(out)], cwd=ROOT,
                          check=True, capture_output=True, text=True, timeout=300)


def test_no_feasible_point_means_no_pick(tmp_path):
    proc = run_orchestrator([*BASE[:-2], "batch_size=1,2", "quantization=none", "search.slo.ttft_p99_ms=1",
                             f"store.dir={tmp_path / 's'}"], timeout=300)
    assert "no candidate meets p99 TTFT <= 1 ms" in proc.stdout
    assert read_record(Store.open(str(tmp_path / "s"))).pick is None


def test_bad_slo_values_exit_2_before_any_work(tmp_path):
    for override, line in [
        ("search.slo.ttft_p99_ms=-1", "error: search.slo.ttft_p99_ms=-1.0: must be a number of ms > 0"),
        ("search.slo.tpot_p99_ms=fast", "error: search.slo.tpot_p99_ms=fast: expected float"),
    ]:
        proc = run_orchestrator([*BASE, override, f"store.dir={tmp_path / 'x'}"], check=False, timeout=120)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == line, proc.stderr
        assert "Ray" not in proc.stdout
    proc = run_orchestrator(["+search=energy_slo", "engine=simulated", f"store.dir={tmp_path / 'y'}"], check=False)
    assert proc.returncode == 2 and "search.slo.ttft_p99_ms=None: required" in proc.stderr


def test_capacity_search_brackets_the_grids_capacity(tmp_path):
    """``+search=capacity`` over 17 rates on the simulator: the rate it picks is the grid's
    capacity (the last passing rate before the first failure, from the brute-force grid into the
    same store), found in a handful of cells, with J/request there."""
    store = tmp_path / "cap"
    base = ["+search=capacity", "engine=simulated", "gpu=h100", "model=llama2_7b", "batch_size=32",
            "workload=chat_medium", "workload.duration_s=10", "search.slo.ttft_p99_ms=1000",
            "search.slo.tpot_p99_ms=40", "search.confirm_repeats=0", "dispatch.num_cpus=2",
            "dispatch.progress=false", f"store.dir={store}"]
    proc = run_orchestrator(base, timeout=400)
    rec = read_record(Store.open(str(store)))
    measured = [t for t in rec.trials if t.source == "measured" and not t.confirmation]
    assert rec.pick is not None and len(measured) <= 6 and not [t for t in rec.trials if t.source == "cache"]
    assert "the bracket is closed" in proc.stdout + proc.stderr
    run_orchestrator([*base, "search.method=grid"], timeout=600)
    grid = read_record(Store.open(str(store)), "grid")
    by_rate = sorted({t.offered_rate_rps: t.feasible for t in grid.trials if not t.confirmation}.items())
    first_fail = next((r for r, ok in by_rate if not ok), float("inf"))
    capacity = max(r for r, ok in by_rate if ok and r < first_fail)
    assert 1 < capacity < 128  # a real bracket: some rates pass, some fail
    assert rec.pick.value == capacity and rec.pick.energy_per_request_j > 0
