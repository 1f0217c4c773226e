"""``active.selection``: new engine paths' corners first, then the widest intervals; cells that
share an engine start come together; measured cells are never picked again; a round never
exceeds its size; a seed fixes the choice."""
from __future__ import annotations

import numpy as np

from orchestrator.active.predictor import GridCell, ResidualPredictor
from orchestrator.active.selection import corners, next_round


def grid():
    cells, units = [], {}
    for base in ("m/none/h200", "m/awq/h200"):
        for bs in (1, 4, 16, 64):
            key = f"{base}/{bs}"
            cells.append(GridCell(key=key, base=base, variant="", workload="offline", batch_size=bs,
                                  quantization=base.split("/")[1], simulated=100.0))
            units[key] = f"{base}|offline"
    return cells, units


def test_corners_are_each_series_ends():
    cells, _ = grid()
    assert corners(cells) == {"m/none/h200/1", "m/none/h200/64", "m/awq/h200/1", "m/awq/h200/64"}


def test_new_paths_corners_come_first_then_their_engine_mates():
    cells, units = grid()
    p = ResidualPredictor(cells, {"m/none/h200/1": 100.0})
    r = next_round(cells, units, [p], 1, np.random.default_rng(0))
    assert r.keys[0] in {"m/awq/h200/1", "m/awq/h200/64"}  # the path with nothing measured, at a corner
    r3 = next_round(cells, units, [p], 3, np.random.default_rng(0))
    assert len(r3.keys) == 3 and len(set(r3.keys)) == 3
    assert all(units[k] == "m/awq/h200|offline" for k in r3.keys)  # one engine start pays for the round


def test_measured_cells_are_never_picked_and_the_budget_holds():
    cells, units = grid()
    measured = {c.key: 100.0 for c in cells[:5]}
    p = ResidualPredictor(cells, measured)
    r = next_round(cells, units, [p], 10, np.random.default_rng(1))
    assert set(r.keys) == {c.key for c in cells[5:]}
    assert next_round(cells, units, [p], 0, np.random.default_rng(1)).keys == []
    everything = ResidualPredictor(cells, {c.key: 100.0 for c in cells})
    assert next_round(cells, units, [everything], 4, np.random.default_rng(1)).keys == []


def test_a_seed_fixes_the_choice():
    cells, units = grid()
    p = ResidualPredictor(cells, {})
    picks = [next_round(cells, units, [p], 3, np.random.default_rng(s)).keys for s in (5, 5, 6, 7, 8)]
    assert picks[0] == picks[1]
    assert len({tuple(x) for x in picks}) > 1  # ties broken by the seed
