"""How well a calibrated prediction (B) matches measurement (A), split into the points the
calibration was fitted on and those it was not (held out).

A comparison's Δ = (B − A) ÷ A is, with B the prediction, the prediction's relative error. A
calibration (``scripts/calibrate_simulator.py``'s ``calibration.json``) names what it was fitted
on — model, GPU, quantization and workload; a matched point is **fitted** when it has all four,
**held out** otherwise. Per group (quantization, with the variant of A's series when its point
has several, e.g. `` [enforce_eager=true]``, × workload), in all, and per engine of A when A's
points ran on several, ``prediction_errors`` gives the number of points and the median and
largest absolute error (%) of output tok/s and of gross J per output token.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from orchestrator.analysis.dataset import SweepError
from orchestrator.analysis.series_labels import series_suffixes
from orchestrator.store.schema import OUTPUT_THROUGHPUT_TOK_S

ERROR_METRICS = (("output tok/s", OUTPUT_THROUGHPUT_TOK_S), ("J/output token", "energy_per_output_token_j"))
"""(name, metric) whose prediction error is summarised."""


@dataclass(frozen=True)
class FitSelection:
    """What a calibration was fitted on; ``None`` for model or GPU: any."""

    quantization: str
    workload: str
    model: Optional[str] = None
    gpu: Optional[str] = None
    kernel_store: Optional[str] = None  # where the quantized kernels' factors were fitted (another store)
    kernel_methods: tuple[str, ...] = ()
    source: str = ""  # the calibration.json it was read from

    @classmethod
    def from_calibration(cls, path: str | Path) -> "FitSelection":
        """Read ``calibration.json``; ``SweepError`` with one line when it is not one."""
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
            kernels = tuple(sorted(doc.get("kernel_cells") or {}))
            return cls(quantization=str(doc["quantization"]), workload=str(doc["workload"]),
                       model=doc.get("model"), gpu=doc.get("gpu"), kernel_store=doc.get("kernel_store"),
                       kernel_methods=kernels, source=str(path))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SweepError(f"{path}: not a calibration.json of scripts/calibrate_simulator.py ({e})") from None

    def describe(self) -> str:
        parts = [self.model or "any model", self.gpu or "any GPU", f"quantization {self.quantization}",
                 f"workload {self.workload}"]
        return ", ".join(parts)

    def describe_kernels(self) -> str:
        """Where the quantized kernels' factors came from ('' when the calibration has none)."""
        if not self.kernel_methods:
            return ""
        return (f"The weight-read factors of {', '.join(self.kernel_methods)} were fitted on `{self.kernel_store}` "
                "(cells of another store, not compared here): those quantizations' points here are held out too.")

    def fitted(self, table: pd.DataFrame) -> pd.Series:
        """Per matched point of a comparison table: True when the calibration was fitted on it."""
        mask = pd.Series(True, index=table.index)
        for axis, value in (("quantization", self.quantization), ("workload", self.workload), ("model", self.model),
                            ("gpu", self.gpu)):
            if value is not None:
                mask &= _axis_values(table, axis) == value
        return mask


def _axis_values(table: pd.DataFrame, axis: str) -> pd.Series:
    """An axis of the comparison table: a key column, or A's side when it is the compared axis."""
    return (table[axis] if axis in table.columns else table[f"{axis}_a"]).astype(str)


def _variant_of(table: pd.DataFrame) -> pd.Series:
    """What tells A's series apart from the others of its point (`` [enforce_eager=true]``), or ''."""
    if "series_a" not in table:
        return pd.Series("", index=table.index, dtype=object)
    axes = pd.DataFrame({"series": table["series_a"].astype(str), **{a: _axis_values(table, a)
                                                                     for a in ("model", "quantization", "gpu")}})
    return series_suffixes(axes)


def _summary(t: pd.DataFrame, group: str, held_out: bool) -> dict:
    out = {"group": group, "held_out": held_out, "points": len(t)}
    for _name, m in ERROR_METRICS:
        err = t[f"change_{m}_pct"].abs().dropna()
        out[f"{m}_median_abs_error_pct"] = float(err.median()) if len(err) else float("nan")
        out[f"{m}_max_abs_error_pct"] = float(err.max()) if len(err) else float("nan")
    return out


def prediction_errors(table: pd.DataFrame, selection: FitSelection) -> pd.DataFrame:
    """One row per (held out or fitted, quantization [variant] × workload) group, then one per side in all
    and, when A's points of a side ran on several engines, one per engine:
    ``group``, ``held_out``, ``points`` and, per ``ERROR_METRICS`` metric, the median and largest
    absolute error (%). Held-out rows first."""
    fitted = selection.fitted(table)
    rows = []
    for held_out, side in ((True, table[~fitted]), (False, table[fitted])):
        if side.empty:
            continue
        labels = _axis_values(side, "quantization") + _variant_of(side) + " · " + _axis_values(side, "workload")
        for label, t in side.groupby(labels, sort=True):
            rows.append(_summary(t, str(label), held_out))
        rows.append(_summary(side, "all held out" if held_out else "all fitted", held_out))
        engines = side["engine_a"].astype(str) if "engine_a" in side else pd.Series(dtype=str)
        if engines.nunique() > 1:  # e.g. vLLM and transformers cells against one vLLM-like model
            for engine, t in side.groupby(engines, sort=True):
                rows.append(_summary(t, f"{'held out' if held_out else 'fitted'}, {engine} engine", held_out))
    return pd.DataFrame(rows)


def interval_coverage(table: pd.DataFrame, selection: FitSelection) -> pd.DataFrame:
    """How often the 90% prediction intervals of ``orchestrator.active.predictor`` cover the
    measurement on the held-out points, with the fitted points as the only measured ones (what an
    active sweep would predict had it measured just the calibration's cells): per ``ERROR_METRICS``
    metric, ``points`` held out, ``coverage_pct``, ``median_half_width_pct`` and the corrected
    prediction's ``median_abs_error_pct`` beside the raw prediction's (B). Empty without held-out
    or fitted points."""
    from orchestrator.active.predictor import GridCell, ResidualPredictor

    fitted = selection.fitted(table)
    if fitted.all() or not fitted.any():
        return pd.DataFrame()
    quant = _axis_values(table, "quantization")
    base = _axis_values(table, "model") + "/" + quant + "/" + _axis_values(table, "gpu")
    variant, workload = _variant_of(table).str.strip(" []"), _axis_values(table, "workload")
    rows = []
    for name, m in ERROR_METRICS:
        ok = table[f"{m}_a"].notna() & table[f"{m}_b"].notna() & (table[f"{m}_b"] > 0) & (table[f"{m}_a"] > 0)
        measured = {str(i): float(table.at[i, f"{m}_a"]) for i in table.index[ok & fitted]}
        held = list(table.index[ok & ~fitted])
        if not held or not measured:
            continue
        cells = [GridCell(key=str(i), base=base[i], variant=variant[i], workload=workload[i],
                          batch_size=int(table.at[i, "batch_size"]), quantization=quant[i],
                          simulated=float(table.at[i, f"{m}_b"])) for i in table.index[ok]]
        predictor = ResidualPredictor(cells, measured)
        preds = {i: predictor.predict(str(i)) for i in held}
        truth = {i: float(table.at[i, f"{m}_a"]) for i in held}
        halves = pd.Series([p.relative_half_width for p in preds.values()])
        errors = pd.Series([abs(p.value / truth[i] - 1) for i, p in preds.items()])
        rows.append({
            "metric": name, "points": len(held),
            "coverage_pct": 100.0 * sum(p.low <= truth[i] <= p.high for i, p in preds.items()) / len(held),
            "median_half_width_pct": 100.0 * float(halves.median()),
            "median_abs_error_pct": 100.0 * float(errors.median()),
            "raw_median_abs_error_pct": float(table.loc[held, f"change_{m}_pct"].abs().median()),
        })
    return pd.DataFrame(rows)
