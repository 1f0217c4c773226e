"""``python -m orchestrator.store STORE [--failed | --status S ...] [--upgrade]``: one line per cell
of a store — status, engine, model/quantization/gpu, batch size, workload, repeat, cell id, and
the first line of its reason where it did not end ok. ``--failed``: only the cells that ran and did
not end ok (not the pre-launch statuses unsupported and infeasible); ``--status``: only these
statuses. ``--upgrade``: first bring every file up to the current schema (columns added since it
was written: null), as the next sweep over the store would. Exit 2 with one line when STORE holds
no sweep."""
from __future__ import annotations

import argparse
import sys
from typing import Dict, List, Optional, Sequence

from orchestrator.errors import Status, first_line
from orchestrator.store.sweep_store import Store, load

PRE_LAUNCH = (Status.unsupported.value, Status.infeasible.value)
COLUMNS = ("status", "engine", "model", "quantization", "gpu", "batch_size", "workload", "repeat", "cell_id", "error")


def cell_lines(rows: Sequence[Dict], failed: bool = False, statuses: Optional[Sequence[str]] = None) -> List[str]:
    """One line per cell of ``rows`` (the runs table's rows), sorted by status then label."""
    keep = [r for r in rows if (not failed or (r["status"] != Status.ok.value and r["status"] not in PRE_LAUNCH))
            and (not statuses or r["status"] in statuses)]
    keep.sort(key=lambda r: (r["status"], str(r["model"]), str(r["gpu"]), r["batch_size"] or 0, str(r["workload"]),
                             r["repeat"] or 0))
    out = []
    for r in keep:
        label = f"{r['model']}/{r['quantization']}/{r['gpu']}/bs{r['batch_size']}/{r['workload']}/r{r['repeat']}"
        out.append(f"{r['status']:<15} {r['engine'] or '-':<10} {label}  {r['cell_id']}"
                   + (f"  {first_line(r['error'])}" if r.get("error") and r["status"] != Status.ok.value else ""))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m orchestrator.store", description=__doc__.split("\n\n")[0])
    ap.add_argument("store", help="a sweep's store (store.dir, or a pyarrow filesystem URI)")
    ap.add_argument("--failed", action="store_true", help="only cells that ran and did not end ok")
    ap.add_argument("--status", action="append", choices=[s.value for s in Status], help="only this status (repeatable)")
    ap.add_argument("--upgrade", action="store_true", help="bring every file up to the current schema first")
    args = ap.parse_args(argv)
    try:
        if args.upgrade:
            print(f"brought {Store.open(args.store).upgrade(force=True)} files up to the current schema", file=sys.stderr)
        rows = load(args.store).runs.select(list(COLUMNS)).to_pylist()
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lines = cell_lines(rows, args.failed, args.status)
    print("\n".join(lines) if lines else "no cell matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
