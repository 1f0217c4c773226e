"""What the prefix cache saves, from the store of ``+sweep=prefix_cache``, and how much of it is
skipped prefill.

    python experiments/benchmarks/prefix_cache/analyze.py experiments/benchmarks/prefix_cache/store

Prints (markdown): the side-by-side table of each workload and rate with the cache off and on,
the cross-check of the requests' cached tokens against vLLM's own counters, and the prefill
attribution: the two cells of a pair send the same requests on the same schedule (the same
prompts, the same output tokens), so their net-energy difference (gross - idle W x window) is
what the cache changed; divided by the cached prompt tokens prefilled in the window it is the
energy saved per skipped prompt token, set against what prefilling a token costs on this GPU
(a datasheet lower bound at peak efficiency, and the simulator's roofline at 55% of peak).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parents[3]


def load(store: str):
    runs = ds.dataset(f"{store}/runs", format="parquet").to_table().to_pandas()
    reqs = ds.dataset(f"{store}/requests", format="parquet").to_table().to_pandas()
    cfg = runs.config_json.map(json.loads)
    runs["cache"] = cfg.map(lambda c: c["engine"]["vllm"]["enable_prefix_caching"])
    runs["rate"] = cfg.map(lambda c: c["workload"]["trace"]["rate_rps"] if c["workload"]["source"] == "trace"
                           else c["workload"]["rate_rps"])
    runs["net_j"] = runs.energy_j - runs.idle_power_w * runs.window_s
    # cached prompt tokens of the requests prefilled in the window (first token inside it)
    w = runs.set_index("cell_id")[["window_start_s", "window_end_s"]]
    r = reqs.join(w, on="cell_id")
    inside = r[(r.first_token_s >= r.window_start_s) & (r.first_token_s <= r.window_end_s)]
    runs["cached_in_window"] = runs.cell_id.map(inside.groupby("cell_id").cached_tokens.sum()).fillna(0)
    return runs.sort_values(["workload", "rate", "cache"]), reqs


def side_by_side(runs) -> None:
    print("| workload | rate | cache | requests (ok) | hit rate | J/1k output tok | J/1k prompt tok | J/request "
          "| TTFT p50 / p99 (ms) | mean W |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for _, x in runs.iterrows():
        rate = f"{x.rate:g} {'sessions' if x.workload == 'sessions' else 'req'}/s"
        print(f"| {x.workload} | {rate} | {'on' if x.cache else 'off'} | {x.n_requests_measured} ({x.n_requests_ok}) "
              f"| {x.prefix_cache_hit_rate:.1%} | {x.energy_per_1k_output_tokens_j:,.0f} "
              f"| {x.energy_per_1k_prompt_tokens_j:,.1f} | {x.energy_per_request_j:,.1f} "
              f"| {x.ttft_p50_ms:.1f} / {x.ttft_p99_ms:.1f} | {x.mean_power_w:.0f} |")


def counters(runs, reqs) -> None:
    print("\n| workload | rate | cache | Σ cached_tokens (requests) | vLLM prefix_cache_hits | Σ prompt tokens "
          "| vLLM prefix_cache_queries | first request cached |")
    print("|---|---|---|---|---|---|---|---|")
    for _, x in runs.iterrows():
        e = json.loads(x.engine_extra)
        q = reqs[reqs.cell_id == x.cell_id].sort_values("send_s")
        print(f"| {x.workload} | {x.rate:g} | {'on' if x.cache else 'off'} | {int(q.cached_tokens.sum()):,} "
              f"| {e.get('prefix_cache_hits_tokens') or 0:,.0f} | {int(q.input_tokens.sum()):,} "
              f"| {e.get('prefix_cache_queries_tokens') or 0:,.0f} | {int(q.cached_tokens.iloc[0])} |")


def prefill_j_per_token(idle_w: float) -> float:
    """Net J to prefill one prompt token of Llama-2-7B on an H100 at the datasheet's dense fp16
    peak and TDP: FLOPs per token (``perf.roofline``'s step model, 2 x params + attention at a
    short context) x (TDP - measured idle W) / peak FLOP/s, a lower bound (no kernel reaches peak)."""
    from hydra import compose, initialize_config_dir

    from orchestrator.app.hydra_entry import register_configs, typed
    from orchestrator.perf import roofline

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = typed(compose(config_name="config", overrides=["model=llama2_7b", "gpu=h100", "quantization=none"]))
    n = 2048
    flops = roofline.step_model(cfg.model, cfg.quantization).cost(n, 0).flops / n
    return flops * (cfg.gpu.tdp_w - idle_w) / roofline.peak_flops(cfg.gpu, cfg.quantization)


def prefill_share(runs) -> None:
    idle = float(runs.idle_power_w.mean())
    bound = prefill_j_per_token(idle)
    print(f"\nPrefilling one prompt token costs at least {bound * 1e3:.1f} J per 1k tokens net of idle "
          f"({idle:.0f} W) at the H100's dense fp16 peak and TDP; at the simulator's 55% of peak, "
          f"{bound / 0.55 * 1e3:.1f} J per 1k.\n")
    print("| workload | rate | net J saved (off - on) | cached prompt tokens prefilled in window "
          "| J saved per 1k cached tokens | x the peak-efficiency bound |")
    print("|---|---|---|---|---|---|")
    for (wl, rate), pair in runs.groupby(["workload", "rate"]):
        o, n = pair[~pair.cache].iloc[0], pair[pair.cache].iloc[0]
        saved = o.net_j - n.net_j
        per_1k = saved / n.cached_in_window * 1e3
        print(f"| {wl} | {rate:g} | {saved:,.0f} J ({saved / o.net_j:.1%} of net) | {n.cached_in_window:,.0f} "
              f"| {per_1k:.1f} | {per_1k / (bound * 1e3):.2f} |")


def main() -> None:
    runs, reqs = load(sys.argv[1])
    side_by_side(runs)
    counters(runs, reqs)
    prefill_share(runs)


if __name__ == "__main__":
    main()
