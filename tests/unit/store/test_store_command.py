"""``python -m orchestrator.store``: one line per cell, ``--failed`` without pre-launch statuses."""
from __future__ import annotations

import dataclasses

from orchestrator.core.cell import Cell
from orchestrator.driver.grid import cells, config_of
from orchestrator.errors import Status
from orchestrator.store.__main__ import main
from orchestrator.store.cell_tables import status_tables
from orchestrator.store.sweep_store import Store


def _cell(batch: int) -> Cell:
    [cell] = cells([config_of(["model=tiny", "gpu=t4", "workload=offline", "engine=simulated",
                               f"batch_size={batch}"])], {})
    return dataclasses.replace(cell, cell_id=f"cell{batch}")


def test_failed_lists_the_cells_that_ran_and_did_not_end_ok(tmp_path, capsys):
    store = Store.open(str(tmp_path))
    rows = [(1, Status.ok, ""), (2, Status.oom, "CUDA out of memory\ntraceback"), (4, Status.infeasible, "needs 99 GiB")]
    for batch, status, error in rows:
        store.write_cell(f"cell{batch}", status_tables(_cell(batch), "t", status, error))
    assert main([str(tmp_path), "--failed"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("oom") and out[0].endswith("cell2  CUDA out of memory")
    assert "tiny/none/t4/bs2/offline/r0" in out[0]
    assert main([str(tmp_path)]) == 0
    every = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in every] == ["infeasible", "ok", "oom"]
    assert every[1].endswith("cell1")  # an ok cell has no reason
    assert main([str(tmp_path), "--status", "infeasible"]) == 0
    assert "needs 99 GiB" in capsys.readouterr().out


def test_a_folder_without_a_sweep_is_one_line_and_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no sweep here" in err[0]
