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

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "experiments" / "benchmarks" / "warm_start"


def test_analysis_regenerates_from_the_committed_store():
    out = subprocess.run([sys.executable, str(BENCH / "analyze.py"), str(BENCH / "h200" / "store"),
                          str(ROOT / "experiments" / "h200_study" / "store")], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300).stdout
    assert out == (BENCH / "h200" / "analysis.md").read_text()
    assert re.search(r"\*\*GPU duty \d+\.\d%\*\*", out)
    spare_rows = re.findall(r"^\| llama2_7b/.*\(spare\)", out, re.M)
    logs = BENCH / "h200" / "start_logs"
    claimed = {m.group(1) for f in logs.glob("vllm-spare-*.log")
               for m in re.finditer(r"^spare (\d+): claimed by", f.read_text(), re.M)}
    served = {re.match(r"\(APIServer pid=(\d+)\)", f.read_text()).group(1) for f in logs.glob("vllm-serve-*.log")}
    assert len(spare_rows) == len(claimed) == len(claimed & served) > 0
