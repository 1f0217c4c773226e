"""``analysis.gpu_time``: runs rows grouped into engine starts (the columns one start's rows share),
oldest first, with the start's phases from ``engine_extra``; rows a worker did not measure left
out; the duty of each sweep, NaN cells (pandas) read as missing."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from orchestrator.analysis.gpu_time import duty, engine_starts
from orchestrator.store.gpu_duty import gpu_duty
from orchestrator.store.start_phases import StartPhases

PHASES = StartPhases(launch_s=33.8, frontend_s=18.3, core_boot_s=15.5, compile_s=15.4, compile_cached=False,
                     total_s=65.1)


def row(cell, start_s, started, window=60.0, wall=75.0, status="ok", extra=None, sweep="s"):
    return {"cell_id": cell, "sweep": sweep, "status": status, "gpu": "h100", "host": "n1", "gpu_uuid": "GPU-1",
            "engine": "vllm", "engine_start_s": start_s, "engine_shared_cells": 2, "window_s": window,
            "cell_wall_s": wall, "started_unix_s": started, "model": "m", "quantization": "none",
            "workload": "chat", "batch_size": 8,
            "engine_extra": json.dumps({"start_phases": extra.as_extra()}) if extra else None}


def test_rows_group_into_starts_with_their_phases():
    runs = pd.DataFrame([
        row("b", 70.1, 300.0, window=math.nan, wall=12.0, status="timeout"),
        row("a1", 65.2, 100.0, extra=PHASES), row("a2", 65.2, 180.0, extra=PHASES),
        {**row("never", math.nan, 400.0), "cell_wall_s": math.nan},  # a pre-launch row: not measured here
    ])
    starts = engine_starts(runs)
    assert list(starts["cells"]) == [2, 1] and list(starts["engine_start_s"]) == [65.2, 70.1]
    first = starts.iloc[0]
    assert first["window_s"] == 120.0 and first["cell_wall_s"] == 150.0
    assert (first["frontend_s"], first["core_boot_s"], first["compile_s"], first["total_s"]) == (18.3, 15.5, 15.4, 65.1)
    assert first["compile_cached"] is False and pd.isna(starts.iloc[1]["frontend_s"])
    assert first["from_spare"] is None  # a start from before spares (or not a server) says nothing
    assert starts.iloc[1]["window_s"] == 0.0  # a failed cell's window is no result
    assert engine_starts(pd.DataFrame()).empty


def test_the_report_marks_the_starts_a_spare_served():
    """The section's table shows ``(spare)`` beside the frontend seconds of a launch a spare
    process served, and its summary counts them."""
    from dataclasses import replace

    from orchestrator.report.gpu_time import section

    runs = pd.DataFrame([row("a", 65.2, 100.0, extra=PHASES),
                         row("b", 44.0, 300.0, extra=replace(PHASES, frontend_s=1.2, total_s=44.0, from_spare=True))])
    text = "\n".join(section(engine_starts(runs), duty(runs)))
    assert "1 launched in a spare process" in text and "(0 of 2 served by the compile cache;" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| m/none/chat/bs8")]
    assert "| 18.30 |" in rows[0] and "| 1.20 (spare) |" in rows[1], rows


def test_duty_per_sweep_reads_nan_as_missing():
    runs = pd.DataFrame([row("a1", 65.2, 100.0), row("a2", 65.2, 180.0),
                         row("b", 70.1, 300.0, window=math.nan, wall=12.0, status="timeout"),
                         row("c", 50.0, 400.0, sweep="other")])
    d = duty(runs)
    assert set(d) == {"s", "other"}
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
             for r in runs.to_dict("records")]
    assert d["s"] == gpu_duty(clean, "s")
    assert d["s"]["overall"]["duty"] == pytest.approx(120.0 / (65.2 + 70.1 + 75 + 75 + 12))
    assert duty(pd.DataFrame()) == {}


def test_each_gpus_share_of_a_cells_energy():
    """``analysis.energy.gpu_shares``: cells whose energy sums several GPUs, each GPU's share, the
    largest, the GPUs whose own check failed; one-GPU cells and cells without per-GPU energy out."""
    from orchestrator.analysis.energy import gpu_shares
    from orchestrator.store.schema import ENERGY_J

    a, b = "GPU-aaaaaaaa-0000", "GPU-bbbbbbbb-0000"
    base = {"workload": "chat", "gpu": "h100", "series": "m/none/h100 [tensor_parallel_size=2]", "batch_size": 8,
            "repeat": 0}
    ok = pd.DataFrame([
        {**base, "cell_id": "two", "energy_per_gpu_j": json.dumps({a: 300.0, b: 100.0}),
         "energy_mismatch_gpus": json.dumps([b])},
        {**base, "cell_id": "one", "energy_per_gpu_j": json.dumps({a: 50.0}), "energy_mismatch_gpus": None},
        {**base, "cell_id": "none", "energy_per_gpu_j": None, "energy_mismatch_gpus": None},
    ])
    shares = gpu_shares(ok)
    assert list(shares["cell_id"]) == ["two"]
    row = shares.iloc[0]
    assert row["gpus"] == 2 and row[ENERGY_J] == 400.0 and row["max_share_pct"] == 75.0
    assert row["shares"] == "GPU-aaaaaaaa…: 75.0%, GPU-bbbbbbbb…: 25.0%" and row["mismatched_gpus"] == b
    assert gpu_shares(ok.drop(columns=["energy_per_gpu_j"])).empty
