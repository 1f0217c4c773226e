"""Per-cell roofline: decode arithmetic intensity, the GPU's ridge point, the predicted ceiling
and the achieved fraction of it (maths in ``roofline.py``, unchanged).

A decode step of ``b`` sequences reads every weight once plus the KV of ``b x context`` tokens.
``b`` is the **effective** batch: the engine's mean running batch (at least 1), since an
open-loop server may never fill ``max_num_seqs``; the configured batch size's intensity is
given too. ``context_tokens`` is the mean context of a decoding sequence (input + output / 2).
The ceiling is decode-only; measured output tok/s also pays for prefill, scheduling and idle
time, so the achieved fraction is normally below 1 (above 1 means the step model counts work
the engine skipped, e.g. cached prefixes).
"""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from orchestrator.analysis.tables import SERIES_KEYS
from orchestrator.config.groups import Precision
from orchestrator.config.root import CellConfig
from orchestrator.perf import roofline


def _first_config(cell_ids: str, configs: Mapping[str, CellConfig]) -> CellConfig:
    return configs[cell_ids.split(",")[0]]


def roofline_row(config: CellConfig, batch: float, effective_batch: float, context_tokens: float,
                 tok_s: float) -> dict:
    """Roofline numbers of one measured point (SI units; ``*_tflops`` in 1e12 FLOP/s,
    ``*_gb_s`` in 1e9 bytes/s)."""
    m, q, g = config.model, config.quantization, config.gpu
    eff = max(1.0, float(effective_batch))
    cost = roofline.decode_cost(m, q, eff, context_tokens)
    ceiling, bound = roofline.decode_ceiling_tok_s(m, q, g, eff, context_tokens)
    flops_per_token = cost.flops / eff
    return {
        "effective_batch": eff,
        "intensity_flop_per_byte": cost.intensity,
        "intensity_at_batch_size_flop_per_byte": roofline.decode_cost(m, q, batch, context_tokens).intensity,
        "ridge_flop_per_byte": roofline.ridge_point(g, q),
        "peak_tflops": roofline.peak_flops(g, q) / 1e12,
        "bandwidth_gb_s": roofline.bandwidth_bytes_s(g) / 1e9,
        "bound": bound,
        "ceiling_tok_s": ceiling,
        "achieved_fraction": tok_s / ceiling if ceiling > 0 else float("nan"),
        "achieved_tflops": tok_s * flops_per_token / 1e12,
        "achieved_gb_s": tok_s * cost.bytes / eff / 1e9,
    }


def roofline_table(points: pd.DataFrame, configs: Mapping[str, CellConfig]) -> pd.DataFrame:
    """One row per point: keys, batch size, flags, context tokens, measured output tok/s and
    the columns of ``roofline_row``."""
    rows = []
    for p in points.itertuples(index=False):
        if getattr(p, "device", "gpu") == "cpu":  # no GPU measured it: no GPU roofline applies
            continue
        cfg = _first_config(p.cell_id, configs)
        eff = p.mean_running_batch if pd.notna(p.mean_running_batch) and p.mean_running_batch > 0 else p.batch_size
        row = {k: getattr(p, k) for k in SERIES_KEYS + ["batch_size", "flags", "cell_id", "simulated"]}
        row.update(context_tokens=p.context_tokens, output_throughput_tok_s=p.output_throughput_tok_s,
                   activation_dtype=_activation(cfg))
        row.update(roofline_row(cfg, p.batch_size, eff, p.context_tokens, p.output_throughput_tok_s))
        rows.append(row)
    return pd.DataFrame(rows)


def _activation(config: CellConfig) -> str:
    q, g = config.quantization, config.gpu
    low = g.compute_capability < q.activation_min_compute_capability
    return Precision.fp16.value if low else Precision(q.activation_dtype).value


def gpu_roofs(configs: Mapping[str, CellConfig], cell_ids) -> pd.DataFrame:
    """GPU x matmul dtype of the given cells: bandwidth (GB/s), peak (TFLOPS), ridge (FLOP/byte)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}  # (GPU, matmul dtype) -> its roofs
    for cid in cell_ids:
        cfg = configs.get(cid)
        if not cfg:
            continue
        g, q = cfg.gpu, cfg.quantization
        key = (g.name, _activation(cfg))
        rows.setdefault(key, {
            "gpu": g.name, "activation_dtype": key[1], "bandwidth_gb_s": roofline.bandwidth_bytes_s(g) / 1e9,
            "peak_tflops": roofline.peak_flops(g, q) / 1e12, "ridge_flop_per_byte": roofline.ridge_point(g, q),
        })
    return pd.DataFrame(list(rows.values())).sort_values(["gpu", "activation_dtype"]).reset_index(drop=True)


def ridge_batches(points: pd.DataFrame, configs: Mapping[str, CellConfig]) -> pd.DataFrame:
    """Per model x quantization x GPU x configured decode context (mean input + output / 2
    tokens): the decode batch at which intensity reaches the ridge point
    (``roofline.batch_to_ridge``; inf = never at this context), and the largest batch size the
    sweep ran for that model x quantization x GPU; ``simulated`` when any of those points is."""
    max_bs = points.groupby(["model", "quantization", "gpu"])["batch_size"].max()
    sim = points.groupby(["model", "quantization", "gpu"])["simulated"].any()
    rows = {}
    for p in points.itertuples(index=False):
        if getattr(p, "device", "gpu") == "cpu":
            continue
        key = (p.model, p.quantization, p.gpu, round(p.input_tokens_mean_cfg + p.output_tokens_mean_cfg / 2))
        if key in rows:
            continue
        cfg = _first_config(p.cell_id, configs)
        rows[key] = dict(zip(("model", "quantization", "gpu", "context_tokens"), key),
                         ridge_flop_per_byte=roofline.ridge_point(cfg.gpu, cfg.quantization),
                         batch_to_ridge=roofline.batch_to_ridge(cfg.model, cfg.quantization, cfg.gpu, key[3]),
                         max_batch_swept=int(max_bs[key[:3]]), simulated=bool(sim[key[:3]]))
    return pd.DataFrame(list(rows.values())).sort_values(["gpu", "model", "quantization", "context_tokens"])
