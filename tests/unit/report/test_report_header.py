"""The report's header: which physical GPUs the ok cells ran on."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from orchestrator.report.header import _methods, _units
from orchestrator.store.sweep_store import load

STUDY_STORE = Path(__file__).resolve().parents[3] / "experiments" / "h200_study" / "store"


def test_the_physical_gpus_of_the_study_are_named_with_their_cells():
    """The H200 study ran on three cards over three GPU allowances: each is named (first 12
    characters of its NVML UUID) with the number of ok cells it ran, and the counts add up."""
    ok = load(str(STUDY_STORE)).runs.to_pandas().query("status == 'ok'")
    line = _units(ok)
    counts = ok["gpu_uuid"].value_counts()
    assert line.startswith(f" Physical GPUs (NVML UUID): {len(counts)} (")
    for uuid, n in counts.items():
        assert f"{uuid[:12]}…: {n} cell" in line
    assert len(counts) >= 2 and counts.sum() == len(ok)


def test_no_uuid_no_line():
    """Simulated cells (and stores from before the column) carry no UUID: nothing is claimed."""
    assert _units(pd.DataFrame({"gpu_uuid": [None, ""]})) == ""
    assert _units(pd.DataFrame({"gpu": ["h200"]})) == ""
    one = _units(pd.DataFrame({"gpu_uuid": ["GPU-1d8a997f-937e"]}))
    assert one == " Physical GPUs (NVML UUID): 1 (GPU-1d8a997f…: 1 cell)."


def test_a_cell_measured_over_two_gpus_counts_for_each():
    """An endpoint cell summed over its server's GPUs stores their UUIDs comma-separated."""
    ok = pd.DataFrame({"gpu_uuid": ["GPU-aaaaaaaa-1,GPU-bbbbbbbb-2", "GPU-aaaaaaaa-1"]})
    assert _units(ok) == " Physical GPUs (NVML UUID): 2 (GPU-aaaaaaaa…: 2 cells, GPU-bbbbbbbb…: 1 cell)."


def test_how_each_cell_was_measured_is_named_with_its_count():
    """An endpoint's modes (prompts as text or token ids, token times, request fields) and the
    client's ITL basis reach the report; rows without them (older stores, other engines) say nothing."""
    ok = pd.DataFrame({"prompt_mode": ["text", "token_ids", "text", None], "itl_basis": ["chunk", "token", None, None],
                       "request_dialect": ["openai", "vllm", "openai", None], "token_times_source": [None] * 4})
    assert _methods(ok) == ("How measured: prompts sent as 2 text, 1 token_ids; inter-token latency per 1 chunk, "
                            "1 token; request fields 2 openai, 1 vllm.")
    assert _methods(pd.DataFrame({"gpu": ["h200"]})) == ""


def test_what_follows_from_how_a_server_was_measured_is_said():
    ok = pd.DataFrame({"api": ["chat", "completions"], "token_count_source": ["tokenized", "usage"],
                       "output_lengths_forced": [False, True], "n_prompt_tokens_mismatch": [3, 0]})
    text = _methods(ok)
    assert text.startswith("How measured: API 1 chat, 1 completions; output tokens counted from 1 tokenized, 1 usage; "
                           "output lengths forced 1 False, 1 True.")
    assert "1 cells had requests whose server-reported prompt tokens differ" in text
    assert "1 cells could not force output lengths" in text and "T flag is expected" in text
