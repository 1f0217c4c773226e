"""How often ``client.metrics.completion_shortfall`` flags an open-loop window, in simulated
Poisson windows: a server keeping up (each request's latency lognormal about ``e2e``, CV 0.3)
must not be flagged; a server whose capacity is 80% of the offered rate (FIFO: a request
completes no sooner than one service time, 1 / (0.8 x rate), after the previous one) should be.
Only the measured requests count (arrivals in the window; warm-up arrivals before it load the
server but are never counted).

    python scripts/bench_saturation_rule.py experiments/benchmarks/saturation_rule [--windows 4000]

Writes ``results.json`` and ``results.md`` there.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from orchestrator.client.metrics import completion_shortfall, edge_e2e_s

CASES = ((10.0, 4.0, 1.2), (30.0, 10.0, 2.0), (60.0, 20.0, 3.0))  # (window s, req/s, E2E s)
WARMUP_S = 5.0


def one_window(rng, window_s: float, rate: float, e2e_s: float, capacity: float) -> bool:
    n = rng.poisson(rate * (window_s + WARMUP_S))
    t = np.sort(rng.uniform(-WARMUP_S, window_s, n))
    sigma = np.sqrt(np.log1p(0.3 ** 2))
    latency = rng.lognormal(np.log(e2e_s) - sigma ** 2 / 2, sigma, n)
    done = t + latency
    if capacity < 1.0:  # FIFO at capacity x rate: completions no closer than one service time
        service = 1.0 / (capacity * rate)
        for i in range(1, n):
            done[i] = max(done[i], done[i - 1] + service)
    measured = t >= 0
    completed = int(np.count_nonzero(measured & (done <= window_s)))
    ok = measured & (done <= window_s)
    return completion_shortfall(completed, int(measured.sum()), window_s, edge_e2e_s(t[ok], done[ok] - t[ok], window_s))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--windows", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    for window_s, rate, e2e_s in CASES:
        keeps = np.mean([one_window(rng, window_s, rate, e2e_s, 1.0) for _ in range(args.windows)])
        behind = np.mean([one_window(rng, window_s, rate, e2e_s, 0.8) for _ in range(args.windows)])
        rows.append({"window_s": window_s, "rate_rps": rate, "e2e_s": e2e_s, "windows": args.windows,
                     "flagged_keeping_up": float(keeps), "flagged_at_80pct_capacity": float(behind)})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["| window s | req/s | E2E s | windows | flagged, keeping up | flagged, 80% capacity |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['window_s']:g} | {r['rate_rps']:g} | {r['e2e_s']:g} | {r['windows']} | "
              f"{r['flagged_keeping_up']:.2%} | {r['flagged_at_80pct_capacity']:.1%} |" for r in rows]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
