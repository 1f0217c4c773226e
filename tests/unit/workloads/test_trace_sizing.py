"""A trace cell is sized by the trace's own lengths, not by the workload's unused length
distributions: the driver reads the file's mean input and output tokens into the resolved
workload, and the drain limit, the VRAM check and the runs row's ``*_mean_cfg`` columns use them."""
from __future__ import annotations

import json

from orchestrator.app.hydra_entry import typed
from orchestrator.client.workload import drain_limit_s
from orchestrator.driver.grid import cell_configs, cells

ROWS = [{"timestamp": 500 * k, "input_length": 3000 + 100 * (k % 3), "output_length": 400, "hash_ids": []}
        for k in range(30)]


def test_a_trace_cell_is_sized_by_the_traces_lengths(compose, tmp_path):
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    base = ["model=llama2_7b", "gpu=h100", "engine=vllm", "batch_size=64"]
    [trace] = cell_configs([typed(compose([*base, "workload.source=trace", f"workload.trace.path={path}"]))])
    [synthetic] = cell_configs([typed(compose(base))])
    assert trace.workload.mean_lengths() == (3100.0, 400.0)
    assert synthetic.workload.mean_lengths() == (256.0, 128.0)  # chat_medium's distributions
    # the drain limit follows the longer requests (3 x one request's roofline time)
    assert drain_limit_s(trace) > 2 * drain_limit_s(synthetic)
    # 64 sequences of 3,500 tokens of KV (112 GiB) do not fit an H100; 64 of 384 do
    (c,) = cells([trace], {})
    assert c.status is not None and c.status.value == "infeasible" and "GiB" in c.reason, (c.status, c.reason)
    (s,) = cells([synthetic], {})
    assert s.status is None


def test_a_session_turn_is_sized_by_its_history(compose):
    [cfg] = cell_configs([typed(compose(["model=llama2_7b", "engine=simulated", "workload=sessions"]))])
    # conf/workload/sessions.yaml: 1,024-token system prompt, 192-token turns, 128-token answers, 2-6 turns
    assert cfg.workload.mean_lengths() == (1024 + 192 + (4 - 1) / 2 * (192 + 128), 128.0)
