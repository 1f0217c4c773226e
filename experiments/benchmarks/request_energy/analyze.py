"""Issue 30's validation of energy per request, from the stores of ``+sweep=request_energy`` and
the offline guard (``scripts/bench_vllm.py --parts offline,bare``: 128/128 at batch 1, 8, 64, 256).

    python experiments/benchmarks/request_energy/analyze.py STORE [STORE ...] [--simulated SIM_STORE]

Several stores are read as one (cell ids are content hashes: no two stores' rows collide).

1. **Phase-pure cells, by the counter alone**: prefill-only cells (1 output token) and
   decode-heavy cells (16-token prompts) at several batch sizes fit a step-level model of net
   energy by least squares over the cells' counter energy and their logged steps inside the
   window: c0 per step + a per prompt token + b per decode token (+ k per KV token a decoding
   request reads). c0 is the step's fixed cost, reading the weights once; k prices a byte of KV
   read like a byte of weights (c0 / weight bytes x KV bytes per token; no fitted parameter: the
   decode-heavy cells all share one context profile, so k and b cannot be told apart by them).
2. **Mixed cells the fit never saw**: each model's net energy from the cells' own steps, against
   the counter; the median absolute error (issue: within 5%). The model without k is shown too.
3. **The attribution's prefill share** of each mixed cell (``energy.attribution``, re-run on the
   stored steps and power with the current split; the share stored at run time beside it) against
   the fitted model's, each step's prefill part being a x its prompt tokens (the whole step where
   it decodes nothing).
5. With ``--simulated``: the simulator's run of the same sweep (``engine=simulated``, the H200
   calibration's factors, the H100's idle) beside each measured cell of the sweep: the prefill
   share it predicts from its roofline (prefill compute-bound, decode bandwidth-bound) against
   the attributed one, and its output tok/s and J per output token (cells paired by workload,
   lengths, rate and batch size: ``compare`` pairs by workload name, which these cells share).
4. **Batch 1 with gaps**: each measured request's own counter delta over its steps (the first
   step's start to the last one's end, interpolated on the counter's updates) against the energy
   attributed to it; the median absolute error (issue: within 5%).

Prints markdown tables; exits 1 where the stores lack a group of cells.
"""
from __future__ import annotations

import json
import sys
from typing import Dict

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from orchestrator.config.root import cell_config_from_json
from orchestrator.core.steps import StepRecorder, StepTimeline
from orchestrator.energy.attribution import RooflineSplit, attribute
from orchestrator.energy.base import PowerTrace

PURE = ("prefill-only", "decode-heavy")


def table(stores, name: str) -> pd.DataFrame:
    return pd.concat([ds.dataset(f"{s}/{name}", format="parquet").to_table().to_pandas() for s in stores],
                     ignore_index=True)


def kind(r) -> str:
    if r.arrival == "offline" and r.out_tokens == 1:
        return "prefill-only"
    if r.arrival == "offline" and r.in_tokens <= 32:
        return "decode-heavy"
    if r.batch_size == 1 and r.arrival == "constant":
        return "batch-1 gaps"
    return "mixed"


def load(stores):
    runs = table(stores, "runs")
    runs = runs[runs.status == "ok"].copy()
    wl = runs.config_json.map(lambda c: json.loads(c)["workload"])
    runs["in_tokens"] = wl.map(lambda w: w["input"]["mean_tokens"])
    runs["out_tokens"] = wl.map(lambda w: w["output"]["mean_tokens"])
    runs["rate"] = wl.map(lambda w: w["rate_rps"])
    runs["kind"] = [kind(r) for r in runs.itertuples()]
    return runs.set_index("cell_id", drop=False), *(table(stores, n) for n in ("requests", "power", "steps"))


def timeline(rows: pd.DataFrame) -> StepTimeline:
    rec = StepRecorder(str(rows.step_source.iloc[0]))
    for r in rows.sort_values("step_index").itertuples():
        rec.add(r.start_s, r.end_s, list(zip(r.request_index, r.request_prefill_tokens, r.request_decode_tokens)))
    return rec.timeline()


def trace(rows: pd.DataFrame) -> PowerTrace:
    rows = rows.sort_values("t_ns")
    return PowerTrace("nvml", rows.t_ns.to_numpy(), rows.power_w.to_numpy(), rows.energy_mj.to_numpy())


def features(runs, steps, power) -> Dict[str, StepTimeline]:
    """Per cell, over its steps inside the window (each counted by the part of it inside): steps,
    prompt tokens, decode tokens, KV tokens read by decoding requests, and the prefill share the
    current attribution gives (re-run on the stored steps and power)."""
    timelines = {}
    for cell_id, rows in steps.groupby("cell_id"):
        if cell_id not in runs.index:
            continue
        c = runs.loc[cell_id]
        tl = timelines[cell_id] = timeline(rows)
        a, b = np.clip(tl.start_s, c.window_start_s, c.window_end_s), np.clip(tl.end_s, c.window_start_s, c.window_end_s)
        length = tl.end_s - tl.start_s
        inside = np.divide(b - a, length, out=(b > a).astype(float), where=length > 0)
        k = tl.step_of_entry
        reads = np.bincount(k, weights=np.where(tl.request_decode > 0, tl.context_of_entry, 0), minlength=len(tl))
        split = RooflineSplit.of(cell_config_from_json(c.config_json))
        att = attribute(tl, trace(power[power.cell_id == cell_id]), c.window_start_s, c.window_end_s, c.energy_j,
                        c.idle_power_w, split)
        runs.loc[cell_id, ["steps_n", "steps_p", "steps_d", "steps_kv"]] = [
            inside.sum(), inside @ tl.prefill_tokens, inside @ tl.decode_tokens, inside @ reads]
        runs.loc[cell_id, "kv_per_weight_byte"] = split.model.kv_bytes_per_token / split.model.weight_bytes
        runs.loc[cell_id, "share_now"] = att.prefill_energy_share
        runs.loc[cell_id, "prefill_only_steps"] = inside @ ((tl.decode_tokens == 0) & (tl.prefill_tokens > 0))
    return timelines


def fit(runs):
    """(c0, a, b) without the KV term; (c0, a, b, k) with k = c0 x KV bytes per token / weight bytes."""
    pure = runs[runs.kind.isin(PURE)].sort_values(["kind", "batch_size"])
    if pure.kind.nunique() < 2:
        sys.exit("the stores have no prefill-only or no decode-heavy cells (+sweep=request_energy)")
    x, y = pure[["steps_n", "steps_p", "steps_d"]].to_numpy(float), pure.net_energy_j.to_numpy(float)
    plain = np.linalg.lstsq(x, y, rcond=None)[0]
    ratio = float(pure.kv_per_weight_byte.iloc[0])
    coef = plain
    for _ in range(50):  # k follows c0: a fixed point, reached in a few rounds
        k = coef[0] * ratio
        coef = np.linalg.lstsq(x, y - k * pure.steps_kv.to_numpy(float), rcond=None)[0]
    full = np.r_[coef, coef[0] * ratio]
    print("| phase-pure cell | batch | window s | steps | prompt tokens | decode tokens | KV tokens read (M) "
          "| net J (counter) | fit (no KV term) | fit |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c in pure.itertuples():
        shape = "2,048 in, 1 out" if c.kind == "prefill-only" else "16 in, 512 out"
        f3 = np.array([c.steps_n, c.steps_p, c.steps_d]) @ plain
        f4 = np.array([c.steps_n, c.steps_p, c.steps_d, c.steps_kv]) @ full
        print(f"| {c.kind} ({shape}) | {c.batch_size} | {c.window_s:.1f} | {c.steps_n:,.0f} | {c.steps_p:,.0f} "
              f"| {c.steps_d:,.0f} | {c.steps_kv / 1e6:,.1f} | {c.net_energy_j:,.0f} | {f3 / c.net_energy_j - 1:+.1%} "
              f"| {f4 / c.net_energy_j - 1:+.1%} |")
    print(f"\nFitted (net of idle): {full[0] * 1e3:,.0f} mJ per step, {full[1] * 1e3:.2f} J per 1k prompt tokens, "
          f"{full[2] * 1e3:.2f} J per 1k decode tokens, {full[3] * 1e6:.1f} J per 1M KV tokens read "
          f"({ratio * 1e6:.1f} per 1M of the weights' bytes); without the KV term {plain[0] * 1e3:,.0f} mJ per step, "
          f"{plain[1] * 1e3:.2f} J per 1k prompt tokens, {plain[2] * 1e3:.2f} J per 1k decode tokens.")
    return plain, full


def mixed(runs, plain, full) -> None:
    cells = runs[runs.kind == "mixed"].sort_values(["workload", "in_tokens", "batch_size"])
    print("\n| mixed cell | batch | window s | steps | net J (counter) | predicted | error | without KV term "
          "| prefill share: attributed (stored) / fit |")
    print("|---|---|---|---|---|---|---|---|---|")
    errors, errors3, shares = [], [], []
    for c in cells.itertuples():
        parts = np.array([c.steps_n, c.steps_p, c.steps_d, c.steps_kv]) * full
        pred, pred3 = parts.sum(), np.array([c.steps_n, c.steps_p, c.steps_d]) @ plain
        fit_share = (parts[1] + full[0] * c.prefill_only_steps) / pred
        errors.append(abs(pred / c.net_energy_j - 1))
        errors3.append(abs(pred3 / c.net_energy_j - 1))
        shares.append(c.share_now - fit_share)
        print(f"| {c.workload} {c.in_tokens}/{c.out_tokens} | {c.batch_size} | {c.window_s:.1f} | {c.steps_n:,.0f} "
              f"| {c.net_energy_j:,.0f} | {pred:,.0f} | {pred / c.net_energy_j - 1:+.1%} | {pred3 / c.net_energy_j - 1:+.1%} "
              f"| {c.share_now:.1%} ({c.prefill_energy_share:.1%}) / {fit_share:.1%} |")
    if errors:
        print(f"\nMedian absolute error of the predicted total over {len(errors)} mixed cells: {np.median(errors):.1%} "
              f"(max {np.max(errors):.1%}); without the KV term {np.median(errors3):.1%} (max {np.max(errors3):.1%}). "
              f"Attributed prefill share less the fit's: median {np.median(shares):+.1%} "
              f"(from {np.min(shares):+.1%} to {np.max(shares):+.1%}) points.")


def batch_one(runs, reqs, power, timelines) -> None:
    """Each request's own counter delta over its steps (first step's start to last step's end)."""
    for c in runs[runs.kind == "batch-1 gaps"].itertuples():
        pw = power[power.cell_id == c.cell_id].sort_values("t_ns")
        t, e = pw.t_ns.to_numpy() / 1e9, pw.energy_mj.to_numpy() / 1e3
        tl = timelines[c.cell_id]
        k = tl.step_of_entry
        span = pd.DataFrame({"request_index": tl.request_index, "start": tl.start_s[k], "end": tl.end_s[k]}) \
            .groupby("request_index").agg(start=("start", "min"), end=("end", "max"))
        q = reqs[(reqs.cell_id == c.cell_id) & (reqs.phase == "measured") & (reqs.status == "ok")]
        q = q.join(span, on="request_index")
        q = q[(q.start >= c.window_start_s) & (q.end <= c.window_end_s)]
        counter = np.interp(q.end, t, e) - np.interp(q.start, t, e)
        err = q.energy_j.to_numpy() / counter - 1
        how = (f"back to back (one every {1 / c.rate:.0f} s, each longer: saturated)" if c.saturated
               else f"with gaps (one every {1 / c.rate:.0f} s)")
        print(f"\nBatch 1, requests {how}, {len(q)} inside the {c.window_s:.0f} s window; counter updates every "
              f"{c.counter_update_period_s * 1e3:.0f} ms. Attributed vs the counter over the request's own steps, "
              f"median abs error {np.median(np.abs(err)):.1%} (p90 {np.percentile(np.abs(err), 90):.1%}, max "
              f"{np.max(np.abs(err)):.1%}); {np.median(counter):.1f} J over {np.median(q.end - q.start):.2f} s per "
              f"request (median), {c.idle_power_w:.0f} W idle.")


def pair_key(r) -> tuple:
    return (r.workload, r.in_tokens, r.out_tokens, r.rate, r.batch_size)


def simulated(runs, sim_store: str) -> None:
    sim = load([sim_store])[0]
    by_key = {pair_key(r): r for r in sim.itertuples()}
    print("\n| cell | batch | prefill share: attributed / simulated | output tok/s: measured / simulated "
          "| J per output token: measured / simulated |")
    print("|---|---|---|---|---|")
    gaps = []
    for c in runs.sort_values(["workload", "in_tokens", "batch_size"]).itertuples():
        s = by_key.get(pair_key(c))
        if s is None or c.kind == "batch-1 gaps" and c.saturated:
            continue
        share = c.share_now if c.share_now == c.share_now else c.prefill_energy_share
        gaps.append(s.prefill_energy_share - share)
        j_m, j_s = c.energy_per_1k_output_tokens_j / 1e3, s.energy_per_1k_output_tokens_j / 1e3
        print(f"| {c.workload} {c.in_tokens}/{c.out_tokens} ({c.kind}) | {c.batch_size} | {share:.1%} / "
              f"{s.prefill_energy_share:.1%} | {c.output_throughput_tok_s:,.0f} / {s.output_throughput_tok_s:,.0f} "
              f"| {j_m:.3f} / {j_s:.3f} |")
    print(f"\nSimulated prefill share less the attributed one over {len(gaps)} cells: median "
          f"{np.median(gaps) * 100:+.1f} points (from {np.min(gaps) * 100:+.1f} to {np.max(gaps) * 100:+.1f}).")


def main() -> None:
    args = sys.argv[1:]
    sim_store = None
    if "--simulated" in args:
        i = args.index("--simulated")
        sim_store, args = args[i + 1], args[:i] + args[i + 2:]
    runs, reqs, power, steps = load(args)
    timelines = features(runs, steps, power)
    plain, full = fit(runs)
    mixed(runs, plain, full)
    batch_one(runs, reqs, power, timelines)
    if sim_store:
        simulated(runs, sim_store)


if __name__ == "__main__":
    main()
