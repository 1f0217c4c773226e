"""vLLM's Prometheus ``/metrics``: the text exposition parsed into numbers, and what a cell
reads from the scrapes taken beside its client (window means and maxima of gauges, counter
deltas). Names and units: vLLM 0.26 ``v1/metrics/loggers.py``."""
from __future__ import annotations

import re
from typing import Dict, Optional, Sequence, Tuple

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_USAGE = "vllm:kv_cache_usage_perc"
PREFIX_HITS = "vllm:prefix_cache_hits_total"  # counters, in tokens (0.26: v1/metrics/loggers.py)
PREFIX_QUERIES = "vllm:prefix_cache_queries_total"


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+\S+)?$")


def parse_prometheus(text: str) -> Dict[str, float]:
    """Prometheus text exposition -> {metric name: sum over its label sets} (gauges/counters;
    a histogram's ``_bucket``/``_sum``/``_count`` are separate names)."""
    out: Dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out[m.group(1)] = out.get(m.group(1), 0.0) + value
    return out


def window_mean(samples: Sequence[Tuple[float, Dict[str, float]]], name: str, t0: float, t1: float) -> Optional[float]:
    """Mean of metric ``name`` over the scrapes taken in [t0, t1] (None if there are none)."""
    vals = [v[name] for t, v in samples if t0 <= t <= t1 and name in v]
    return sum(vals) / len(vals) if vals else None


def counter_delta(samples: Sequence[Tuple[float, Dict[str, float]]], name: str) -> Optional[float]:
    """A counter's growth from the first scrape to the last (the whole cell, warm-up included);
    None where it was never scraped."""
    vals = [v[name] for _, v in samples if name in v]
    return vals[-1] - vals[0] if vals else None


def window_max(samples, name: str, t0: float, t1: float) -> Optional[float]:
    vals = [v[name] for t, v in samples if t0 <= t <= t1 and name in v]
    return max(vals) if vals else None
