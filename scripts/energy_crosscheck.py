"""Where does the counter-vs-integrated energy gap come from? Analyses a raw NVML trace.

    python scripts/energy_crosscheck.py TRACE.npz [--md OUT.md]

``TRACE.npz`` is what ``scripts/bench_vllm.py --parts bare`` writes (``energy_trace.npz``): one
busy window of static batches sampled every ~10 ms (``t_ns`` monotonic ns, ``power_w`` NVML
field 186, ``energy_mj`` the total-energy counter), ``window_s`` = [t0, t1] (monotonic s) and
``batch_bounds_s``. It reports, for the window:

- the counter's real update period (median time between changes of its value);
- gross energy from the counter delta (interpolated at the window's ends, as
  ``energy.base.window_energy`` does) and from the integrated instant power at the full rate and
  at every 10 Hz (or ``--rates``) sub-sampling phase: a sampling-rate effect shows as a spread
  and a bias of the coarse integrals that the full-rate one does not have;
- the lag of the counter behind the instant power (the shift of the integrated-power curve that
  best matches the counter's cumulative curve, least squares over the window), and the counter
  energy with the window's ends moved by that lag;
- the same comparison per batch (short windows: the ends matter more).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from orchestrator.energy.base import PowerTrace, integrate_power_j  # noqa: E402


def load(path: Path) -> Dict:
    d = np.load(path)
    return {k: d[k] for k in d.files}


def trace_of(d: Dict, every: int = 1, phase: int = 0) -> PowerTrace:
    sl = slice(phase, None, every)
    return PowerTrace("nvml", t_ns=d["t_ns"][sl].astype(np.int64), power_w=d["power_w"][sl],
                      energy_mj=d["energy_mj"][sl])


def counter_j(t_ns: np.ndarray, e_mj: np.ndarray, t0_s: float, t1_s: float) -> float:
    """Counter delta (J) over [t0, t1], interpolated between reads (``window_energy``'s rule)."""
    t = t_ns.astype(np.float64)
    return float((np.interp(t1_s * 1e9, t, e_mj) - np.interp(t0_s * 1e9, t, e_mj)) / 1e3)


def update_period_s(t_ns: np.ndarray, e_mj: np.ndarray) -> float:
    changes = np.nonzero(np.diff(e_mj) != 0)[0] + 1
    return float(np.median(np.diff(t_ns[changes])) / 1e9) if changes.size > 2 else float("nan")


def counter_lag_s(d: Dict, t0_s: float, t1_s: float, max_lag_s: float = 0.5) -> float:
    """The shift L (s) for which the counter's cumulative energy E_c(t) best matches the
    integrated instant power's cumulative energy E_p(t - L) over the window (offset removed)."""
    t = d["t_ns"].astype(np.float64) / 1e9
    p = d["power_w"]
    cum_p = np.concatenate([[0.0], np.cumsum(np.diff(t) * (p[1:] + p[:-1]) / 2)])
    grid = np.arange(t0_s, t1_s, 0.005)
    e_c = np.interp(grid, t, d["energy_mj"] / 1e3)
    best, best_err = 0.0, float("inf")
    for lag in np.arange(-max_lag_s, max_lag_s + 1e-9, 0.005):
        e_p = np.interp(grid - lag, t, cum_p)
        diff = e_c - e_p
        err = float(np.mean((diff - diff.mean()) ** 2))
        if err < best_err:
            best, best_err = float(lag), err
    return best


def window_rows(d: Dict, t0: float, t1: float, rates_hz: List[float]) -> List[Dict]:
    """Counter vs integrated power over [t0, t1] at the full rate and each sub-sampling."""
    full_dt = float(np.median(np.diff(d["t_ns"])) / 1e9)
    counter = counter_j(d["t_ns"], d["energy_mj"], t0, t1)
    rows = [{"what": f"integrated at the full rate ({1 / full_dt:.0f} Hz)", "energy_j": integrate_power_j(
        trace_of(d), int(t0 * 1e9), int(t1 * 1e9)), "spread_pct": 0.0}]
    for hz in rates_hz:
        every = max(1, int(round(1 / (hz * full_dt))))
        vals = [integrate_power_j(trace_of(d, every, ph), int(t0 * 1e9), int(t1 * 1e9)) for ph in range(every)]
        rows.append({"what": f"integrated at {hz:g} Hz (mean of {every} phases)", "energy_j": float(np.mean(vals)),
                     "spread_pct": 100 * (max(vals) - min(vals)) / counter})
        cvals = [counter_j(trace_of(d, every, ph).t_ns, trace_of(d, every, ph).energy_mj, t0, t1) for ph in range(every)]
        rows.append({"what": f"counter read at {hz:g} Hz (mean of {every} phases)", "energy_j": float(np.mean(cvals)),
                     "spread_pct": 100 * (max(cvals) - min(cvals)) / counter})
    for r in rows:
        r["vs_counter_pct"] = 100 * (r["energy_j"] - counter) / counter
    return [{"what": "counter delta (full rate)", "energy_j": counter, "spread_pct": 0.0, "vs_counter_pct": 0.0}] + rows


def report(d: Dict, rates_hz: List[float]) -> str:
    t0, t1 = (float(x) for x in d["window_s"])
    period = update_period_s(d["t_ns"], d["energy_mj"])
    lag = counter_lag_s(d, t0, t1)
    counter = counter_j(d["t_ns"], d["energy_mj"], t0, t1)
    shifted = counter_j(d["t_ns"], d["energy_mj"], t0 + lag, t1 + lag)
    full = integrate_power_j(trace_of(d), int(t0 * 1e9), int(t1 * 1e9))
    lines = [f"Window {t1 - t0:.2f} s, batch {int(d['batch_size'])}, {len(d['batch_bounds_s'])} batches, "
             f"{len(d['t_ns'])} samples; counter update period {period * 1e3:.1f} ms; "
             f"counter lag behind instant power {lag * 1e3:+.0f} ms.", "",
             "| estimate | energy J | vs counter | spread over phases |", "|---|---:|---:|---:|"]
    for r in window_rows(d, t0, t1, rates_hz):
        lines.append(f"| {r['what']} | {r['energy_j']:.1f} | {r['vs_counter_pct']:+.2f}% | {r['spread_pct']:.2f}% |")
    lines.append(f"| counter delta, window ends moved by the lag | {shifted:.1f} | "
                 f"{100 * (shifted - counter) / counter:+.2f}% | |")
    lines += ["", f"Integrated (full rate) vs lag-corrected counter: {100 * (full - shifted) / shifted:+.2f}%.", "",
              "Per batch (full rate): integrated vs counter, plain and lag-corrected:", "",
              "| batch | s | counter J | integrated J | vs counter | vs lag-corrected |", "|---:|---:|---:|---:|---:|---:|"]
    for i, (a, b) in enumerate(d["batch_bounds_s"]):
        c = counter_j(d["t_ns"], d["energy_mj"], a, b)
        cs = counter_j(d["t_ns"], d["energy_mj"], a + lag, b + lag)
        p = integrate_power_j(trace_of(d), int(a * 1e9), int(b * 1e9))
        lines.append(f"| {i} | {b - a:.2f} | {c:.1f} | {p:.1f} | {100 * (p - c) / c:+.2f}% | {100 * (p - cs) / cs:+.2f}% |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace", type=Path)
    ap.add_argument("--md", type=Path, help="also write the report here")
    ap.add_argument("--rates", default="10,20,50", help="sub-sampling rates (Hz) to compare")
    args = ap.parse_args(argv)
    text = report(load(args.trace), [float(x) for x in args.rates.split(",")])
    print(text)
    if args.md:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
