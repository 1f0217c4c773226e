"""Repeats (Student-t 95% intervals, CV), compare significance, baselines and simulated rows on
hand-made runs rows.

Rows go through the real store schema and ``dataset.prepare_runs`` / ``batch_points`` (helpers
of ``test_analysis_tables``); every expected number is worked out by hand here.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from orchestrator.analysis.compare import compare_points
from orchestrator.analysis.cost import CostAssumptions, cost_table
from orchestrator.analysis.dataset import baseline_sizes
from orchestrator.analysis.energy import energy_table
from orchestrator.analysis.recommend import Slo, recommendations
from orchestrator.analysis.repeats import REPEAT_METRICS, STATS, repeatability_table, t_quantile
from orchestrator.analysis.tables import detail_table, summary_table
from tests.unit.analysis.test_analysis_tables import frame, points_of, row

T_975_2 = 4.302652729911275  # Student t, 97.5th percentile, 2 degrees of freedom (tables)
T_975_1 = 12.706204736174705  # 1 degree of freedom


def repeats(bs, tok_s_values, **extra):
    """One runs row per repeat with the given output tok/s (J/request 10 J, 128 tokens/request)."""
    return [row(bs, t, 10.0 + i, repeat=i, **extra) for i, t in enumerate(tok_s_values)]


def test_t_quantiles_are_the_textbook_values():
    from scipy import stats

    n = np.arange(2, 40)
    assert np.allclose(t_quantile(n), stats.t.ppf(0.975, n - 1), rtol=1e-12)
    assert t_quantile([2, 3])[0] == pytest.approx(T_975_1)
    assert t_quantile([2, 3])[1] == pytest.approx(T_975_2)
    assert np.isnan(t_quantile([1])[0]) and np.isnan(t_quantile([0])[0])


def test_three_repeats_give_the_student_t_interval_and_cv():
    p = points_of(repeats(4, [100.0, 102.0, 104.0])).iloc[0]
    half = T_975_2 * 2.0 / math.sqrt(3)  # s = 2 tok/s
    assert p["n_repeats"] == 3 and p["output_throughput_tok_s"] == pytest.approx(102.0)
    assert p["output_throughput_tok_s_ci95_half_width"] == pytest.approx(half)
    assert p["output_throughput_tok_s_ci95_low"] == pytest.approx(102.0 - half)
    assert p["output_throughput_tok_s_ci95_high"] == pytest.approx(102.0 + half)
    assert p["output_throughput_tok_s_cv"] == pytest.approx(2.0 / 102.0)
    # J per output token from J per 1k tokens: (10, 11, 12) J/request / 128 tokens
    j_tok = np.array([10.0, 11.0, 12.0]) / 128
    assert p["energy_per_output_token_j"] == pytest.approx(j_tok.mean())
    assert p["energy_per_output_token_j_cv"] == pytest.approx(j_tok.std(ddof=1) / j_tok.mean())
    assert p["net_energy_per_output_token_j_ci95_half_width"] == pytest.approx(
        T_975_2 * (j_tok - 2 / 128).std(ddof=1) / math.sqrt(3))


def test_one_repeat_has_no_interval_never_zero():
    p = points_of([row(4, 100.0, 10.0)]).iloc[0]
    assert p["n_repeats"] == 1
    for m in REPEAT_METRICS:
        for s in STATS:
            assert np.isnan(p[f"{m}_{s}"]), (m, s)


def test_repeatability_table_names_the_mean_and_keeps_units():
    t = repeatability_table(points_of(repeats(4, [100.0, 110.0]) + [row(8, 200.0, 5.0)]))
    assert list(t["n_repeats"]) == [2, 1]
    assert t.loc[0, "output_throughput_tok_s_mean"] == 105.0
    assert t.loc[0, "output_throughput_tok_s_ci95_half_width"] == pytest.approx(T_975_1 * math.sqrt(50) / math.sqrt(2))
    assert {f"ttft_p50_ms_{s}" for s in STATS} <= set(t.columns)
    assert np.isnan(t.loc[1, "tpot_p50_ms_cv"])


def test_compare_marks_overlap_as_not_significant_and_one_repeat_as_unknown():
    a = points_of(repeats(4, [100.0, 102.0, 104.0]) + repeats(8, [200.0, 202.0, 204.0]) + [row(16, 300.0, 3.0)])
    b = points_of(repeats(4, [103.0, 105.0, 107.0]) + repeats(8, [300.0, 302.0, 304.0])
                  + repeats(16, [300.0, 310.0, 320.0]))
    t = compare_points(a, b).table.set_index("batch_size")
    sig = t["significant_output_throughput_tok_s"]
    assert sig.loc[4] is not pd.NA and not sig.loc[4]  # [97, 107] and [100, 110] overlap
    assert bool(sig.loc[8]) is True  # [197, 207] vs [297, 307]: apart
    assert pd.isna(sig.loc[16])  # A ran BS 16 once: unknown, not "significant"
    assert t.loc[8, "change_output_throughput_tok_s_pct"] == pytest.approx(100 / 202 * 100)


def test_simulated_rows_lose_energy_measurement_flags_not_others():
    rows = [row(1, 100.0, 10.0, energy_mismatch=True, short_window=True),  # measured (nvml): flags kept
            row(2, 100.0, 10.0, engine="simulated", energy_source="simulated", energy_mismatch=True,
                short_window=True, saturated=True, gpu="t4")]
    df = frame(rows).set_index("batch_size")
    assert df.loc[1, "flags"] == "W E" and df.loc[2, "flags"] == "S"
    assert not df.loc[2, "energy_mismatch"] and not df.loc[2, "short_window"]
    assert list(df["energy_available"]) == [True, True]
    assert list(df["energy_measured"]) == [True, False]


def test_modeled_energy_is_shown_costed_and_ranked_with_simulated_marked():
    sim = {"engine": "simulated", "energy_source": "simulated"}
    pts = points_of([row(b, 100.0 * b, 10.0 / b, **sim) for b in (1, 2, 4)])
    assert not pts["energy_measured"].any() and pts["simulated"].all()
    assert energy_table(pts)["energy_per_request_j"].notna().all()
    c = cost_table(pts, CostAssumptions())
    assert len(c) == 3 and c["simulated"].all()
    r = recommendations(pts, Slo(None, None)).set_index("scenario")
    assert r["simulated"].all() and r.loc["cost", "batch_size"] == 4
    assert "modeled" in r.loc["cost", "reason"]


def test_baseline_defaults_to_each_series_smallest_batch():
    pts = points_of([row(4, 400.0, 4.0), row(16, 1200.0, 2.0),
                     row(2, 100.0, 8.0, gpu="t4"), row(16, 300.0, 4.0, gpu="t4")])
    by_gpu = dict(zip(pts["gpu"] + "/" + pts["batch_size"].astype(str), baseline_sizes(pts)))
    assert by_gpu == {"h100/4": 4.0, "h100/16": 4.0, "t4/2": 2.0, "t4/16": 2.0}
    assert list(baseline_sizes(pts, 16)) == [16.0] * 4
    assert list(baseline_sizes(pts, 4).isna()) == list(pts["gpu"] == "t4")
    d = detail_table(pts).set_index(["gpu", "batch_size"])
    assert d.loc[("h100", 4), "change_output_throughput_tok_s_pct"] == 0.0
    assert d.loc[("h100", 16), "change_output_throughput_tok_s_pct"] == pytest.approx(200.0)
    assert d.loc[("t4", 16), "baseline_batch_size"] == 2
    e = energy_table(pts).set_index(["gpu", "batch_size"])
    assert e.loc[("h100", 4), "throughput_scaling_x"] == 1.0 and e.loc[("h100", 16), "throughput_scaling_x"] == 3.0
    s = summary_table(pts).set_index("gpu")
    assert s.loc["h100", "base_batch_size"] == 4 and s.loc["t4", "base_batch_size"] == 2
    c = cost_table(pts, CostAssumptions(), 4).set_index(["gpu", "batch_size"])
    assert c.loc[("h100", 16), "saving_pct"] == pytest.approx(50.0)
    assert np.isnan(c.loc[("t4", 16), "saving_pct"])  # t4 never ran BS 4: no saving, not 0
