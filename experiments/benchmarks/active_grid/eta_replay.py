"""The live ETA (``driver.eta.SweepEta``) replayed on the H100 check run of 2026-12-07: the 6
cells it had to run, priced from the rest of the store (what it held before the run:
``plan_view.measured_starts``), fed the run's stored rows in the order they ended; after each, the
ETA against the time the run really had left: to its fifth cell's end, plus the sixth cell's start
and wall at their priors (it was cancelled while draining, the session's GPU time spent). The
run's own ETA lines (read from its log, ``sweep.log`` beside the store) came from the code before
a host's first start stopped rescaling the other starts (this replay gives the same on that code).

    python experiments/benchmarks/active_grid/eta_replay.py experiments/benchmarks/active_grid/h100/store \
        > experiments/benchmarks/active_grid/h100/eta_replay.md
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from orchestrator.driver import grid
from orchestrator.driver.dispatch import make_units
from orchestrator.driver.eta import SweepEta
from orchestrator.driver.plan_view import measured_starts
from orchestrator.store.sweep_store import load

CELLS = [("awq", "chat_medium", 16), ("awq", "chat_high", 2), ("gptq", "chat_high", 1), ("gptq", "offline", 1),
         ("fp8", "chat_medium", 4), ("fp8", "chat_high", 1)]  # the order the run dispatched them


def main(store: str) -> int:
    configs = [grid.config_of(["engine=vllm", "model=llama2_7b", "gpu=h100", f"quantization={q}", f"workload={w}",
                               f"batch_size={b}"]) for q, w, b in CELLS]
    cells = grid.cells(configs, {})
    ids = {c.cell_id for c in cells}
    rows = load(store).runs.to_pylist()
    before = measured_starts([r for r in rows if r["cell_id"] not in ids])
    units = make_units(cells, "full", {"H100": True})
    def one_gpu(accelerator_type: str, on_gpu: bool) -> int:  # the run's one H100
        return 1

    eta = SweepEta(units, before, one_gpu)
    section = log_text(store)
    ran = {c.cell_id for c in cells if f"{c.label()}: ok" in section}  # a later run's rows are not its own
    done = sorted((r for r in rows if r["cell_id"] in ran), key=lambda r: r["finished_unix_s"])
    last = [u for u in units if u.cells[0].cell_id == cells[-1].cell_id]
    end = done[-1]["finished_unix_s"] + SweepEta(last, before, one_gpu).remaining_s()
    print(f"{len(units)} engine starts, {len(done)} of {len(cells)} cells stored; "
          f"ETA before the first: {eta.remaining_s() / 60:.1f} min\n")
    logged = {int(n): int(m) + int(s) / 60 for n, m, s in
              re.findall(rf"^\[(\d+)/{len(cells)} cells\].* ETA (\d+):(\d+) ", section, re.M)}
    print("| after cell | ETA min | the run's ETA min (its log) | left min (the run's) |")
    print("|---|---|---|---|")
    for i, row in enumerate(done, 1):
        eta.finished(row["cell_id"], row)
        was = f"{logged[i]:.1f}" if i in logged else "–"
        print(f"| {i} | {eta.remaining_s() / 60:.1f} | {was} | {(end - row['finished_unix_s']) / 60:.1f} |")
    return 0


def log_text(store: str) -> str:
    """The run's section of the driver's log beside the store: from its "check of" line to its interrupt
    (the log holds every run into the store; this one is the section whose progress lines count 6 cells)."""
    text = (Path(store).parent / "sweep.log").read_text(errors="replace")
    start = text.rfind("check of active sweep", 0, text.index(f"/{len(CELLS)} cells]"))
    return text[start:text.index("interrupted:", start)]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
