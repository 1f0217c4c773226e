"""The pass/fail table: one row per target, from ``results.json``'s parts, into ``results.md``.
Reads only the results (no orchestrator, no GPU): ``--report-only`` runs anywhere."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from benchvllm.common import PARTS, TARGETS

ERROR_KEYS = ("skipped", "error", "read_error", "start_error", "orchestrator_error", "bench_serve_error",
              "offline_error", "sampler_on_off_error", "energy_window_error")


def _rel(a, b) -> Optional[float]:
    try:
        return (float(a) - float(b)) / float(b)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _ok(flag: Optional[bool]) -> str:
    return "n/a" if flag is None else ("PASS" if flag else "FAIL")


def checks(results: Dict) -> List[Dict]:
    """One row per target: what, measured, target, pass."""
    return (offline_checks(results) + repeat_checks(results) + server_checks(results.get("server", {}))
            + energy_checks(results) + sampler_checks(results) + overhead_checks(results))


def repeat_checks(results: Dict) -> List[Dict]:
    """(f): the same offline cell repeated: CV of output tok/s and of J per output token."""
    rows: List[Dict] = []
    for bs, st in sorted((results.get("offline", {}).get("repeats") or {}).items(), key=lambda kv: int(kv[0])):
        for key, what in (("output_throughput_tok_s", "output tok/s"), ("energy_per_1k_output_tokens_j", "J/token")):
            v = st.get(key)
            if not v:
                continue
            rows.append({"check": f"(f) {what} over {st['n']} repeats, batch {bs}",
                         "measured": f"mean {v['mean']:.1f}, CV {v['cv'] * 100:.2f}%",
                         "target": "CV < 2%", "pass": v["cv"] < TARGETS["repeat_cv"]})
    return rows


def offline_checks(results: Dict) -> List[Dict]:
    """(a): the orchestrator's offline tok/s over bare vLLM's, per batch size."""
    rows: List[Dict] = []
    off = results.get("offline", {}).get("cells", {})
    bare = results.get("bare", {}).get("offline", {})
    for bs in sorted(set(off) | set(bare), key=int):
        o, b = (off.get(bs) or {}).get("output_throughput_tok_s"), (bare.get(bs) or {}).get("output_tok_s")
        ratio = o / b if o and b else None
        rows.append({"check": f"(a) offline output tok/s, batch {bs}", "measured":
                     f"orchestrator {o or float('nan'):.0f} / bare {b or float('nan'):.0f} = "
                     f"{(ratio or float('nan')) * 100:.1f}%", "target": ">= 97%",
                     "pass": None if ratio is None else ratio >= TARGETS["offline_ratio"]})
    return rows


def sampler_checks(results: Dict) -> List[Dict]:
    """(d): tok/s with the sampler thread on vs off."""
    d = results.get("bare", {}).get("sampler_on_off")
    if not d:
        return []
    rel = d["on_over_off"] - 1
    return [{"check": f"(d) tok/s with sampler on vs off (batch {d['batch_size']}, medians of "
                      f"{len(d['trials']['on'])}+{len(d['trials']['off'])} trials)",
             "measured": f"{d['median_on_tok_s']:.0f} vs {d['median_off_tok_s']:.0f} ({rel * 100:+.2f}%; "
                         f"off-trial spread {d['off_spread_rel'] * 100:.2f}%)",
             "target": "within 1%", "pass": abs(rel) <= TARGETS["sampler_rel"]}]


def overhead_checks(results: Dict) -> List[Dict]:
    """(e): the orchestrator's time per cell beyond vLLM's start-up and the window."""
    ov = results.get("offline", {}).get("overhead")
    if not ov:
        return []
    return [{"check": "(e) orchestrator time per cell beyond vLLM start-up and the window",
             "measured": f"max {ov['max_per_cell_s']:.1f} s (in-cell " + ", ".join(
                 f"bs{k}: {v['in_cell_s']:.1f}" for k, v in ov["per_cell"].items())
                         + f"; + {ov['shared_per_cell_s']:.1f} s/cell: Ray/process/driver "
                           f"{ov['outside_cells_s']:.1f} s + pre-start {ov['prestart_s']:.1f} s shared by "
                           f"{len(ov['per_cell'])} cells; vLLM start-up {ov['vllm_start_s']:.0f} s excluded)",
             "target": "<= 10 s", "pass": ov["max_per_cell_s"] <= TARGETS["overhead_s"]}]


def server_checks(srv: Dict) -> List[Dict]:
    """(b): the client's achieved arrival rate, and its TTFT/TPOT against ``vllm bench serve``."""
    ours, bench = srv.get("orchestrator"), srv.get("bench_serve")
    if not ours:
        return []
    rate, drawn = ours["achieved_rate_rps"], ours["scheduled_rate_rps"]
    n = ours.get("n_requests_measured") or 0
    # A Poisson draw of N arrivals deviates from the nominal rate by ~1/sqrt(N) by itself (seed 0,
    # 30 s: 18.9 req/s): the client is judged against the schedule it was given.
    rows = [{"check": "(b) achieved arrival rate, chat_medium (Poisson 20 req/s)",
             "measured": f"{rate:.2f} req/s: {_rel(rate, drawn) * 100:+.2f}% vs the drawn schedule ({drawn:.2f} req/s, "
                         f"{_rel(drawn, 20.0) * 100:+.1f}% vs 20 by Poisson sampling, +-{100 / max(n, 1) ** 0.5:.1f}% "
                         f"expected); {_rel(rate, 20.0) * 100:+.1f}% vs 20; send lateness p99 "
                         f"{ours['client'].get('send_lag_p99_ms', ours['client'].get('send_late_p99_ms', float('nan'))):.1f} ms",
             "target": "within 2% (of the schedule)", "pass": abs(_rel(rate, drawn)) <= TARGETS["rate_rel"]}]
    if bench:
        for name, a, b in (("TTFT p50", ours["ttft_p50_ms"], bench.get("median_ttft_ms")),
                           ("TPOT p50", ours["tpot_p50_ms"], bench.get("median_tpot_ms"))):
            rel = _rel(a, b)
            rows.append({"check": f"(b) {name} vs vllm bench serve (same server, same lengths)",
                         "measured": f"{a:.2f} ms vs {b or float('nan'):.2f} ms ({(rel or float('nan')) * 100:+.1f}%)",
                         "target": "within 10%", "pass": None if rel is None else abs(rel) <= TARGETS["latency_rel"]})
    return rows


def energy_windows(results: Dict) -> List[Dict]:
    """Every window with both energies: offline cells, the bare busy window, the chat window."""
    out = []
    off = results.get("offline", {})
    cells = off.get("all_cells") or [{**c, "batch_size": bs} for bs, c in (off.get("cells") or {}).items()]
    for c in cells:
        if c.get("energy_j") and c.get("window_s"):
            rep = f" repeat {c['repeat']}" if c.get("repeat") else ""
            out.append({"where": f"orchestrator offline batch {c['batch_size']}{rep}", "window_s": c["window_s"],
                        "counter_j": c["energy_j"], "integrated_j": c["energy_integrated_j"]})
    e = results.get("bare", {}).get("energy_window")
    if e and e.get("energy_j"):
        out.append({"where": f"bare busy window batch {e['batch_size']}", "window_s": e["window_s"],
                    "counter_j": e["energy_j"], "integrated_j": e["energy_integrated_j"]})
    s = (results.get("server", {}).get("orchestrator") or {}).get("energy")
    if s and s.get("energy_j"):
        out.append({"where": "server chat_medium window", "window_s": results["server"]["orchestrator"]["window_s"],
                    "counter_j": s["energy_j"], "integrated_j": s["energy_integrated_j"]})
    for w in out:
        w["rel"] = _rel(w["integrated_j"], w["counter_j"])
    return out


def energy_checks(results: Dict) -> List[Dict]:
    """(c): counter vs integrated instant power (judged on windows >= 10 s only)."""
    rows = []
    for w in energy_windows(results):
        long = w["window_s"] >= TARGETS["energy_min_window_s"]
        rows.append({"check": f"(c) counter vs integrated instant power, {w['where']}",
                     "measured": f"{w['counter_j']:.0f} J vs {w['integrated_j']:.0f} J ({w['rel'] * 100:+.2f}%) "
                                 f"over {w['window_s']:.1f} s",
                     "target": "within 2% (windows >= 10 s)",
                     "pass": (abs(w["rel"]) <= TARGETS["energy_rel"]) if long else None})
    return rows


def write_report(out: Path, results: Dict) -> None:
    """``results.md``: versions, the checks table, each part's failures, timings."""
    m = results.get("meta", {})
    versions = (f"vllm {m.get('vllm', '?')}, torch {m.get('torch', '?')}, ray {m.get('ray', '?')}, driver "
                f"{m.get('driver', '?')} (CUDA {m.get('cuda_driver', '?')}); model {m.get('model')} (dummy weights, "
                f"fp16); max_num_batched_tokens {m.get('max_num_batched_tokens')} on every side; "
                f"elapsed {m.get('elapsed_s', 0):.0f} s.")
    lines = [f"# vLLM through the orchestrator vs bare vLLM — {m.get('gpu_name', '?')}", "", versions, "",
             "| check | measured | target | result |", "| --- | --- | --- | --- |"]
    for r in checks(results):
        lines.append(f"| {r['check']} | {r['measured']} | {r['target']} | {_ok(r['pass'])} |")
    lines.append("")
    for part in PARTS:
        lines += part_failures(part, results.get(part, {}))
    lines += ["Timings: " + ", ".join(f"{part} {results[part].get('wall_s', 0):.0f} s" for part in PARTS
                                      if isinstance(results.get(part), dict) and "wall_s" in results[part]), "",
              "Every number is in results.json; the method is in scripts/bench_vllm.py's docstring.", ""]
    (out / "results.md").write_text("\n".join(lines))


def part_failures(part: str, p: Dict) -> List[str]:
    """Markdown blocks of a part's skip reason, errors and non-zero exit (with its log's tail)."""
    lines: List[str] = []
    for key in ERROR_KEYS:
        if p.get(key):
            lines += [f"**{part}: {key}**", "", "```", str(p[key])[-1500:], "```", ""]
    if p.get("rc") not in (None, 0):
        lines += [f"**{part}: exit {p['rc']}** (log {p.get('log')})", "", "```", str(p.get("log_tail", ""))[-1500:],
                  "```", ""]
    return lines
