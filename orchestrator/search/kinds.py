"""What differs between search kinds, by ``SearchKind``: ``SEARCH_KINDS``, built once here,
read-only (a ``MappingProxyType`` of frozen ``SearchKindSpec``s). ``entry`` and ``driver`` look a
kind up here instead of branching on it; a new kind is a new ``SearchKind`` member, its goal and
study factories, and one entry below (``tests/unit/search`` checks every member has one).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

from orchestrator.config.search import SearchConfig, SearchKind
from orchestrator.search.capacity import capacity_goal, capacity_study, check_rate_axis
from orchestrator.search.contracts import Goal, Study
from orchestrator.search.energy_slo import energy_goal, energy_study
from orchestrator.search.space import Axis, Space

GoalFactory = Callable[[SearchConfig], Goal]
"""The search's settings -> its goal."""
StudyFactory = Callable[[Space, SearchConfig, int], Study[Any]]
"""(space, settings, trials per round) -> a fresh study (one per ``SearchLoop.run``)."""
SpaceCheck = Callable[[Sequence[Axis]], None]
"""Raises ``ConfigError`` when the space's axes cannot serve the kind; returns None otherwise."""


def any_axes(axes: Sequence[Axis]) -> None:
    """Every space serves (the energy search: any product of axes)."""


@dataclass(frozen=True)
class SearchKindSpec:
    """One search kind: ``goal`` and ``study`` factories, ``check_space`` (run on the space before
    any cell), and ``headroom``: whether a pick of this kind is followed by a capacity search over
    ``search.headroom_rates_rps`` when they are set."""

    kind: SearchKind
    goal: GoalFactory
    study: StudyFactory
    check_space: SpaceCheck
    headroom: bool


def _specs() -> Mapping[SearchKind, SearchKindSpec]:
    specs = (
        SearchKindSpec(SearchKind.energy_slo, energy_goal, energy_study, check_space=any_axes, headroom=True),
        SearchKindSpec(SearchKind.capacity, capacity_goal, capacity_study, check_space=check_rate_axis,
                       headroom=False),
    )
    return MappingProxyType({spec.kind: spec for spec in specs})


SEARCH_KINDS: Mapping[SearchKind, SearchKindSpec] = _specs()
"""Every ``SearchKind`` -> its ``SearchKindSpec`` (read-only)."""
