"""The numbers a reader should take away from a batch-size sweep, computed from its points.

- ``energy_knees``: per offline series, gross J per output token at the smallest batch, at the
  **knee** — the first batch size after which the next swept batch saves less than
  ``KNEE_SAVING`` (10%) of J/token — and at the largest batch;
- ``slo_ranges``: per online series (one offered rate), which max-num-seqs values meet the
  latency SLOs unsaturated (``recommend.eligible_mask``) and why each other one fails
  (saturated, or its TTFT / TPOT p99 in ms over the objective);
- ``quant_ratios``: per quantized series, its J/output token ÷ that of the unquantized series of
  the same model, GPU and workload, on the same engine with the same engine options where one
  ran (eager is compared with eager), else on the same engine with the fewest options differing,
  else on another engine (bitsandbytes on transformers against vLLM fp16), and names what
  differs, at the smallest and the largest batch both ran.

Each result says whether its numbers are simulated (modeled, shown with †).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd

from orchestrator.analysis.recommend import Slo, eligible_mask
from orchestrator.analysis.series_labels import option_text
from orchestrator.store.schema import OFFERED_RATE_RPS, SATURATED, TPOT_P99_MS, TTFT_P99_MS

KNEE_SAVING = 0.10
J_TOK = "energy_per_output_token_j"


@dataclass(frozen=True)
class EnergyKnee:
    """J per output token (gross) of one offline series at its smallest, knee and largest batch."""

    series: str
    workload: str
    first_batch: int
    first_j_per_tok: float
    knee_batch: int
    knee_j_per_tok: float
    last_batch: int
    last_j_per_tok: float
    simulated: bool


@dataclass(frozen=True)
class SloRange:
    """Which batch sizes of one online series meet the SLOs; ``failures``: batch -> why not;
    ``passing_j_per_tok``: gross J per output token of each passing batch size (NaN: no energy)."""

    series: str
    workload: str
    offered_rate_rps: float
    passing: tuple[int, ...]
    failures: tuple[tuple[int, str], ...]
    simulated: bool
    passing_j_per_tok: tuple[float, ...] = ()
    knob: str = "max-num-seqs"  # what batch size sets in the series' engine ('' for none: an endpoint)

    @property
    def cheapest(self) -> tuple[int, float] | None:
        """(batch size, J/output token) of the passing batch size that spends least energy per
        token, or None when no passing one has energy."""
        known = [(j, b) for b, j in zip(self.passing, self.passing_j_per_tok) if not math.isnan(j)]
        if not known:
            return None
        j, b = min(known)
        return b, j


@dataclass(frozen=True)
class QuantRatio:
    """J/output token of a quantized series ÷ the unquantized one, at a batch both ran."""

    series: str
    base_series: str
    workload: str
    batch_size: int
    j_per_tok: float
    base_j_per_tok: float
    simulated: bool
    differs: tuple[str, ...] = ()  # engine options where the base differs, as the quantized series ran them

    @property
    def ratio(self) -> float:
        return self.j_per_tok / self.base_j_per_tok


def _series_groups(points: pd.DataFrame, offline: bool):
    rows = points[(points["arrival"] == "offline") == offline]
    for (series, workload), g in rows.groupby(["series", "workload"], sort=True):
        yield series, workload, g.sort_values("batch_size")


def energy_knees(points: pd.DataFrame, saving: float = KNEE_SAVING) -> list[EnergyKnee]:
    """See the module doc; series without energy at two batch sizes are left out."""
    out = []
    for series, workload, g in _series_groups(points, offline=True):
        g = g[g["energy_available"] & g[J_TOK].notna()]
        if len(g) < 2:
            continue
        bs, j = list(g["batch_size"].astype(int)), list(g[J_TOK].astype(float))
        knee = next((i for i in range(len(j) - 1) if j[i + 1] > (1.0 - saving) * j[i]), len(j) - 1)
        out.append(EnergyKnee(series, workload, bs[0], j[0], bs[knee], j[knee], bs[-1], j[-1],
                              bool(g["simulated"].any())))
    return out


def _why_not(p: pd.Series, slo: Slo) -> str:
    if p[SATURATED] is True or p[SATURATED] == 1:
        return SATURATED
    parts = []
    if slo.ttft_p99_ms is not None and not p[TTFT_P99_MS] <= slo.ttft_p99_ms:
        parts.append(f"TTFT p99 {p['ttft_p99_ms']:,.0f} ms")
    if slo.tpot_p99_ms is not None and not p[TPOT_P99_MS] <= slo.tpot_p99_ms:
        parts.append(f"TPOT p99 {p['tpot_p99_ms']:,.1f} ms")
    return ", ".join(parts) or "no latency measured"


def slo_ranges(points: pd.DataFrame, slo: Slo) -> list[SloRange]:
    """See the module doc."""
    out = []
    for series, workload, g in _series_groups(points, offline=False):
        ok = eligible_mask(g, slo)
        passing = tuple(int(b) for b in g.loc[ok, "batch_size"])
        energy = g.loc[ok, J_TOK].where(g.loc[ok, "energy_available"].astype(bool))
        failures = tuple((int(p["batch_size"]), _why_not(p, slo)) for _, p in g[~ok].iterrows())
        knob = str(g["batch_knob"].iloc[0]) if "batch_knob" in g else SloRange.knob
        out.append(SloRange(series, workload, float(g[OFFERED_RATE_RPS].iloc[0]), passing, failures,
                            bool(g["simulated"].any()), tuple(float(j) for j in energy.fillna(float("nan"))), knob))
    return out


def quant_ratios(points: pd.DataFrame) -> list[QuantRatio]:
    """See the module doc: two rows per quantized series (smallest and largest common batch)."""
    have = points[points["energy_available"] & points[J_TOK].notna()]
    out = []
    for key, g in have.groupby(["model", "gpu", "workload"], sort=True):
        bases = g[g["quantization"] == "none"]
        if bases.empty:
            continue
        for series, q in g[g["quantization"] != "none"].groupby("series", sort=True):
            base_series, differs = _base_for(q.iloc[0], bases)
            base = bases[bases["series"] == base_series].set_index("batch_size")
            q = q.set_index("batch_size")
            common = sorted(set(q.index) & set(base.index))
            for b in dict.fromkeys([common[0], common[-1]] if common else []):
                out.append(QuantRatio(series, base_series, key[2], int(b), float(q.loc[b, J_TOK]),
                                      float(base.loc[b, J_TOK]),
                                      bool(q.loc[b, "simulated"] or base.loc[b, "simulated"]), differs))
    return out


def _base_for(q: pd.Series, bases: pd.DataFrame) -> tuple[str, tuple[str, ...]]:
    """The unquantized series to compare ``q`` with: on ``q``'s engine with the same engine options,
    else the fewest differing (named as ``q`` ran them), else on another engine (``engine=…`` as
    ``q`` ran it: the engines' options are not comparable)."""
    same = bases[bases["engine"] == q["engine"]]
    if same.empty:
        return str(sorted(bases["series"].unique())[0]), (f"engine={q['engine']}",)
    mine = json.loads(q["engine_options"])
    candidates: list[tuple[str, tuple[str, ...]]] = []  # (series, the options it differs in), by series
    for series, b in same.groupby("series", sort=True):
        theirs = json.loads(b["engine_options"].iloc[0])
        candidates.append((str(series), tuple(option_text(k, mine.get(k)) for k in sorted(set(mine) | set(theirs))
                                              if mine.get(k) != theirs.get(k))))
    return min(candidates, key=lambda c: len(c[1]))  # the first of the fewest differences

