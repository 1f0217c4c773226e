"""The committed GPU run of warm starts served by spares (experiments/benchmarks/warm_start/)
regenerates from its committed store: ``analyze.py`` prints exactly the committed ``analysis.md``,
and the starts it calls spare-served are the ones whose vLLM log a spare wrote (its pid is the
server's)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "experiments" / "benchmarks" / "warm_start"


# each GPU type's run, and the store of other runs on that type it compares against
RUNS = {"h200": ROOT / "experiments" / "h200_study" / "store",
        "h100": ROOT / "experiments" / "benchmarks" / "active_grid" / "h100" / "store"}


@pytest.mark.parametrize("gpu", sorted(RUNS))
def test_analysis_regenerates_from_the_committed_store(gpu: str):
    out = subprocess.run([sys.executable, str(BENCH / "analyze.py"), str(BENCH / gpu / "store"), str(RUNS[gpu])],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         timeout=300).stdout
    assert out == (BENCH / gpu / "analysis.md").read_text()
    assert re.search(r"\*\*GPU duty \d+\.\d%\*\*", out)
    spare_rows = re.findall(r"^\| llama2_7b/.*\(spare\)", out, re.M)
    logs = BENCH / gpu / "start_logs"
    claimed = {m.group(1) for f in logs.glob("vllm-spare-*.log")
               for m in re.finditer(r"^spare (\d+): claimed by", f.read_text(), re.M)}
    served = {re.match(r"\(APIServer pid=(\d+)\)", f.read_text()).group(1) for f in logs.glob("vllm-serve-*.log")}
    assert len(spare_rows) == len(claimed) == len(claimed & served) > 0
