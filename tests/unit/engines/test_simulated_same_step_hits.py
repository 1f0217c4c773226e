"""Requests admitted in one step find each other's prompt blocks, as in vLLM's scheduler (each
request's blocks are cached as it is allocated): a static batch of prompts sharing a long prefix
hits on every prompt but the first, from the first batch."""
from __future__ import annotations

import json

from orchestrator.app.hydra_entry import typed
from orchestrator.driver.grid import cell_configs, cells
from orchestrator.engines.simulated import SimulatedEngine
from orchestrator.workloads import plan_for


def test_a_batch_sharing_a_prefix_hits_within_its_first_step(compose, tmp_path):
    rows = [{"messages": [{"role": "system", "content": "energy " * 200}, {"role": "user", "content": f"q{i}"}],
             "output_tokens": 4} for i in range(16)]
    path = tmp_path / "shared.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    [cfg] = cell_configs([typed(compose([
        "model=tiny", "engine=simulated", "workload=offline", "batch_size=8", "workload.source=dataset",
        f"workload.dataset.path={path}", "workload.dataset.shuffle=false", "workload.num_batches=1",
        "workload.warmup_batches=0", "workload.min_window_s=0", "engine.simulated.enable_prefix_caching=true"]))])
    (cell,) = cells([cfg], {})
    engine = SimulatedEngine(cfg, cfg.batch_size)
    engine.start()
    run = engine.run(plan_for(cfg, cell.cell_id))
    first = [r for r in run.records if r.batch_index == 0]
    assert len(first) == 8 and first[0].cached_tokens == 0
    assert all(r.cached_tokens >= 192 for r in first[1:]), [r.cached_tokens for r in first]
