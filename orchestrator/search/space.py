"""The search space: the sweep's jobs (one override list each, exactly as ``+sweep=`` would run
them) as ``Candidate``s, and the axes they vary along.

An axis whose values are all numbers (``batch_size``, ``engine.vllm.max_num_batched_tokens``,
``workload.rate_rps``) is **ordered**: the sampler sees the index of a value in ascending order,
an integer, so its model knows 8 lies between 4 and 16 whatever the spacing of the list; any
other axis (``quantization``, ``engine.vllm.enable_chunked_prefill``) is categorical. A search
needs one product of axes (``hydra.sweeper.params``), not a union of grids.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from orchestrator.config.root import CellConfig
from orchestrator.driver.overrides import override_key, parse_override, value_text
from orchestrator.errors import ConfigError

Params = Tuple[Tuple[str, str], ...]
"""(axis key, value text) for every axis of the space, in axis order."""


@dataclass(frozen=True)
class Axis:
    """One axis: its key (as on the command line) and its values, ascending when ``ordered``."""

    key: str
    values: Tuple[str, ...]
    ordered: bool

    def index(self, value: str) -> int:
        return self.values.index(value)


@dataclass(frozen=True)
class Candidate:
    """One job of the grid: its values on the axes and its cell config."""

    params: Params
    config: CellConfig
    job: Tuple[str, ...] = ()  # the job's override list

    def value(self, key: str) -> str:
        return dict(self.params)[key]

    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.params) or "(no axis)"


@dataclass(frozen=True)
class Space:
    axes: Tuple[Axis, ...]
    candidates: Tuple[Candidate, ...]

    def candidate(self, params: Mapping[str, str]) -> Candidate:
        key = tuple((a.key, str(params[a.key])) for a in self.axes)
        return self._by_params()[key]

    def _by_params(self) -> Dict[Params, Candidate]:
        cached = self.__dict__.get("_index")
        if cached is None:
            cached = {c.params: c for c in self.candidates}
            object.__setattr__(self, "_index", cached)
        return cached


def _number(text: str) -> Optional[float]:
    """The number ``text`` is (int or float), else None (booleans are not numbers)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def job_params(job: Sequence[str]) -> Dict[str, str]:
    """A job's override list as {key: value text}."""
    out: Dict[str, str] = {}
    for text in job:
        ov = parse_override(text)
        out[override_key(ov)] = value_text(ov)
    return out


def axes_of(jobs: Sequence[Sequence[str]]) -> Tuple[Axis, ...]:
    """The keys that take more than one value over the jobs, in first-seen order."""
    seen: Dict[str, List[str]] = {}
    for job in jobs:
        for key, value in job_params(job).items():
            values = seen.setdefault(key, [])
            if value not in values:
                values.append(value)
    axes = []
    for key, values in seen.items():
        if len(values) < 2:
            continue
        numbers = [_number(v) for v in values]
        if all(n is not None for n in numbers):
            ordered = tuple(v for _, v in sorted(zip(numbers, values)))
            axes.append(Axis(key, ordered, True))
        else:
            axes.append(Axis(key, tuple(values), False))
    return tuple(axes)


def space_of(jobs: Sequence[Sequence[str]], configs: Sequence[CellConfig]) -> Space:
    """The space of a sweep's jobs and their cell configs (one per job, in order). A set of
    jobs that is not one product of its axes (a union of grids) is a ``ConfigError``."""
    if len(configs) != len(jobs):
        raise ConfigError(f"a search needs one cell per job ({len(jobs)} jobs, {len(configs)} cells): set repeats=1")
    axes = axes_of(jobs)
    candidates = []
    for job, cfg in zip(jobs, configs):
        given = job_params(job)
        candidates.append(Candidate(tuple((a.key, given[a.key]) for a in axes if a.key in given), cfg, tuple(job)))
    product = reduce(lambda n, a: n * len(a.values), axes, 1)
    keys = {c.params for c in candidates}
    if len(keys) != product or any(len(c.params) != len(axes) for c in candidates):
        raise ConfigError("a search needs one product of axes (hydra.sweeper.params), not a union of grids "
                          f"({len(keys)} distinct jobs, {product} combinations of their axes)")
    return Space(axes, tuple(candidates))


def jobs_of(params: Mapping[str, str], fixed: Sequence[str] = ()) -> List[List[str]]:
    """The job override lists of axes ``{key: "a,b,c"}`` plus ``fixed`` overrides, as Hydra's
    sweeper makes them (scripts and tests; the command line goes through ``hydra_entry``)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    texts = [*fixed, *(f"{k}={v}" for k, v in params.items())]
    overrides = OverridesParser.create().parse_overrides(texts)
    return BasicSweeper.split_arguments(overrides, None)[0]
