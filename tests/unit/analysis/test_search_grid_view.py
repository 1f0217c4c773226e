"""The search report's comparison with the grid, on the committed H200 search and its grid
(experiments/benchmarks/energy_slo_search/h200/store: real cells, no Ray, no GPU)."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.analysis.search import read_search
from orchestrator.report.search import _gap, search_section
from orchestrator.search.outcome import read_outcomes
from orchestrator.store.sweep_store import Store, load

H200 = Path(__file__).resolve().parents[3] / "experiments" / "benchmarks" / "energy_slo_search" / "h200" / "store"


def test_the_h200_pick_against_its_grid():
    """The search picked max-num-seqs 64 (confirmed over 2 repeats); the grid's optimum is 32.
    The gap is given for the pick's repeat-0 cell and for its mean, and the two cells' cards —
    read from the store, not assumed — are named because they differ."""
    view = read_search(str(H200))
    g = view.grid
    runs = load(str(H200)).runs.to_pandas().set_index("cell_id")
    j = runs["energy_per_1k_output_tokens_j"] / 1000
    pick = view.record.pick
    assert view.pick_params == "batch_size=64" and g.optimum_params == "batch_size=32"
    assert g.optimum_value == pytest.approx(j[(runs.batch_size == 32)].iloc[0])
    assert g.gap == pytest.approx(j[pick.cell_ids[0]] / g.optimum_value - 1)
    assert g.pick_mean_gap == pytest.approx(j[list(pick.cell_ids)].mean() / g.optimum_value - 1)
    assert 0 < g.pick_mean_gap < g.gap
    best_id = runs.index[runs.batch_size == 32][0]
    assert g.gpus == (runs.loc[best_id, "gpu_uuid"], runs.loc[pick.cell_ids[0], "gpu_uuid"]) and g.gpus[0] != g.gpus[1]
    text = "\n".join(search_section(view))
    assert f"(the mean of its 2 repeats: {100 * g.pick_mean_gap:.2f}% above)" in text
    assert f"different GPUs ({g.gpus[0][:12]}… and {g.gpus[1][:12]}…)" in text


def test_an_outcome_carries_the_card_that_measured_it():
    outcomes = read_outcomes(Store.open(str(H200)), load(str(H200)).runs.column("cell_id").to_pylist())
    assert all(o.gpu_uuid.startswith("GPU-") for o in outcomes.values())


def test_the_gap_is_worded_by_its_sign():
    """A confirmation repeat is not a grid cell and may measure below the grid's optimum."""
    assert (_gap(0.0845), _gap(-0.012), _gap(0.0)) == ("8.45% above", "1.20% below", "at")
