"""The vLLM step log (``engines.vllm.step_recorder``) read back: the file format the recording
scheduler writes, steps of other cells and other requests left out, a step's start after the
previous step's end (async scheduling overlaps scheduling with the previous step), request ids
mapped to the plan's indices; and the prefill/decode split of scheduled tokens."""
from __future__ import annotations

import json
import types

from orchestrator.engines.vllm import step_recorder as sr


def write(path, steps):
    path.write_text("".join(json.dumps(s) + "\n" for s in steps))


def test_steps_are_read_back_for_the_cells_requests_only(tmp_path):
    log = tmp_path / "steps.jsonl"
    write(log, [
        [0.50, 0.60, [["cmpl-orch0-99-0-abcdefgh", 100, 0]]],  # an earlier cell's request
        [1.00, 1.05, [["cmpl-orch1-3-0-aaaaaaaa", 512, 0]]],
        [1.04, 1.08, [["cmpl-orch1-3-0-aaaaaaaa", 0, 1], ["cmpl-orch1-4-0-bbbbbbbb", 200, 0]]],
        [1.07, 1.10, [["cmpl-orch1-3-0-aaaaaaaa", 0, 1], ["cmpl-orch1-4-0-bbbbbbbb", 0, 1], ["cmpl-orch0-4-0-c", 0, 1]]],
        [5.00, 5.01, [["cmpl-orch1-3-0-aaaaaaaa", 0, 1]]],  # after the cell
    ])
    log.write_text(log.read_text() + '[5.5, 5.6, [["cmpl-orch1-3')  # a line still being written
    index = lambda rid: sr.server_request_index(rid, "orch1")  # noqa: E731
    tl = sr.read_steps(log, 0.9, 2.0, index, [3, 4])
    assert tl is not None and tl.source == "engine" and len(tl) == 3
    assert tl.start_s.tolist() == [1.00, 1.05, 1.08]  # scheduled while the previous step ran: starts at its end
    assert tl.end_s.tolist() == [1.05, 1.08, 1.10]
    assert tl.requests_of(1) == [(3, 0, 1), (4, 200, 0)]
    assert tl.requests_of(2) == [(3, 0, 1), (4, 0, 1)]  # the previous cell's straggler is left out
    assert tl.prefill_tokens.tolist() == [512, 200, 0] and tl.decode_tokens.tolist() == [0, 1, 2]
    assert sr.read_steps(log, 3.0, 4.0, index, [3, 4]) is None
    assert sr.read_steps(tmp_path / "missing.jsonl", 0, 9, index, [3]) is None


def test_offline_ids_map_through_the_engines_suffix(tmp_path):
    log = tmp_path / "steps.jsonl"
    write(log, [[0.0, 0.1, [["17-1a2b3c4d", 64, 0], ["18-5e6f7a8b", 64, 0]]]])
    ids = {"17": 0, "18": 1}
    tl = sr.read_steps(log, 0.0, 1.0, lambda rid: ids.get(rid.rsplit("-", 1)[0]), [0, 1])
    assert tl.requests_of(0) == [(0, 64, 0), (1, 64, 0)]


def test_scheduled_tokens_split_into_prefill_and_decode():
    # the scheduler has already advanced num_computed_tokens by the n tokens it scheduled
    chunk = types.SimpleNamespace(num_prompt_tokens=1000, num_computed_tokens=512)
    assert sr._split(chunk, 512) == (512, 0)  # a first prefill chunk
    last = types.SimpleNamespace(num_prompt_tokens=1000, num_computed_tokens=1000)
    assert sr._split(last, 488) == (488, 0)  # the last chunk
    cached = types.SimpleNamespace(num_prompt_tokens=1000, num_computed_tokens=1000)
    assert sr._split(cached, 8) == (8, 0)  # 992 tokens came from the cache: only 8 computed
    decoding = types.SimpleNamespace(num_prompt_tokens=1000, num_computed_tokens=1005)
    assert sr._split(decoding, 1) == (0, 1)
    # resumed after a preemption: the prompt and 200 generated tokens computed again, all prefill work
    resumed = types.SimpleNamespace(num_prompt_tokens=1000, num_computed_tokens=1200, spec_token_ids=[])
    assert sr._split(resumed, 1200) == (1200, 0)
    assert sr.server_request_index("cmpl-orch3-12-0-deadbeef", "orch3") == 12
    assert sr.server_request_index("cmpl-orch2-12-0-deadbeef", "orch3") is None  # another cell's request
    assert sr.server_request_index("x", "orch3") is None


def test_the_class_is_built_only_when_asked_for():
    import pytest

    with pytest.raises(AttributeError):
        sr.SomethingElse  # noqa: B018
    assert sr.SCHEDULER_CLS.rsplit(".", 1)[1] == "RecordingScheduler"
    assert sr.SYNC_SCHEDULER_CLS.rsplit(".", 1)[1] == "RecordingSyncScheduler"
    # both are built from vLLM on first use only: on vLLM's scheduler where vLLM is installed (the GPU
    # machine), else asking for one fails on vLLM's import (here)
    try:
        from vllm.v1.core.sched.scheduler import Scheduler
    except ImportError:
        with pytest.raises(ImportError):
            sr.RecordingSyncScheduler  # noqa: B018
    else:
        assert issubclass(sr.RecordingSyncScheduler, Scheduler) and issubclass(sr.RecordingScheduler, Scheduler)
