"""``core.steps``: the recorder keeps steps in order with their ragged per-request entries; the
timeline's offsets, per-step totals, ``requests_of``, ``step_of_entry`` and ``context_of_entry``
agree with what was added; a step ending before it starts is refused (and leaves nothing behind); a step's energy is
given for every step or for none; a step without requests is no step."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.core.steps import STEP_SOURCES, StepRecorder, StepTimeline

STEPS = [  # (start, end, entries: (request, prefill, decode))
    (0.00, 0.03, [(0, 512, 0), (1, 100, 0)]),
    (0.03, 0.04, [(0, 0, 1), (1, 0, 1)]),
    (0.04, 0.09, [(0, 0, 1), (1, 0, 2), (2, 900, 0)]),
    (0.20, 0.21, [(2, 0, 1)]),
]


def recorded(energy=None) -> StepTimeline:
    rec = StepRecorder("engine")
    for k, (a, b, entries) in enumerate(STEPS):
        rec.add(a, b, entries, energy_j=None if energy is None else energy[k])
    return rec.timeline()


def test_offsets_and_flat_entries_follow_the_steps():
    tl = recorded()
    assert len(tl) == 4 and tl.source == "engine"
    assert tl.offsets.tolist() == [0, 2, 4, 7, 8]
    assert tl.offsets.dtype == np.int64
    flat = [e for _, _, entries in STEPS for e in entries]
    assert tl.request_index.tolist() == [e[0] for e in flat]
    assert tl.request_prefill.tolist() == [e[1] for e in flat]
    assert tl.request_decode.tolist() == [e[2] for e in flat]
    assert tl.start_s.tolist() == [s[0] for s in STEPS] and tl.end_s.tolist() == [s[1] for s in STEPS]
    assert tl.energy_j is None


def test_per_step_totals():
    tl = recorded()
    assert tl.prefill_tokens.tolist() == [612, 0, 900, 0]
    assert tl.decode_tokens.tolist() == [0, 2, 3, 1]
    # the totals are the per-step sums of the flat entries
    for k, (_, _, entries) in enumerate(STEPS):
        assert tl.prefill_tokens[k] == sum(e[1] for e in entries)
        assert tl.decode_tokens[k] == sum(e[2] for e in entries)


def test_requests_of_and_step_of_entry():
    tl = recorded()
    for k, (_, _, entries) in enumerate(STEPS):
        assert tl.requests_of(k) == entries
    assert tl.step_of_entry.tolist() == [0, 0, 1, 1, 2, 2, 2, 3]
    # each flat entry's step, read back through requests_of
    for j, k in enumerate(tl.step_of_entry.tolist()):
        assert (int(tl.request_index[j]), int(tl.request_prefill[j]), int(tl.request_decode[j])) in tl.requests_of(k)


def test_context_of_entry_counts_each_requests_earlier_tokens():
    tl = recorded()
    # step 0: nothing before; step 1: 512 and 100 prompt tokens; step 2: 513, 101 and request 2's
    # first; step 3: request 2's 900 prompt tokens
    assert tl.context_of_entry.tolist() == [0, 0, 512, 100, 513, 101, 0, 900]
    # the same, counted the slow way
    seen: dict = {}
    slow = []
    for _, _, entries in STEPS:
        slow += [seen.get(r, 0) for r, _, _ in entries]
        for r, p, d in entries:
            seen[r] = seen.get(r, 0) + p + d
    assert tl.context_of_entry.tolist() == slow
    assert StepRecorder("engine").timeline().context_of_entry.size == 0


def test_a_step_that_ends_before_it_starts_is_refused_and_leaves_nothing():
    rec = StepRecorder("simulated")
    rec.add(0.0, 0.01, [(0, 10, 0)], energy_j=2.0)
    with pytest.raises(ValueError, match="before it starts"):
        rec.add(0.02, 0.015, [(0, 0, 1)], energy_j=1.0)
    rec.add(0.01, 0.01, [(0, 0, 1)], energy_j=0.0)  # a zero-length step is fine
    tl = rec.timeline()
    assert len(tl) == 2 and tl.end_s.tolist() == [0.01, 0.01]
    assert tl.offsets.tolist() == [0, 1, 2] and tl.energy_j.tolist() == [2.0, 0.0]


def test_energy_is_given_for_every_step_or_none():
    tl = recorded(energy=[3.0, 1.0, 2.5, 0.5])
    assert tl.energy_j.tolist() == [3.0, 1.0, 2.5, 0.5] and tl.energy_j.dtype == float

    with_energy = StepRecorder("simulated")
    with_energy.add(0.0, 0.01, [(0, 5, 0)], energy_j=1.0)
    with pytest.raises(ValueError, match="every step or for none"):
        with_energy.add(0.01, 0.02, [(0, 0, 1)])
    without = StepRecorder("engine")
    without.add(0.0, 0.01, [(0, 5, 0)])
    with pytest.raises(ValueError, match="every step or for none"):
        without.add(0.01, 0.02, [(0, 0, 1)], energy_j=1.0)
    # the refused steps were not kept
    assert len(with_energy.timeline()) == 1 and len(without.timeline()) == 1
    assert with_energy.timeline().energy_j.tolist() == [1.0] and without.timeline().energy_j is None


def test_a_step_without_requests_is_skipped():
    rec = StepRecorder("engine")
    rec.add(0.0, 0.01, [])
    rec.add(0.0, 0.01, iter([]))  # any iterable
    rec.add(0.01, 0.02, iter([(4, 7, 0)]))
    rec.add(0.02, 0.03, [])
    tl = rec.timeline()
    assert len(tl) == 1 and tl.requests_of(0) == [(4, 7, 0)]
    assert tl.offsets.tolist() == [0, 1] and tl.start_s.tolist() == [0.01]


def test_a_skipped_empty_step_does_not_fix_whether_energy_is_given():
    rec = StepRecorder("simulated")
    rec.add(0.0, 0.01, [], energy_j=None)  # nothing computed: no step
    rec.add(0.01, 0.02, [(0, 3, 0)], energy_j=4.0)
    rec.add(0.02, 0.03, [(0, 0, 1)], energy_j=1.0)
    assert rec.timeline().energy_j.tolist() == [4.0, 1.0]


def test_an_empty_timeline():
    tl = StepRecorder("reconstructed").timeline()
    assert len(tl) == 0 and tl.offsets.tolist() == [0]
    assert tl.prefill_tokens.size == 0 and tl.decode_tokens.size == 0 and tl.step_of_entry.size == 0
    assert tl.request_index.size == 0 and tl.energy_j is None


def test_the_source_must_be_known():
    assert set(STEP_SOURCES) == {"engine", "simulated", "reconstructed"}
    with pytest.raises(ValueError, match="step source"):
        StepRecorder("measured")
