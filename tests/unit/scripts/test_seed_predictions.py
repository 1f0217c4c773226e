"""scripts/seed_predictions.py: the published figures are the seeds' own (spot checks against
../shared/seeds wording); the explanation of a difference is computed from the numbers (tokens per
request implied by the seed, saturation of the predicted cell); each engine path's host time per
step is fitted on its H200 cell from the committed study's stores, as the formula says."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))

import seed_predictions as sp  # noqa: E402

STUDY = Path(__file__).resolve().parents[3] / "experiments" / "h200_study"


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
    r = sp.rows_for(t4, predicted(), None)
    assert "= 1.1 output tokens per request (ours: 128" in r["why"]
    assert "0.43 req/s served of 20 offered" in r["why"] and "no H200 eager cell" in r["why"]
    assert r["predicted_host_output_tok_s"] is None
    r = sp.rows_for(t4, predicted(), predicted(output_throughput_tok_s=40.0, request_throughput_rps=0.31))
    assert "0.43 req/s (0.31 with the H200 host time) served of 20 offered" in r["why"]
    assert r["predicted_host_output_tok_s"] == 40.0 and "no H200 eager cell" not in r["why"]
    a800 = next(p for p in sp.PUBLISHED if p.seed == sp.SEED_A800 and p.batch_size == 1)
    r = sp.rows_for(a800, predicted(workload="offline", saturated=False, output_throughput_tok_s=175.0), None)
    assert "implies 2.45 tokens per request" in r["why"] and "no H200 hf INT8 cell" in r["why"]


def test_the_host_time_is_fitted_on_the_committed_study():
    """Each path's host time = batch ÷ measured tok/s − batch ÷ simulated tok/s at its fit cell
    (recomputed here from the two stores); the eager cells are selected by enforce_eager, the hf
    ones by threshold 0.0; the seeds' committed output carries the same values."""
    import json

    m, p = sp._ok_runs(STUDY / "store"), sp._ok_runs(STUDY / "sim_store")
    eager = sp.path_cells(m, sp.EAGER)
    assert len(eager) == 4 and all(sp._engine_option(c, "vllm", "enforce_eager") for c in eager.config_json)
    bnb = sp.path_cells(m, sp.BNB)
    assert sorted(bnb.batch_size) == [1, 2, 4, 8, 16, 32, 64]
    for path, cells in ((sp.EAGER, eager), (sp.BNB, bnb)):
        wl, b = path.fit_on
        tok_m = cells[(cells.workload == wl) & (cells.batch_size == b)].output_throughput_tok_s.mean()
        ref = p[(p.model == path.model) & (p.quantization == path.quantization) & (p.workload == wl) & (p.batch_size == b)]
        expected = b / tok_m - b / ref.output_throughput_tok_s.mean()
        assert sp.fit_host_step(path, m, p) == pytest.approx(expected) and expected > 0.005  # host-bound: > 5 ms
    fits = json.loads((STUDY / "seeds" / "seeds.json").read_text())["host_fits"]
    assert fits[sp.SEED_T4]["host_step_s"] == pytest.approx(sp.fit_host_step(sp.EAGER, m, p))
    assert fits[sp.SEED_A800]["host_step_s"] == pytest.approx(sp.fit_host_step(sp.BNB, m, p))
    assert sp.fit_host_step(sp.BNB, m.iloc[:0], p) is None


def test_host_checks_mark_the_fit_cell_and_compute_errors():
    measured = sp._ok_runs(STUDY / "store")
    cells = sp.path_cells(measured, sp.EAGER)
    fake = cells.assign(output_throughput_tok_s=cells.output_throughput_tok_s * 1.1,
                        energy_per_1k_output_tokens_j=cells.energy_per_1k_output_tokens_j * 0.8)
    checks = sp.host_checks(sp.EAGER, measured, fake)
    assert len(checks) == 4 and [c["fitted"] for c in checks].count(True) == 1
    assert all(c["tok_s_error_pct"] == pytest.approx(10.0) and c["j_error_pct"] == pytest.approx(-20.0) for c in checks)


def test_the_plot_draws_every_published_figure(tmp_path):
    """seeds.png from the committed rows: one bar per T4 figure and series, one A800 point per
    batch size and series (a series with no value, e.g. no host time fitted, draws nothing)."""
    import json

    from PIL import Image

    rows = json.loads((STUDY / "seeds" / "seeds.json").read_text())["rows"]
    drawn = sp.plot(rows, tmp_path / "seeds.png")
    published = len(sp.PUBLISHED)
    with_host = sum(r["predicted_host_output_tok_s"] is not None for r in rows)
    assert drawn == 2 * published + with_host and with_host == published  # both paths fitted on the study
    assert Image.open(tmp_path / "seeds.png").size == (1320, 495)
    assert "![each seed's published tok/s beside the predictions](seeds.png)" in (STUDY / "seeds" / "seeds.md").read_text()


def test_an_unsaturated_fit_cell_is_refused():
    """An unsaturated chat cell's tok/s is the offered load, not the step time: no host time from it."""
    m, p = sp._ok_runs(STUDY / "store"), sp._ok_runs(STUDY / "sim_store")
    m = m.assign(saturated=False)
    with pytest.raises(ValueError, match="not saturated"):
        sp.fit_host_step(sp.EAGER, m, p)
    assert sp.fit_host_step(sp.BNB, m, p) > 0  # offline: every step runs the full batch
