"""scripts/seed_predictions.py: the published figures are the seeds' own (spot checks against
../shared/seeds wording), and the explanation of a difference is computed from the numbers:
tokens per request implied by the seed, saturation of the predicted cell, the engine factor."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import seed_predictions as sp  # noqa: E402


def predicted(**over):
    row = {"workload": "chat_medium", "batch_size": 1, "output_throughput_tok_s": 55.0, "request_throughput_rps": 0.43,
           "ttft_p50_ms": 56_000.0, "tpot_p50_ms": 16.7, "energy_per_1k_output_tokens_j": 848.0, "saturated": True,
           "output_tokens_mean_cfg": 128.0, "offered_rate_rps": 20.0}
    row.update(over)
    return pd.DataFrame([row])


def test_the_seed_figures_are_transcribed():
    by = {(p.seed, p.workload, p.batch_size): p for p in sp.PUBLISHED}
    assert by[(sp.SEED_T4, "chat_medium", 1)].output_tok_s == 22.2 and by[(sp.SEED_T4, "chat_high", 8)].request_rps == 48.49
    a = by[(sp.SEED_A800, "offline", 64)]
    assert (a.output_tok_s, a.energy_per_request_j, a.energy_per_1k_output_tokens_j) == (1003.5, 0.61, 248)
    assert len(sp.PUBLISHED) == 4 + 7


def test_a_difference_is_explained_from_the_numbers():
    t4 = next(p for p in sp.PUBLISHED if p.seed == sp.SEED_T4 and p.batch_size == 1)
    r = sp.rows_for(t4, predicted(), {})
    assert "= 1.1 output tokens per request (ours: 128" in r["why"]
    assert "0.43 req/s served of 20 offered" in r["why"]
    a800 = next(p for p in sp.PUBLISHED if p.seed == sp.SEED_A800 and p.batch_size == 1)
    r = sp.rows_for(a800, predicted(workload="offline", saturated=False, output_throughput_tok_s=175.0), {})
    assert "implies 2.45 tokens per request" in r["why"] and "no H200 hf INT8 factor" in r["why"]
    assert r["predicted_factored_output_tok_s"] is None
    r = sp.rows_for(a800, predicted(workload="offline", saturated=False, output_throughput_tok_s=175.0),
                    {("offline", 1): {"tok_s": 0.1, "j_per_tok": 8.0, "source": "hf"}})
    assert r["predicted_factored_output_tok_s"] == pytest.approx(17.5)
    assert r["predicted_factored_energy_per_1k_output_tokens_j"] == pytest.approx(848.0 * 8)
    assert "no H200 hf INT8 factor" not in r["why"] and r["factor_source"] == "hf"
    assert "no H200 AWQ factor" in sp.rows_for(t4, predicted(), {})["why"]


def test_the_awq_factor_from_the_committed_study():
    """The study's measured AWQ chat cells ÷ its simulated ones: one factor per (rate, max-num-seqs)
    it measured, equal to the ratio of the two stores' numbers (recomputed here); near 1 since the
    calibration carries the AWQ kernel's weight-read factor (fitted on another store)."""
    study = Path(__file__).resolve().parents[2] / "experiments" / "h200_study"
    factors = sp.awq_factors(study / "store", study / "sim_store")
    m, p = sp._ok_runs(study / "store"), sp._ok_runs(study / "sim_store")
    pick = lambda t, wl, b: t[(t.quantization == "awq") & (t.workload == wl) & (t.batch_size == b)  # noqa: E731
                              & (t.model == "llama2_7b")]
    assert {("chat_medium", 1), ("chat_medium", 8), ("chat_high", 1), ("chat_high", 8)} <= set(factors)
    for (wl, b), f in factors.items():
        src = pick(m, wl, b)
        if f["source"] == "vLLM AWQ with CUDA graphs":
            src = src[[not sp._engine_option(c, "vllm", "enforce_eager") for c in src.config_json]]
        predicted = pick(p, wl, b).output_throughput_tok_s.mean()
        assert f["tok_s"] == pytest.approx(src.output_throughput_tok_s.mean() / predicted)
        if b in (1, 8):  # saturated at both rates: tok/s is the kernel's speed, which the calibrated
            assert 0.8 < f["tok_s"] < 1.25  # simulator (AWQ weights read at the fitted fraction) predicts closely
    assert sp.hf_int8_factors(study / "store", None) == {}


def test_the_plot_draws_every_published_figure(tmp_path):
    """seeds.png from the committed rows: one bar per T4 figure and series, one A800 point per
    batch size and series (a series with no value, e.g. no engine factor yet, draws nothing)."""
    import json

    from PIL import Image

    study = Path(__file__).resolve().parents[2] / "experiments" / "h200_study" / "seeds"
    rows = json.loads((study / "seeds.json").read_text())["rows"]
    drawn = sp.plot(rows, tmp_path / "seeds.png")
    published = len(sp.PUBLISHED)
    factored = sum(r["predicted_factored_output_tok_s"] is not None for r in rows)
    assert drawn == 2 * published + factored and factored >= 4  # the T4 has its AWQ factor already
    assert Image.open(tmp_path / "seeds.png").size == (1320, 495)
    assert "![each seed's published tok/s beside the predictions](seeds.png)" in (study / "seeds.md").read_text()
    assert (study / "seeds.png").is_file()
