"""``compare`` carries prefill's share of the energy in steps (issue 30, item 4): two real simulated
sweeps that differ in GPU (the simulator's roofline splits a step differently on an H100 and an
H200) show each side's share from its runs rows and the change in percentage points (B − A) in
compare.csv, compare.md and compare.html; where one side's store predates the column its side is
missing, and where neither has it the report shows no such column."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from orchestrator.store.schema import PREFILL_ENERGY_SHARE
from tests.conftest import run_orchestrator
from tests.integration.test_report import report_cmd, section, tables
from tests.integration.test_report_full_grid_html import page_data
from tests.integration.test_report_request_energy import _strip_attribution

SHARE_COLUMNS = [f"{PREFILL_ENERGY_SHARE}_a", f"{PREFILL_ENERGY_SHARE}_b", f"change_{PREFILL_ENERGY_SHARE}_pts"]
NAME = "prefill share of energy"


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[Path, Path]:
    """Two simulated sweeps, offline at batch sizes 1 and 16: A on an H100, B on an H200."""
    root = tmp_path_factory.mktemp("compare_share")
    for gpu in ("h100", "h200"):
        run_orchestrator(["-m", "engine=simulated", "model=llama2_7b", f"gpu={gpu}", "workload=offline",
                          "batch_size=1,16", "workload.num_batches=2", f"name=share_{gpu}", f"store.dir={root / gpu}",
                          "dispatch.num_cpus=2", "dispatch.progress=false"])
    return root / "h100", root / "h200"


def _compare(a: Path, b: Path, out: Path) -> tuple[pd.DataFrame, str, dict]:
    proc = report_cmd("compare", a, b, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return pd.read_csv(out / "compare.csv"), (out / "compare.md").read_text(), page_data(out / "compare.html")


def _shares(store: Path) -> pd.Series:
    """cell_id -> the runs row's prefill share, read with pyarrow only."""
    return pq.read_table(store / "runs").to_pandas().set_index("cell_id")[PREFILL_ENERGY_SHARE]


def _bare(store: Path) -> Path:
    """A copy of ``store`` as written before the steps table: no steps, no attribution columns."""
    bare = store.parent / f"{store.name}_bare"
    if not bare.exists():
        _strip_attribution(store, bare)
    return bare


def _offline_rows(text: str) -> dict[str, dict]:
    """batch size -> the row of compare.md's offline table."""
    return {r["batch_size"]: r for r in tables(section(text, "## offline"))[0]}


def test_compare_shows_each_sides_share_and_the_change_in_points(stores, tmp_path):
    a, b = stores
    csv, text, data = _compare(a, b, tmp_path)
    share_a, share_b = _shares(a), _shares(b)
    assert list(csv["gpu_a"].unique()) == ["h100"] and list(csv["gpu_b"].unique()) == ["h200"] and len(csv) == 2
    rows = _offline_rows(text)
    for r in csv.itertuples(index=False):
        sa, sb = share_a[r.cell_id_a], share_b[r.cell_id_b]
        assert 0 < sa < 1 and 0 < sb < 1 and sa != pytest.approx(sb)  # the roofline's split depends on the GPU
        assert r.prefill_energy_share_a == pytest.approx(sa, rel=1e-12)
        assert r.prefill_energy_share_b == pytest.approx(sb, rel=1e-12)
        assert r.change_prefill_energy_share_pts == pytest.approx((sb - sa) * 100, rel=1e-9)
        shown = rows[str(r.batch_size)]
        assert shown[f"{NAME} share_h100"] == f"{sa * 100:.1f}%" and shown[f"{NAME} share_h200"] == f"{sb * 100:.1f}%"
        assert shown["Δ pts"] == f"{(sb - sa) * 100:+.1f} pts"
    assert "Prefill share of energy: prefill's share of the net energy" in text
    assert f"{NAME}: share_h200 vs share_h100 median " in section(text, "## offline")
    assert set(SHARE_COLUMNS) <= set(data["table"])
    assert data["table"][f"change_{PREFILL_ENERGY_SHARE}_pts"] == pytest.approx(
        list(csv[f"change_{PREFILL_ENERGY_SHARE}_pts"]), rel=1e-3)


def test_a_side_without_the_share_is_missing_and_without_either_no_column_shows(stores, tmp_path):
    a, b = stores
    csv, text, data = _compare(_bare(a), b, tmp_path / "one")  # only B has it: shown, A's side missing
    assert csv[f"{PREFILL_ENERGY_SHARE}_a"].isna().all() and csv[f"{PREFILL_ENERGY_SHARE}_b"].notna().all()
    assert csv[f"change_{PREFILL_ENERGY_SHARE}_pts"].isna().all()
    for shown in _offline_rows(text).values():
        assert shown[f"{NAME} share_h100"] == "—" and shown[f"{NAME} share_h200"].endswith("%") and shown["Δ pts"] == "—"
    assert f"{NAME}: not available on both sides." in text and set(SHARE_COLUMNS) <= set(data["table"])

    csv, text, data = _compare(_bare(a), _bare(b), tmp_path / "none")  # neither: NaN in the CSV, no column
    assert csv[SHARE_COLUMNS].isna().all().all()
    assert "prefill share" not in text.lower() and not any("prefill" in c for c in data["table"])
    header = next(line for line in section(text, "## offline").splitlines() if line.startswith("| "))
    assert header.endswith("| J/output token net share_h200 | Δ |")  # the table as before the share
