"""A markdown table of a store's runs: one row per cell, the columns a benchmark note quotes.

    python scripts/store_table.py STORE [--title TEXT] [--extra KEY ...] [--md OUT.md] [--json OUT.json]

Columns: model, quantization, engine, batch size, repeat, status, window (s), measured batches,
batch tok/s CV, output tok/s, gross and net J per output token, mean W, counter vs integrated
energy, flags; ``--extra`` adds keys of the cell's ``engine_extra`` (e.g. the quantization
method and linear kernel vLLM reported, the bitsandbytes threshold). Cells in start order.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

COLUMNS = ("model", "quantization", "engine", "batch_size", "repeat", "status", "window_s", "n_batches_measured",
           "batch_output_tok_s_cv", "output_throughput_tok_s", "energy_per_1k_output_tokens_j",
           "net_energy_per_1k_output_tokens_j", "mean_power_w", "energy_j", "energy_integrated_j", "short_window",
           "energy_mismatch", "token_count_mismatch", "error")


def rows_of(store: str, extra_keys: List[str]) -> List[Dict]:
    from orchestrator.store.sweep_store import load

    runs = sorted(load(store).runs.to_pylist(), key=lambda r: r.get("started_unix_s") or 0)
    out = []
    for r in runs:
        row = {k: r.get(k) for k in COLUMNS}
        extra = json.loads(r.get("engine_extra") or "{}")
        row.update({k: extra.get(k) for k in extra_keys})
        out.append(row)
    return out


def fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1 else f"{v:,.1f}"
    text = str(v).strip()
    return text.splitlines()[0][:120] if text else ""


def markdown(rows: List[Dict], title: str) -> str:
    if not rows:
        return f"# {title}\n\n(no cells)\n"
    keys = list(rows[0])
    lines = [f"# {title}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store")
    ap.add_argument("--title", default="Cells")
    ap.add_argument("--extra", nargs="*", default=[])
    ap.add_argument("--md", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = rows_of(args.store, args.extra)
    text = markdown(rows, args.title)
    print(text)
    if args.md:
        args.md.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
