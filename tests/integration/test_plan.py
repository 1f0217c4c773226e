"""``--plan`` (issue 27): the grid shown before any GPU time — cells per GPU type and engine,
complete, pre-launch statuses with their reasons, engine starts, GPU time — with nothing written
or run, and counts equal to what a real run then launches."""
from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT, run_orchestrator


def _totals(stdout: str):
    """(cells to run, engine starts) of the plan's total line."""
    m = re.search(r"^total: (\d+) cells to run in (\d+) engine starts", stdout, re.M)
    assert m, stdout
    return int(m.group(1)), int(m.group(2))


def _launch_line(stdout: str):
    """(cells, to run, complete, not launchable) of a real run's first line."""
    m = re.search(r"sweep \w+: (\d+) cells — (\d+) to run, (\d+) already complete, (\d+) not launchable", stdout)
    assert m, stdout
    return tuple(int(g) for g in m.groups())


def test_the_plan_of_the_full_grid_matches_what_a_run_launches(tmp_path):
    store = tmp_path / "full"
    plan = run_orchestrator(["+sweep=full", "--plan", f"store.dir={store}", "dispatch.num_cpus=2"], timeout=300)
    assert plan.returncode == 0 and "plan of sweep full: 630 cells" in plan.stdout and "nothing is run" in plan.stdout
    assert not store.exists()  # nothing written
    to_run, starts = _totals(plan.stdout)
    prelaunch = sum(int(n) for n in re.findall(r"(\d+) (?:infeasible|unsupported)\b(?!:)", plan.stdout))
    assert re.search(r"^  T4 +simulated +210 cells: 0 complete, \d+ infeasible, 42 unsupported, ", plan.stdout, re.M)
    run = run_orchestrator(["+sweep=full", f"store.dir={store}", "dispatch.num_cpus=2", "dispatch.progress=false"],
                           timeout=600, check=False)
    cells, launched, complete, not_launchable = _launch_line(run.stdout)
    assert (cells, launched, complete, not_launchable) == (630, to_run, 0, prelaunch), run.stdout[-2000:]
    assert f"dispatched {launched} cells in {starts} tasks" in run.stdout
    failed = re.search(r"^(\d+) launched cells did not end ok:", run.stdout, re.M)
    n_failed = int(failed.group(1)) if failed else 0  # overloaded chat cells: no request completed
    assert run.returncode == (3 if n_failed else 0)
    again = run_orchestrator(["+sweep=full", "--plan", f"store.dir={store}"], timeout=300)
    assert _totals(again.stdout) == (n_failed, n_failed)  # only the failed cells would run again


def test_the_plan_estimates_gpu_time_from_engine_starts_and_windows(tmp_path):
    """vLLM on an H100 (no GPU needed to plan): offline cells of one model share a start, a chat
    cell has its own; an infeasible batch is named with its reason; 120 s per start (no store yet)."""
    plan = run_orchestrator(["-m", "batch_size=1,8,4096", "engine=vllm", "gpu=h100", "model=llama2_7b",
                             "workload=offline", "--plan", f"store.dir={tmp_path / 'v'}"], timeout=120)
    line = next(x for x in plan.stdout.splitlines() if x.startswith("  H100"))
    # one start (120 s) + 2 cells x (5 s idle baseline + 10 s window) = 150 s
    assert "3 cells: 0 complete, 1 infeasible, 2 to run in 1 engine starts ≈ 2.5 min GPU time" in line
    assert "starts 120 s each, typical" in line
    assert re.search(r"^  1 infeasible: needs [\d.]+ GiB .* largest batch that fits: 458; it fits with "
                     r"tensor_parallel_size >= 8$", plan.stdout, re.M)
    assert not (tmp_path / "v").exists()


def test_the_plan_of_an_active_sweep_prices_its_budget(tmp_path):
    """Four offline cells of one start and two chat cells of their own starts (120 s each, no store
    yet), half of them measured: 3 cells' windows, and between the fewest starts (the offline
    one: 120 s) and a random choice's expected starts."""
    plan = run_orchestrator(["-m", "batch_size=1,2,4,8", "workload=offline,chat_medium", "engine=vllm", "gpu=h100",
                             "model=llama2_7b", "sweep.strategy=active", "sweep.budget=0.5", "--plan",
                             f"store.dir={tmp_path / 'a'}"], timeout=120)
    line = next(x for x in plan.stdout.splitlines() if x.startswith("  active"))
    m = re.search(r"measures (\d+) of (\d+) cells to run, the rest predicted, ≈ ([\d.]+) min to ([\d.]+) min", line)
    assert m and (int(m.group(1)), int(m.group(2))) == (4, 8)
    low, high = float(m.group(3)) * 60, float(m.group(4)) * 60
    # offline: 5 s idle + 10 s window; chat_medium: 5 s idle + warm-up + 30 s: 4 of 8 cells' mean
    assert 120 + 4 * 15 < low < high < 120 * 5 + 4 * 60
    assert plan.stdout.rstrip().splitlines()[-1].startswith("total: 8 cells to run")  # the full grid's, as before


def test_a_random_choice_misses_a_start_as_combinatorics_says():
    from math import comb

    from orchestrator.driver.plan_view import _none_drawn

    for total, size, drawn in ((80, 4, 20), (10, 3, 5), (10, 6, 5), (5, 1, 5)):
        assert _none_drawn(total, size, drawn) == pytest.approx(comb(total - size, drawn) / comb(total, drawn))


def test_the_plan_prices_starts_from_a_gpu_runs_store_per_engine_variant():
    """The committed H200 store of ``experiments/benchmarks/warm_start/`` (7 vLLM server starts, 5
    of them served by a spare, 2 machines' first; 1 offline engine start): the AWQ cells of the
    same slice are priced at the servers' median and the offline engine's own start, each start
    counted once however many cells shared it, and "at most" holds a fresh machine's first."""
    store = ROOT / "experiments" / "benchmarks" / "warm_start" / "h200" / "store"
    plan = run_orchestrator(["+sweep=full", "gpu=h200", "model=llama2_7b", "quantization=awq", "engine=vllm",
                             "--plan", f"store.dir={store}"], timeout=300)
    line = next(x for x in plan.stdout.splitlines() if x.startswith("  H200"))
    assert "21 to run in 8 engine starts" in line
    assert ("starts closed_loop/open_loop 31 s (the store's median), offline 68 s (the store's median); "
            "a fresh machine's first up to 154 s") in line
