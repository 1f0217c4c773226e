"""Series on the committed H200 study store: cells whose stored configs were written by two
sweeps on two days (the study's and the energy search's, the later one with an option of the
simulator that did not exist before) measured the same thing and are one series; older stores
whose configs no longer parse, or whose engine is gone, still load."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.analysis.dataset import StoredConfigs, prepare_runs, read_sweep
from orchestrator.store import sweep_store as store

STUDY = Path(__file__).resolve().parents[3] / "experiments" / "h200_study" / "store"


def _chat(runs):
    return runs[(runs["workload"] == "chat_medium") & (runs["quantization"] == "none")]


def test_cells_of_two_sweeps_are_one_series():
    chat = _chat(read_sweep(str(STUDY)).runs)
    assert set(chat["sweep"]) == {"h200_study", "energy_slo"} and len(chat) == 9
    texts = {json.dumps({k: v for k, v in json.loads(t).items() if k not in ("batch_size", "repeat")}, sort_keys=True)
             for t in chat["config_json"]}
    assert len(texts) == 2  # the stored configs differ (engine.simulated gained an option) ...
    assert chat["series"].nunique() == 1 and chat["series"].iloc[0] == "llama2_7b/none/h200"  # ... the cells do not


def test_a_config_that_no_longer_parses_or_a_retired_engine_still_loads():
    runs = _chat(store.load(str(STUDY)).runs.to_pandas()).head(3).copy()
    bad = json.loads(runs["config_json"].iloc[0])
    bad["workload"]["arrival"] = "retired-arrival"
    runs.iloc[0, runs.columns.get_loc("config_json")] = json.dumps(bad)
    runs.iloc[1, runs.columns.get_loc("engine")] = "retired-engine"
    configs = StoredConfigs(dict(zip(runs["cell_id"], runs["config_json"])))
    with pytest.raises(ValueError, match="retired-arrival"):
        configs[runs["cell_id"].iloc[0]]
    variants = prepare_runs(runs, configs).set_index("cell_id")["variant"]
    assert all(len(v) == 4 for v in variants) and variants.nunique() == 3
