"""The Optuna study behind a search (Optuna is imported here only, on the search path).

Sampler: TPE (``optuna.samplers.TPESampler``) with ``constraints_func``: a trial's constraint
values are its SLO violations (``outcome.Verdict``), so the sampler's "good" group holds the
best feasible trials and infeasible ones are ranked by how far they miss; ``multivariate``
(axes are modelled jointly: the feasible batch sizes depend on the quantization);
``constant_liar`` (a round's trials are asked before any is told, so they spread out);
``n_startup_trials`` seeded random trials first. Optuna >= 5 takes the violations as the
trial's constraints (``Trial.set_constraint``); older ones through ``constraints_func``.
Ordered axes are integer indices into their
ascending values (``space``): discrete by construction, with their order known to the sampler.
Everything is seeded (``search.seed``): the same results give the same trials.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Dict, Tuple

from orchestrator.config.search import SearchConfig
from orchestrator.search.outcome import Verdict
from orchestrator.search.space import Candidate, Space
from orchestrator.store.schema import SATURATED

if TYPE_CHECKING:
    from optuna.trial import Trial

VIOLATIONS_ATTR = "slo_violations"
CONSTRAINTS = ("ttft_p99", "tpot_p99", SATURATED, "failed")  # the order of ``Verdict.violations``


def _constraints(trial: Any) -> Tuple[float, ...]:
    return tuple(trial.user_attrs[VIOLATIONS_ATTR])


class OptunaStudy:
    """Asks for candidates, is told their values (to minimise) and SLO verdicts
    (``contracts.Study`` with an Optuna ``Trial`` as the handle)."""

    def __init__(self, space: Space, search: SearchConfig, startup_trials: int) -> None:
        import optuna
        from optuna.distributions import CategoricalDistribution, IntDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space = space
        self.distributions: Dict[str, Any] = {
            a.key: IntDistribution(0, len(a.values) - 1) if a.ordered else CategoricalDistribution(list(a.values))
            for a in space.axes
        }
        self.native = hasattr(optuna.trial.Trial, "set_constraint")
        extra: Dict[str, Any] = {} if self.native else {"constraints_func": _constraints}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=search.seed, n_startup_trials=startup_trials, multivariate=True, constant_liar=True, **extra)
        self.study = optuna.create_study(direction="minimize", sampler=sampler)

    closed = False  # TPE never knows it is done (the loop stops on repeated asks or the budget)

    def ask(self) -> Tuple[Trial, Candidate]:
        """-> (an Optuna trial, the candidate it names)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = self.study.ask(self.distributions)
        values = {a.key: a.values[trial.params[a.key]] if a.ordered else trial.params[a.key] for a in self.space.axes}
        return trial, self.space.candidate(values)

    def tell(self, trial: Trial, value: float, verdict: Verdict) -> None:
        if self.native:
            for name, violation in zip(CONSTRAINTS, verdict.violations):
                trial.set_constraint(name, violation)
        else:
            trial.set_user_attr(VIOLATIONS_ATTR, list(verdict.violations))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.study.tell(trial, value)
