"""Help that helps (issue 27): ``--help`` says what the command does, its groups and choices,
examples and where results go (Hydra's own help stays at ``--hydra-help``); a sweep ends with the
exact report command; the report names both report.md and report.html."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT, run_orchestrator


def test_help_says_what_the_command_does_with_groups_examples_and_results():
    out = run_orchestrator(["--help"], timeout=120).stdout
    assert out.startswith("python -m orchestrator [overrides] — measure LLM inference over a grid")
    assert "engine: auto, endpoint, hf, simulated, vllm" in out and "sweep: batch_scan, full," in out
    examples = [line for line in out.splitlines() if line.startswith("  python -m orchestrator ")]
    assert len(examples) == 5 and any("--plan" in e for e in examples)
    assert "python -m orchestrator.report outputs/<name>" in out and "--hydra-help" in out
    assert "n_layers" not in out  # no dump of the composed config
    assert "== Flags ==" in run_orchestrator(["--hydra-help"], timeout=120).stdout


def test_a_sweep_ends_with_the_report_command_and_the_report_names_both_files(tmp_path):
    store = tmp_path / "s"
    run = run_orchestrator(["model=tiny", "gpu=t4", "workload=offline", "engine=simulated", "batch_size=1",
                            "dispatch.num_cpus=1", f"store.dir={store}"], timeout=180)
    assert run.stdout.splitlines()[-1] == f"report: python -m orchestrator.report {store}"
    rep = subprocess.run([sys.executable, "-m", "orchestrator.report", str(store)], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert rep.returncode == 0, rep.stderr[-2000:]
    assert rep.stdout.strip() == f"report written to {store}/report/report.md and {store}/report/report.html"
    assert (store / "report" / "report.html").is_file()
    assert "report.html" in subprocess.run([sys.executable, "-m", "orchestrator.report", "--help"],
                                           capture_output=True, text=True, cwd=ROOT).stdout
