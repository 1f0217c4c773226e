"""Issue 30's validation of energy per request, from the store of ``+sweep=request_energy``.

    python experiments/benchmarks/request_energy/analyze.py STORE [STORE ...]

Several stores are read as one (the sweep's and the offline guard's, whose 128/128 cells at
batch 1, 8, 64, 256 are mixed cells with the step log on).

1. **Phase-pure cells, by the counter alone**: prefill-only cells (1 output token) and
   decode-heavy cells (16-token prompts) at several batch sizes fit a step-level model of net
   energy: c0 per step (reading the weights once) + a per prompt token + b per decode token, by
   least squares over the cells' counter energy and their steps' counts in the window.
2. **Mixed cells the fit never saw**: the model's net energy from their own steps and tokens,
   against the counter; the median absolute error over the mixed cells (issue: within 5%).
3. **Batch 1 with gaps**: each measured request's own counter delta over its steps (the first
   step's start to the last one's end) against the energy attributed to it; the median absolute
   error (issue: within 5%).
4. The attribution's prefill share of each mixed cell beside the fitted model's.

Prints markdown tables; exits 1 where the store lacks a group of cells.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pyarrow.dataset as ds


def table(stores, name: str):
    """One table of several stores (cell ids are content hashes: no two stores' rows collide)."""
    return pd.concat([ds.dataset(f"{s}/{name}", format="parquet").to_table().to_pandas() for s in stores],
                     ignore_index=True)


def load(stores):
    runs = table(stores, "runs")
    runs = runs[runs.status == "ok"].copy()
    wl = runs.config_json.map(lambda c: json.loads(c)["workload"])
    runs["in_tokens"] = wl.map(lambda w: w["input"]["mean_tokens"])
    runs["out_tokens"] = wl.map(lambda w: w["output"]["mean_tokens"])
    runs["rate"] = wl.map(lambda w: w["rate_rps"])
    runs["kind"] = [kind(r) for r in runs.itertuples()]
    reqs, power, steps = (table(stores, name) for name in ("requests", "power", "steps"))
    return runs, reqs, power, steps


def kind(r) -> str:
    if r.arrival == "offline" and r.out_tokens == 1:
        return "prefill-only"
    if r.arrival == "offline" and r.in_tokens <= 32:
        return "decode-heavy"
    if r.batch_size == 1 and r.arrival == "constant":
        return "batch-1 gaps"
    return "mixed"


def step_features(runs, steps) -> None:
    """Per cell, over the steps inside its window (each counted by the part of it inside): the
    number of steps, prompt tokens prefilled and decode tokens."""
    w = runs.set_index("cell_id")[["window_start_s", "window_end_s"]]
    st = steps.join(w, on="cell_id")
    length = (st.end_s - st.start_s).clip(lower=1e-12)
    inside = ((st[["end_s", "window_end_s"]].min(axis=1) - st[["start_s", "window_start_s"]].max(axis=1))
              .clip(lower=0) / length).where(st.end_s > st.start_s, 1.0 * (st.end_s >= st.window_start_s))
    st = st.assign(n=inside, p=inside * st.prefill_tokens, d=inside * st.decode_tokens)
    sums = st.groupby("cell_id")[["n", "p", "d"]].sum()
    for col in ("n", "p", "d"):
        runs[f"steps_{col}"] = runs.cell_id.map(sums[col]).fillna(0.0)


def fit(runs):
    """Net J = c0 x steps + a x prompt tokens + b x decode tokens, least squares over the
    phase-pure cells (a step's fixed cost is reading the weights once; each token adds its own)."""
    pure = runs[runs.kind.isin(["prefill-only", "decode-heavy"])].sort_values(["kind", "batch_size"])
    if pure.kind.nunique() < 2:
        sys.exit("the store has no prefill-only or no decode-heavy cells (+sweep=request_energy)")
    x = pure[["steps_n", "steps_p", "steps_d"]].to_numpy(float)
    coef = np.linalg.lstsq(x, pure.net_energy_j.to_numpy(float), rcond=None)[0]
    print("| phase-pure cell | batch | window s | steps | prompt tokens | decode tokens | net J (counter) | fit |")
    print("|---|---|---|---|---|---|---|---|")
    for c, f in zip(pure.itertuples(), x @ coef):
        shape = "2,048 in, 1 out" if c.kind == "prefill-only" else "16 in, 512 out"
        print(f"| {c.kind} ({shape}) | {c.batch_size} | {c.window_s:.1f} | {c.steps_n:,.0f} | {c.steps_p:,.0f} "
              f"| {c.steps_d:,.0f} | {c.net_energy_j:,.0f} | {f / c.net_energy_j - 1:+.1%} |")
    print(f"\nFitted: {coef[0] * 1e3:.1f} mJ per step, {coef[1] * 1e3:.2f} J per 1k prompt tokens, "
          f"{coef[2] * 1e3:.2f} J per 1k decode tokens (net of idle).")
    return coef


def mixed(runs, coef) -> None:
    cells = runs[runs.kind == "mixed"].sort_values(["workload", "in_tokens", "batch_size"])
    print("\n| mixed cell | batch | steps | net J (counter) | predicted | error | prefill share: attributed / fit |")
    print("|---|---|---|---|---|---|---|")
    errors = []
    for c in cells.itertuples():
        parts = np.array([c.steps_n, c.steps_p, c.steps_d]) * coef
        pred = parts.sum()
        err = pred / c.net_energy_j - 1
        errors.append(abs(err))
        print(f"| {c.workload} {c.in_tokens}/{c.out_tokens} | {c.batch_size} | {c.steps_n:,.0f} | {c.net_energy_j:,.0f} "
              f"| {pred:,.0f} | {err:+.1%} | {c.prefill_energy_share:.1%} / {parts[1] / pred:.1%} |")
    if errors:
        print(f"\nMedian absolute error of the predicted total over {len(errors)} mixed cells: "
              f"{np.median(errors):.1%} (max {np.max(errors):.1%}).")


def batch_one(runs, reqs, power, steps) -> None:
    """Each request's own counter delta over its steps (first step's start to last step's end)."""
    for c in runs[runs.kind == "batch-1 gaps"].itertuples():
        pw = power[power.cell_id == c.cell_id].sort_values("t_ns")
        t, e = pw.t_ns.to_numpy() / 1e9, pw.energy_mj.to_numpy() / 1e3
        st = steps[steps.cell_id == c.cell_id].explode("request_index")
        span = st.groupby("request_index").agg(start=("start_s", "min"), end=("end_s", "max"))
        q = reqs[(reqs.cell_id == c.cell_id) & (reqs.phase == "measured") & (reqs.status == "ok")]
        q = q.join(span, on="request_index")
        q = q[(q.start >= c.window_start_s) & (q.end <= c.window_end_s)]
        counter = np.interp(q.end, t, e) - np.interp(q.start, t, e)
        err = q.energy_j.to_numpy() / counter - 1
        print(f"\nBatch 1 with gaps ({len(q)} requests inside the window): attributed vs the counter over the "
              f"request's own steps, median abs error {np.median(np.abs(err)):.1%} (p90 "
              f"{np.percentile(np.abs(err), 90):.1%}); {np.median(counter):.1f} J over {np.median(q.end - q.start):.2f} s "
              f"per request (median).")


def main() -> None:
    runs, reqs, power, steps = load(sys.argv[1:])
    step_features(runs, steps)
    coef = fit(runs)
    mixed(runs, coef)
    batch_one(runs, reqs, power, steps)


if __name__ == "__main__":
    main()
