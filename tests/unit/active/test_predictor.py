"""``active.predictor``: the correction's levels (series interpolation in log2 batch size,
extrapolation, path, variant, quantization, grid; defaults and variants kept apart), the simulator
alone when nothing is measured, conformal intervals that cover on an exchangeable grid, and
variants' wide misses kept out of the default engines' intervals."""
from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator.active.predictor import GridCell, Level, ResidualPredictor


def cell(key, base="m/none/h200", variant="", workload="offline", bs=1, quant="none", sim=100.0) -> GridCell:
    return GridCell(key=key, base=base, variant=variant, workload=workload, batch_size=bs, quantization=quant,
                    simulated=sim)


def test_nothing_measured_is_the_simulator_with_the_prior_interval():
    p = ResidualPredictor([cell("a"), cell("b", bs=8)], {})
    pred = p.predict("b")
    assert pred.value == 100.0 and pred.level == Level.grid
    assert pred.low == pytest.approx(100 / 1.5) and pred.high == pytest.approx(150.0)
    assert set(p.predict_all()) == {"a", "b"}


def test_a_series_is_interpolated_in_log2_batch_size_and_held_beyond_its_ends():
    cells = [cell(f"b{bs}", bs=bs) for bs in (1, 2, 4, 8, 16, 64)]
    measured = {"b1": 100.0 * math.exp(0.1), "b16": 100.0 * math.exp(-0.3)}
    p = ResidualPredictor(cells, measured)
    assert p.predict("b4").value == pytest.approx(100 * math.exp(0.1 + (-0.4) * 2 / 4))
    assert p.predict("b4").level == Level.series
    assert p.predict("b64").value == pytest.approx(100 * math.exp(-0.3))  # beyond the range: the nearest
    assert p.predict("b64").level == Level.extrapolated
    assert set(p.predict_all()) == {"b2", "b4", "b8", "b64"}


def test_levels_path_variant_quantization_grid_and_defaults_apart_from_variants():
    cells = [
        cell("off1", workload="offline", bs=1), cell("chat1", workload="chat", bs=1),
        cell("eager_awq", base="m/awq/h200", variant="enforce_eager=true", quant="awq", workload="chat"),
        cell("eager_fp16", variant="enforce_eager=true", workload="chat"),
        cell("awq_off", base="m/awq/h200", quant="awq"),
        cell("fp8_off", base="m/fp8/h200", quant="fp8"),
        cell("fp8_other", base="n/fp8/h200", quant="fp8"),
    ]
    measured = {"off1": 110.0, "eager_awq": 25.0, "fp8_other": 90.0}
    p = ResidualPredictor(cells, measured)
    assert p.predict("chat1").level == Level.path and p.predict("chat1").value == pytest.approx(110.0)
    # eager on fp16 borrows eager's miss on awq, not the default path's
    assert p.predict("eager_fp16").level == Level.variant and p.predict("eager_fp16").value == pytest.approx(25.0)
    assert p.predict("fp8_off").level == Level.quantization and p.predict("fp8_off").value == pytest.approx(90.0)
    # the default awq path: nothing of its quantization among defaults; the grid's defaults only
    grid = p.predict("awq_off")
    assert grid.level == Level.grid and grid.value == pytest.approx(100 * math.exp(np.mean([math.log(1.1), math.log(0.9)])))


def test_intervals_cover_on_an_exchangeable_grid():
    """Residuals drawn i.i.d. (sd 0.1) over 120 cells of one series: the 90% intervals of the
    unmeasured cells, fitted on 30 measured ones, cover about 90% of them."""
    rng = np.random.default_rng(7)
    cells = [cell(f"c{i}", workload=f"w{i}") for i in range(120)]
    truth = {c.key: 100.0 * math.exp(rng.normal(0.0, 0.1)) for c in cells}
    measured = {k: truth[k] for k in list(truth)[:30]}
    p = ResidualPredictor(cells, measured)
    preds = p.predict_all()
    inside = np.mean([v.low <= truth[k] <= v.high for k, v in preds.items()])
    assert 0.8 <= inside <= 0.99
    assert all(v.level == Level.path for v in preds.values())
    # the half-width is the 28th smallest of the 30 leave-one-out errors (⌈31 x 0.9⌉)
    res = {k: math.log(v / 100.0) for k, v in measured.items()}
    loo = sorted(abs(r - np.mean([q for j, q in res.items() if j != k])) for k, r in res.items())
    assert math.log(preds["c50"].high / preds["c50"].value) == pytest.approx(loo[27])


def test_variants_misses_do_not_widen_the_default_engines_intervals():
    """Ten default paths the simulator hits within about 2% and ten eager ones it misses by 2-4x,
    each measured in one workload and predicted in another: the default cells' intervals stay
    narrow, the eager ones' are wide."""
    rng = np.random.default_rng(3)
    cells, truth = [], {}
    for i in range(10):
        for variant, miss in (("", lambda: rng.normal(0.0, 0.02)), ("enforce_eager=true", lambda: rng.uniform(-1.4, -0.7))):
            for wl in ("offline", "chat"):
                c = cell(f"{i}{variant}{wl}", base=f"m{i}/none/h200", variant=variant, workload=wl)
                cells.append(c)
                truth[c.key] = 100.0 * math.exp(miss())
    p = ResidualPredictor(cells, {k: v for k, v in truth.items() if k.endswith("offline")})
    preds = p.predict_all()
    default = [v.relative_half_width for k, v in preds.items() if "eager" not in k]
    eager = [v.relative_half_width for k, v in preds.items() if "eager" in k]
    assert all(v.level == Level.path for v in preds.values())
    assert max(default) < 0.1 and min(eager) > 2 * max(default)


def test_extrapolated_intervals_widen_with_the_square_root_of_the_distance():
    """Twelve series measured at batch 1 and 2 only: the extrapolated cells of another series
    measured at batch 1 get the same calibrated width times sqrt(log2 distance) — batch 16 (four
    doublings away) twice as wide as batch 2 (one), batch 256 sqrt(8) times — and the
    calibration's errors are divided by the same factor (here each leave-one-out reach is one
    doubling, so the width is the plain 90% quantile of those errors)."""
    rng = np.random.default_rng(3)
    cells, measured = [], {}
    for s in range(12):
        for bs in (1, 2):
            cells.append(cell(f"s{s}b{bs}", workload=f"w{s}", bs=bs))
            measured[f"s{s}b{bs}"] = 100.0 * math.exp(rng.normal(0.0, 0.05))
    cells += [cell(f"x{bs}", workload="wx", bs=bs) for bs in (1, 2, 16, 256)]
    measured["x1"] = 104.0
    p = ResidualPredictor(cells, measured)
    half = {bs: math.log(p.predict(f"x{bs}").high / p.predict(f"x{bs}").value) for bs in (2, 16, 256)}
    assert all(p.predict(f"x{bs}").level == Level.extrapolated for bs in (2, 16, 256))
    assert half[16] == pytest.approx(2 * half[2]) and half[256] == pytest.approx(math.sqrt(8) * half[2])
    errors = sorted(abs(math.log(measured[f"s{s}b{a}"] / measured[f"s{s}b{b}"])) for s in range(12)
                    for a, b in ((1, 2), (2, 1)))
    assert half[2] == pytest.approx(errors[math.ceil(25 * 0.9) - 1])
