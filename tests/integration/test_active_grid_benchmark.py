"""The committed GPU run of an active sweep (experiments/benchmarks/active_grid/) regenerates from
its committed store: ``analyze.py`` prints exactly the committed ``analysis.md``; its rounds are
the record's and never exceed the budget; every measured cell of the record is a runs row."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from orchestrator.store.sweep_store import load

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "experiments" / "benchmarks" / "active_grid"


def test_analysis_regenerates_from_the_committed_store():
    store = BENCH / "h100" / "store"
    out = subprocess.run([sys.executable, str(BENCH / "analyze.py"), str(store)], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300).stdout
    assert out == (BENCH / "h100" / "analysis.md").read_text()
    record = json.loads((store / "active_sweep.json").read_text())
    measured = sum(len(r["cells"]) for r in record["rounds"])
    assert measured <= record["budget_cells"]
    rows = {r["cell_id"] for r in load(str(store)).runs.to_pylist()}
    assert {c["cell_id"] for c in record["cells"] if c["source"] == "measured"} <= rows
    assert len(re.findall(r"^\| \d+ \| ", out, re.M)) == len(record["rounds"])
    assert re.search(r"\*\*GPU duty \d+\.\d%\*\*", out)


def test_eta_replay_regenerates_and_the_first_start_no_longer_doubles_the_eta():
    store = BENCH / "h100" / "store"
    out = subprocess.run([sys.executable, str(BENCH / "eta_replay.py"), str(store)], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300).stdout
    assert out == (BENCH / "h100" / "eta_replay.md").read_text()
    rows = [[float(x) for x in ln.strip("|").split("|")[1:]] for ln in out.splitlines() if re.match(r"^\| \d", ln)]
    assert len(rows) == 5
    for now, logged, left in rows:  # within 20% of the time left, where the run's own ETA was up to twice it
        assert abs(now - left) <= 0.2 * left + 0.1 and now <= logged
