"""scripts/cell_distributions.py on committed H200 cells: the plotted requests are the cell's ok
measured ones (their TPOT median equals the runs row's), and an unknown cell is one error line."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "scripts"))

import cell_distributions as cd  # noqa: E402

STUDY = str(ROOT / "experiments" / "h200_study" / "store")
GRAPHS = str(ROOT / "experiments" / "benchmarks" / "cudagraph_capture_h200" / "store")


def test_requests_of_a_cell_match_its_runs_row():
    req, run = cd.cell_requests(GRAPHS, "d5d307088c233a68")
    assert len(req) == run["n_requests_ok"] == 1171 and set(req["cell_id"]) == {"d5d307088c233a68"}
    assert req["tpot_ms"].median() == pytest.approx(run["tpot_p50_ms"])


def test_a_cell_without_energy_is_labelled_not_crashed():
    run = {"mean_power_w": None, "energy_per_1k_output_tokens_j": float("nan")}
    assert cd._legend("x", run) == "x (— W, — mJ/token)"


def test_a_plot_of_cells_from_two_stores(tmp_path, capsys):
    out = tmp_path / "cdf.png"
    assert cd.main(["--cell", STUDY, "e2d9f539843666bf", "32", "--cell", GRAPHS, "d5d307088c233a68", "32/512",
                    "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "32: 1171 ok measured requests, TPOT p50 8.04 ms" in printed and "32/512: 1171" in printed


def test_an_unknown_cell():
    with pytest.raises(SystemExit, match="error: .*no complete cell 0000"):
        cd.cell_requests(STUDY, "0000")
