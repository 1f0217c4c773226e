"""Power-law fits: recovery of C and α from noisy synthetic data, and where the law breaks."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.analysis.scaling import fit_power_law, fit_with_breakdown

BS = np.array([1, 2, 4, 8, 16, 32, 64], dtype=float)


def test_exact_power_law_is_recovered_exactly():
    fit = fit_power_law(BS, 14.16 / BS**0.78)
    assert fit.c == pytest.approx(14.16) and fit.alpha == pytest.approx(0.78) and fit.r2 == pytest.approx(1.0)
    assert (fit.n_points, fit.bs_min, fit.bs_max) == (7, 1, 64)


@pytest.mark.parametrize("seed", range(5))
def test_fit_recovers_alpha_and_c_from_noisy_data(seed):
    rng = np.random.default_rng(seed)
    bs = np.repeat(BS, 3)  # three repeats per batch size
    y = 14.16 / bs**0.78 * rng.lognormal(0.0, 0.05, bs.size)  # 5% multiplicative noise
    fit = fit_power_law(bs, y)
    assert fit.alpha == pytest.approx(0.78, abs=0.03)
    assert fit.c == pytest.approx(14.16, rel=0.06)
    assert fit.r2 > 0.98
    assert fit.predict([1])[0] == pytest.approx(fit.c)


def test_throughput_exponent_is_positive():
    fit = fit_power_law(BS, 18.09 * BS**0.97)
    assert fit.exponent == pytest.approx(0.97) and fit.alpha == pytest.approx(-0.97)


def test_breakdown_found_where_the_data_flattens():
    y = 14.16 / BS**0.8
    y[-1] *= 1.4  # BS 64 flattens: 40% above the law
    res = fit_with_breakdown(BS, y)
    assert res.holds.bs_max == 32 and res.holds.alpha == pytest.approx(0.8)
    assert res.breaks_at_bs == 64 and res.deviation_pct == pytest.approx(40.0)
    assert res.full.alpha < 0.8 and res.full.r2 < 1.0


def test_no_breakdown_when_the_law_holds_everywhere():
    rng = np.random.default_rng(1)
    res = fit_with_breakdown(BS, 100 * BS**0.9 * rng.lognormal(0, 0.01, BS.size))
    assert res.breaks_at_bs is None and res.deviation_pct is None and res.holds.n_points == 7


def test_no_holding_range_when_nothing_follows_a_law():
    y = np.array([1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 1.0])
    res = fit_with_breakdown(BS, y)
    assert res.holds is None and res.breaks_at_bs is None


def test_unordered_input_is_sorted_first():
    order = np.array([3, 0, 6, 1, 5, 2, 4])
    res = fit_with_breakdown(BS[order], (5.0 / BS**0.5)[order])
    assert res.full.alpha == pytest.approx(0.5) and res.holds.bs_min == 1


@pytest.mark.parametrize("bs,y", [([1], [1.0]), ([4, 4], [1.0, 2.0]), ([1, 2], [0.0, 1.0]), ([0, 2], [1.0, 1.0])])
def test_degenerate_inputs_raise(bs, y):
    with pytest.raises(ValueError):
        fit_power_law(bs, y)


@pytest.mark.parametrize("seed", range(3))
def test_fit_is_least_squares_in_log_space_in_reproducible_arithmetic(seed):
    """The closed form equals numpy's least squares (to rounding) and, in libm and fsum, gives the
    same bits for the data in any order — the committed report's tables regenerate byte for byte."""
    rng = np.random.default_rng(seed)
    bs = np.repeat(BS, 3)
    y = 7.3 * bs**0.9 * rng.lognormal(0.0, 0.1, bs.size)
    fit = fit_power_law(bs, y)
    slope, intercept = np.polyfit(np.log(bs), np.log(y), 1)
    assert fit.exponent == pytest.approx(slope, rel=1e-12) and fit.c == pytest.approx(np.exp(intercept), rel=1e-12)
    order = rng.permutation(bs.size)
    assert fit_power_law(bs[order], y[order]) == fit
    assert fit.predict(np.array([[1.0, 4.0]])).shape == (1, 2)
