"""Which cells the report pairs as "prefix caching off → on", and what each pair carries, on
hand-made runs rows with real cell configs (``driver.grid.config_of``) through the store schema
and ``dataset.prepare_runs``, as a loaded sweep's would be."""
from __future__ import annotations

import json
import math

import pandas as pd

from orchestrator.analysis.dataset import prepare_runs
from orchestrator.analysis.prefix_cache import cache_savings, caching_flags, caching_of, savings_frame
from orchestrator.analysis.traffic import workload_name, workload_names
from orchestrator.config.fields import as_plain
from orchestrator.driver.grid import config_of
from orchestrator.store import schema

AXES = ["model=llama2_7b", "quantization=none", "gpu=h100", "workload=sessions", "batch_size=32"]


def _cfg(engine: str, *extra: str):
    return config_of([*AXES, f"engine={engine}", *extra])


def _row(cell_id: str, cfg, engine: str, j_req: float, hit: float, ttft: float) -> dict:
    return {"cell_id": cell_id, "sweep": "t", "status": "ok", "error": "", "engine": engine, "model": "llama2_7b",
            "quantization": "none", "gpu": "h100", "workload": "sessions", "arrival": "poisson", "batch_size": 32,
            "repeat": cfg.repeat, "schema_version": schema.SCHEMA_VERSION, "config_json": json.dumps(as_plain(cfg)),
            "energy_source": "simulated" if engine == "simulated" else "nvml", "energy_j": j_req * 10,
            "energy_per_request_j": j_req,
            "energy_per_1k_output_tokens_j": j_req * 8, "energy_per_1k_prompt_tokens_j": j_req / 2,
            "offered_rate_rps": 1.5, "prefix_cache_hit_rate": hit, "ttft_p50_ms": ttft, "ttft_p99_ms": 3 * ttft,
            "workload_source": "sessions"}


def _frame(specs):
    """specs: (cell_id, engine, config overrides, J/request, hit rate, TTFT p50)."""
    configs = {cid: _cfg(engine, *extra) for cid, engine, extra, *_ in specs}
    rows = [_row(cid, configs[cid], engine, j, hit, ttft) for cid, engine, _, j, hit, ttft in specs]
    return prepare_runs(schema.runs_table(rows).to_pandas(), configs), configs


def test_the_caching_option_is_read_from_the_block_of_the_engine_that_ran_the_cell():
    assert caching_of(_cfg("vllm", "engine.vllm.enable_prefix_caching=true"), "vllm") is True
    assert caching_of(_cfg("simulated", "engine.vllm.enable_prefix_caching=true"), "simulated") is False
    assert caching_of(_cfg("simulated", "engine.simulated.enable_prefix_caching=true"), "simulated") is True
    assert caching_of(_cfg("hf"), "hf") is None  # transformers has no such option
    assert caching_of(None, "vllm") is None  # a row without a stored config


def test_cells_identical_but_for_prefix_caching_pair_and_carry_their_runs_values():
    """Two rates, each off and on, on the simulator: two pairs — one of them although its on cell's
    stored config also differs in vLLM's block (not what ran it) — and a lone cell (another rate,
    on only) pairs with nothing."""
    on = "engine.simulated.enable_prefix_caching=true"
    runs, configs = _frame([
        ("a-off", "simulated", ["workload.rate_rps=0.5"], 200.0, 0.0, 40.0),
        ("a-on", "simulated", ["workload.rate_rps=0.5", on, "engine.vllm.enforce_eager=true"], 180.0, 0.8, 10.0),
        ("b-off", "simulated", ["workload.rate_rps=1.5"], 90.0, 0.0, 50.0),
        ("b-on", "simulated", ["workload.rate_rps=1.5", on], 72.0, 0.83, 12.0),
        ("c-on", "simulated", ["workload.rate_rps=3.0", on], 50.0, 0.85, 14.0),
    ])
    flags = dict(zip(runs["cell_id"], caching_flags(runs, configs)))
    assert flags == {"a-off": False, "a-on": True, "b-off": False, "b-on": True, "c-on": True}
    savings = cache_savings(runs, configs)
    assert [(s.off.cell_id, s.on.cell_id) for s in savings] == [("a-off", "a-on"), ("b-off", "b-on")]
    a = savings[0]
    assert a.series == "llama2_7b/none/h100 [rate_rps=0.5]" and a.workload_source == "sessions"
    assert (a.off.energy_per_request_j, a.on.energy_per_request_j) == (200.0, 180.0)
    assert math.isclose(a.energy_per_request_change_pct, -10.0)
    assert (a.off.energy_per_1k_prompt_tokens_j, a.on.energy_per_1k_output_tokens_j) == (100.0, 1440.0)
    assert (a.hit_rate, a.on.ttft_p50_ms, a.off.ttft_p99_ms) == (0.8, 10.0, 120.0) and a.simulated
    table = savings_frame(savings)
    assert list(table["cell_id_on"]) == ["a-on", "b-on"] and list(table["prefix_cache_hit_rate"]) == [0.8, 0.83]


def test_a_pair_needs_the_same_engine_and_no_other_difference():
    runs, configs = _frame([
        ("v-off", "vllm", [], 100.0, 0.0, 30.0),
        ("v-on", "vllm", ["engine.vllm.enable_prefix_caching=true", "engine.vllm.enforce_eager=true"], 90.0, 0.7, 9.0),
        ("s-on", "simulated", ["engine.simulated.enable_prefix_caching=true"], 80.0, 0.7, 8.0),
    ])
    assert cache_savings(runs, configs) == []  # eager differs on vLLM; the simulator is another engine
    runs, configs = _frame([
        ("v-off", "vllm", [], 100.0, 0.0, 30.0),
        ("v-on", "vllm", ["engine.vllm.enable_prefix_caching=true"], 90.0, float("nan"), 9.0),
    ])
    [pair] = cache_savings(runs, configs)
    assert pair.series == "llama2_7b/none/h100" and math.isnan(pair.hit_rate) and not pair.simulated


def test_energy_that_is_not_valid_is_not_compared():
    runs, configs = _frame([
        ("off", "simulated", [], 100.0, 0.0, 30.0),
        ("on", "simulated", ["engine.simulated.enable_prefix_caching=true"], 90.0, 0.7, 9.0),
    ])
    runs.loc[runs["cell_id"] == "on", "energy_available"] = False
    [pair] = cache_savings(runs, configs)
    assert math.isnan(pair.on.energy_per_request_j) and math.isnan(pair.energy_per_request_change_pct)
    assert pair.on.ttft_p50_ms == 9.0


def test_a_workload_is_named_with_its_traffic_source_unless_synthetic():
    assert workload_name("mooncake_sample", "trace") == "mooncake_sample (source: trace)"
    assert workload_name("mooncake_sample", "trace", aside=True) == "mooncake_sample; source: trace"
    assert workload_name("chat_medium", "synthetic") == "chat_medium"
    assert workload_name("chat_medium", None) == "chat_medium"  # a store from before the column
    rows = pd.DataFrame({"workload": ["s", "s", "c"], "workload_source": [None, "sessions", "synthetic"]})
    assert workload_names(rows) == {"s": "s (source: sessions)", "c": "c"}
    assert workload_names(pd.DataFrame({"workload": ["c"]})) == {"c": "c"}
