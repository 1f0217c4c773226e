"""A trial's measured result, read back from the store as a typed ``Outcome`` (the only place
the search names ``runs`` columns), and its ``Verdict`` against the SLOs: feasible, or the
reasons it is not (SLO, saturation, a failed status) with how far each is violated.

A cell is feasible when its status is ``ok``, it is not ``saturated``, its energy is valid and
both p99 latencies are within the SLOs. Violations are relative (``p99 / SLO - 1``; 1.0 for
saturation, ``FAILED_VIOLATION`` for a cell that produced no measurement): Optuna's constrained
TPE ranks infeasible trials by their summed violation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Dict, Iterable, List, Optional, Tuple

from orchestrator.config.search import Objective, SloConfig
from orchestrator.store.schema import (
    ACHIEVED_RATE_RPS,
    ENERGY_PER_1K_OUTPUT_TOKENS_J,
    ENERGY_PER_REQUEST_J,
    NET_ENERGY_PER_1K_OUTPUT_TOKENS_J,
    NET_ENERGY_PER_REQUEST_J,
    OFFERED_RATE_RPS,
    OUTPUT_THROUGHPUT_TOK_S,
    SATURATED,
    TPOT_P99_MS,
    TTFT_P99_MS,
)
from orchestrator.store.sweep_store import Store

FAILED_VIOLATION = 10.0


class Reason(str, Enum):
    """Why a trial is ruled out."""

    ttft = "ttft_slo"
    tpot = "tpot_slo"
    saturated = SATURATED
    failed = "failed"  # not ok (unsupported, infeasible VRAM, oom, ...) or no valid energy


@dataclass(frozen=True)
class Outcome:
    """What the search needs of one complete cell (units in the names)."""

    cell_id: str
    status: str
    error: str
    saturated: bool
    ttft_p99_ms: float
    tpot_p99_ms: float
    energy_per_output_token_j: float
    net_energy_per_output_token_j: float
    energy_per_request_j: float
    net_energy_per_request_j: float
    offered_rate_rps: float
    achieved_rate_rps: float
    output_throughput_tok_s: float
    gpu_uuid: str = ""  # the physical GPU that measured it ("" when none: simulated, older stores)

    def energy_per_token_j(self, objective: Objective) -> float:
        """J per output token, gross or net (NaN when there is none)."""
        return self.net_energy_per_output_token_j if objective is Objective.net else self.energy_per_output_token_j

    def energy_per_request(self, objective: Objective) -> float:
        """J per request, gross or net (NaN when there is none)."""
        return self.net_energy_per_request_j if objective is Objective.net else self.energy_per_request_j


@dataclass(frozen=True)
class Verdict:
    """A trial against the SLOs: ``violations`` (>0 violated, <=0 met) in a fixed order
    (ttft, tpot, saturation, failure), ``reasons`` the violated ones."""

    violations: Tuple[float, float, float, float]
    reasons: Tuple[Reason, ...]

    @property
    def feasible(self) -> bool:
        return not self.reasons


_COLUMNS = {
    "status": "status", "error": "error", SATURATED: SATURATED, TTFT_P99_MS: TTFT_P99_MS,
    TPOT_P99_MS: TPOT_P99_MS, "energy_per_output_token_j": ENERGY_PER_1K_OUTPUT_TOKENS_J,
    "net_energy_per_output_token_j": NET_ENERGY_PER_1K_OUTPUT_TOKENS_J,
    ENERGY_PER_REQUEST_J: ENERGY_PER_REQUEST_J, NET_ENERGY_PER_REQUEST_J: NET_ENERGY_PER_REQUEST_J,
    OFFERED_RATE_RPS: OFFERED_RATE_RPS, ACHIEVED_RATE_RPS: ACHIEVED_RATE_RPS,
    OUTPUT_THROUGHPUT_TOK_S: OUTPUT_THROUGHPUT_TOK_S, "gpu_uuid": "gpu_uuid",
}
"""Outcome field -> runs column (per-1k-token columns are divided by 1000)."""
_PER_1K = ("energy_per_output_token_j", "net_energy_per_output_token_j")


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def read_outcomes(store: Store, cell_ids: Iterable[str]) -> Dict[str, Outcome]:
    """cell id -> ``Outcome`` of every complete cell among ``cell_ids``."""
    table = store.runs_of(cell_ids, ["cell_id", *dict.fromkeys(_COLUMNS.values())])
    rows = table.to_pylist()
    out: Dict[str, Outcome] = {}
    for row in rows:
        values: Dict[str, Any] = {}
        for name, column in _COLUMNS.items():
            value = row[column]
            if name in ("status", "error", "gpu_uuid"):
                values[name] = value or ""
            elif name == SATURATED:
                values[name] = bool(value)
            else:
                values[name] = _number(value) / (1000.0 if name in _PER_1K else 1.0)
        out[row["cell_id"]] = Outcome(cell_id=row["cell_id"], **values)
    return out


def slo_targets_ms(slo: SloConfig) -> Tuple[float, float]:
    """(p99 TTFT, p99 TPOT) targets in ms of a validated ``SloConfig`` (both are required)."""
    if slo.ttft_p99_ms is None or slo.tpot_p99_ms is None:
        raise ValueError(f"a search needs both p99 SLO targets (SloConfig.validate): {slo}")
    return float(slo.ttft_p99_ms), float(slo.tpot_p99_ms)


def verdict(outcome: Optional[Outcome], slo: SloConfig, objective: Objective = Objective.gross) -> Verdict:
    """The outcome against the SLOs (a missing outcome is a failure)."""
    if outcome is None or outcome.status != "ok" or not math.isfinite(outcome.energy_per_token_j(objective)):
        return Verdict((0.0, 0.0, 0.0, FAILED_VIOLATION), (Reason.failed,))
    ttft_slo_ms, tpot_slo_ms = slo_targets_ms(slo)
    ttft = _relative(outcome.ttft_p99_ms, ttft_slo_ms)
    tpot = _relative(outcome.tpot_p99_ms, tpot_slo_ms)
    sat = 1.0 if outcome.saturated else -1.0
    reasons: List[Reason] = [r for r, v in ((Reason.ttft, ttft), (Reason.tpot, tpot), (Reason.saturated, sat)) if v > 0]
    return Verdict((ttft, tpot, sat, 0.0), tuple(reasons))


@dataclass(frozen=True)
class SloJudge:
    """The judgement every search kind shares (the base of its goal, ``contracts.Goal``): a
    trial is feasible when it is ok with a valid ``objective`` energy, unsaturated and within both
    p99 ``slo`` targets (``verdict``)."""

    slo: SloConfig
    objective: Objective = Objective.gross

    def judge(self, outcome: Optional[Outcome]) -> Verdict:
        return verdict(outcome, self.slo, self.objective)


def _relative(value_ms: float, target_ms: float) -> float:
    """``value / target - 1`` (a missing percentile counts as violated by FAILED_VIOLATION)."""
    if not math.isfinite(value_ms):
        return FAILED_VIOLATION
    return value_ms / target_ms - 1.0


def combined(verdicts: Iterable[Verdict]) -> Verdict:
    """Several repeats of one candidate: each violation is the worst repeat's, the reasons
    their union (a point that violates once is infeasible)."""
    vs = list(verdicts)
    worst = tuple(max(v.violations[i] for v in vs) for i in range(4))
    reasons = tuple(dict.fromkeys(r for v in vs for r in v.reasons))
    return Verdict(worst, reasons)  # type: ignore[arg-type]
