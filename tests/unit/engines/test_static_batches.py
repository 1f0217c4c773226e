"""The static-batch loop the offline engines share (``engines.static_batches``): one refusal of a
plan that is not offline for every offline engine, the schedule's batches and window, the
progress it reports."""
from __future__ import annotations

import pytest

from orchestrator.client.metrics import RequestRecord
from orchestrator.client.workload import build_plan
from orchestrator.core.phases import Phase
from orchestrator.driver.grid import config_of
from orchestrator.engines import ENGINES
from orchestrator.engines.static_batches import run_static_batches
from orchestrator.errors import CellFailure, Status

OFFLINE = ["model=tiny", "gpu=t4", "workload=offline", "batch_size=2", "workload.num_batches=3",
           "workload.min_window_s=0"]


def _records(specs, t):
    return [RequestRecord(index=s.index, phase=s.phase, arrival_s=t, send_s=t, first_token_s=t + 0.1, end_s=t + 0.5,
                          input_tokens=s.input_tokens, output_tokens=s.output_tokens,
                          requested_output_tokens=s.output_tokens, batch_index=s.batch_index) for s in specs]


def test_the_loop_runs_warmup_then_measured_batches_and_returns_the_measured_window():
    plan = build_plan(config_of(OFFLINE).workload, 2)
    seen, phases, clock = [], [], [100.0]

    def run_batch(specs):
        seen.append([s.batch_index for s in specs])
        start = clock[0]
        clock[0] += 1.0
        return _records(specs, start), start, start + 0.5

    run = run_static_batches("toy", plan, run_batch, lambda recs, sched: {"n": len(recs)},
                             lambda phase, done, total, unit: phases.append((phase, unit)))
    schedule = plan.schedule()
    n_warmup = schedule.n_warmup
    assert len(seen) == n_warmup + 3 and all(len(b) == 2 for b in seen)
    assert run.window_start_s == 100.0 + n_warmup and run.window_end_s == 100.0 + n_warmup + 2.5
    assert run.extra == {"n": 2 * (n_warmup + 3)} and len(run.batch_bounds_s) == 3
    assert [p for p, _ in phases].count(Phase.measuring) == 3 and {u for _, u in phases} == {"batches"}


@pytest.mark.parametrize("name", [n for n in ENGINES.names() if any(
    k.value == "offline" for cls in ENGINES.variants(n) for k in cls.workload_kinds) and n != "simulated"])
def test_every_offline_engine_refuses_a_served_plan_the_same_way(name):
    from orchestrator.config.groups import WorkloadKind
    from orchestrator.engines import engine_for

    cfg = config_of([*OFFLINE, f"engine={name}"])
    engine = engine_for(name, WorkloadKind.offline)(cfg, 2)  # cheap before start()
    served = build_plan(config_of(["model=tiny", "gpu=t4", "workload=chat_medium"]).workload, 2)
    with pytest.raises(CellFailure, match=f"engine {name} runs static batches only") as refused:
        engine.run(served)
    assert refused.value.status is Status.unsupported
