"""A cell's engine steps: when each ran (the cell's monotonic clock, s) and what it computed —
prompt (prefill) tokens and generated (decode) tokens, in total and per request.

A step computes, for each request in it, some of its prompt tokens (a chunked prefill computes a
prompt over several steps; the step that computes the last prompt chunk also samples the
request's first token) or one new token of a request already decoding (``decode``: its output
tokens after the first). ``source`` says where the steps come from: ``engine`` (the engine's own
per-step records), ``simulated`` (the simulator's steps, exact) or ``reconstructed`` (from the
per-token timestamps a client recorded: tokens that arrive together come from one step; each
request's prompt is computed in the step of its first token, less its cached tokens).

Per-request tokens are ragged: ``request_index``, ``request_prefill`` and ``request_decode`` are
flat, step ``k`` owning entries ``offsets[k]:offsets[k + 1]``. ``energy_j``: each step's energy
where the engine models it itself (the simulator's power model; None for measured engines, whose
steps' energy comes from the power trace).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Tuple

import numpy as np

STEP_SOURCES = ("engine", "simulated", "reconstructed")


@dataclass
class StepTimeline:
    """The steps of one cell (see module doc); build it with ``StepRecorder``."""

    source: str
    start_s: np.ndarray
    end_s: np.ndarray
    offsets: np.ndarray  # len(steps) + 1
    request_index: np.ndarray
    request_prefill: np.ndarray
    request_decode: np.ndarray
    energy_j: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.start_s.size)

    @property
    def prefill_tokens(self) -> np.ndarray:
        """Prompt tokens computed per step."""
        return np.add.reduceat(self.request_prefill, self.offsets[:-1]) if len(self) else np.zeros(0, np.int64)

    @property
    def decode_tokens(self) -> np.ndarray:
        """Decode tokens computed per step."""
        return np.add.reduceat(self.request_decode, self.offsets[:-1]) if len(self) else np.zeros(0, np.int64)

    @property
    def step_of_entry(self) -> np.ndarray:
        """For each flat entry, the index of its step."""
        return np.repeat(np.arange(len(self)), np.diff(self.offsets))

    @property
    def context_of_entry(self) -> np.ndarray:
        """For each flat entry, the tokens its request had computed in earlier steps (the KV its
        step attends over; a prefix-cache hit's cached tokens are not in the timeline)."""
        tokens = (self.request_prefill + self.request_decode).astype(np.int64)
        order = np.argsort(self.request_index, kind="stable")  # each request's entries in step order
        before = np.cumsum(tokens[order]) - tokens[order]
        r = self.request_index[order]
        first = np.concatenate([[True], r[1:] != r[:-1]]) if r.size else np.zeros(0, bool)
        out = np.empty_like(tokens)
        out[order] = before - np.maximum.accumulate(np.where(first, before, 0))
        return out

    def requests_of(self, k: int) -> List[Tuple[int, int, int]]:
        """(request index, prefill tokens, decode tokens) of step ``k``."""
        a, b = int(self.offsets[k]), int(self.offsets[k + 1])
        return list(zip(self.request_index[a:b].tolist(), self.request_prefill[a:b].tolist(),
                        self.request_decode[a:b].tolist()))


@dataclass
class StepRecorder:
    """Collects steps in order: ``add(start_s, end_s, [(request, prefill, decode), ...])``. Every
    step holds at least one request (an empty step computed nothing)."""

    source: str
    _start: List[float] = field(default_factory=list)
    _end: List[float] = field(default_factory=list)
    _sizes: List[int] = field(default_factory=list)
    _entries: List[Tuple[int, int, int]] = field(default_factory=list)
    _energy: List[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.source not in STEP_SOURCES:
            raise ValueError(f"step source {self.source!r}: one of {', '.join(STEP_SOURCES)}")

    def add(self, start_s: float, end_s: float, entries: Iterable[Tuple[int, int, int]],
            energy_j: Optional[float] = None) -> None:
        """One step; ``energy_j`` where the engine models it (then for every step)."""
        entries = list(entries)
        if not entries:
            return
        if (energy_j is None) != (not self._energy) and self._start:
            raise ValueError("a step's energy is given for every step or for none")
        if end_s < start_s:
            raise ValueError(f"a step ends ({end_s}) before it starts ({start_s})")
        self._start.append(float(start_s))
        self._end.append(float(end_s))
        self._sizes.append(len(entries))
        self._entries.extend(entries)
        if energy_j is not None:
            self._energy.append(float(energy_j))

    def timeline(self) -> StepTimeline:
        entries = np.asarray(self._entries, dtype=np.int64).reshape(-1, 3)
        return StepTimeline(
            source=self.source,
            start_s=np.asarray(self._start, dtype=float),
            end_s=np.asarray(self._end, dtype=float),
            offsets=np.concatenate([[0], np.cumsum(self._sizes, dtype=np.int64)]).astype(np.int64),
            request_index=entries[:, 0].copy(),
            request_prefill=entries[:, 1].copy(),
            request_decode=entries[:, 2].copy(),
            energy_j=np.asarray(self._energy, dtype=float) if self._energy else None,
        )
