"""``analysis.prediction_error.interval_coverage``: the held-out points of a comparison predicted
by ``active.predictor`` with only the fitted points measured; its coverage, half-width and errors
are those of the predictor's own intervals, counted on the held-out measurements."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from orchestrator.active.predictor import GridCell, ResidualPredictor
from orchestrator.analysis.prediction_error import FitSelection, interval_coverage

TOK, J = "output_throughput_tok_s", "energy_per_output_token_j"


def comparison() -> pd.DataFrame:
    """A fitted offline series (the simulator 2-4% off) and a held-out chat series 10-30% off."""
    rng = np.random.default_rng(5)
    rows = []
    for workload, spread, shift in (("offline", 0.02, 0.0), ("chat", 0.1, 0.2)):
        for bs in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512):
            sim_tok, sim_j = 100.0 * bs ** 0.8, 2.0 / bs ** 0.7
            err = shift + rng.normal(0, spread)
            rows.append({"model": "m", "quantization": "none", "gpu": "h200", "workload": workload, "batch_size": bs,
                         f"{TOK}_a": sim_tok * math.exp(err), f"{TOK}_b": sim_tok,
                         f"{J}_a": sim_j * math.exp(-err), f"{J}_b": sim_j})
    t = pd.DataFrame(rows)
    for m in (TOK, J):
        t[f"change_{m}_pct"] = (t[f"{m}_b"] / t[f"{m}_a"] - 1) * 100
    return t


def test_coverage_is_the_predictors_own_on_the_held_out_points():
    t = comparison()
    selection = FitSelection(quantization="none", workload="offline")
    cov = interval_coverage(t, selection).set_index("metric")
    assert list(cov.index) == ["output tok/s", "J/output token"] and (cov["points"] == 10).all()
    cells = [GridCell(str(i), "m/none/h200", "", t.at[i, "workload"], int(t.at[i, "batch_size"]), "none",
                      float(t.at[i, f"{TOK}_b"])) for i in t.index]
    fitted = t["workload"] == "offline"
    p = ResidualPredictor(cells, {str(i): float(t.at[i, f"{TOK}_a"]) for i in t.index[fitted]})
    held = t.index[~fitted]
    inside = [p.predict(str(i)).low <= t.at[i, f"{TOK}_a"] <= p.predict(str(i)).high for i in held]
    assert cov.at["output tok/s", "coverage_pct"] == pytest.approx(100 * np.mean(inside))
    errors = [abs(p.predict(str(i)).value / t.at[i, f"{TOK}_a"] - 1) for i in held]
    assert cov.at["output tok/s", "median_abs_error_pct"] == pytest.approx(100 * np.median(errors))
    raw = t.loc[held, f"change_{TOK}_pct"].abs().median()
    assert cov.at["output tok/s", "raw_median_abs_error_pct"] == pytest.approx(raw)
    # the held-out series is corrected by the fitted one's (small) error only: its 20% shift stays
    assert cov.at["output tok/s", "median_abs_error_pct"] > 10
    assert interval_coverage(t[fitted], selection).empty and interval_coverage(t[~fitted], selection).empty
