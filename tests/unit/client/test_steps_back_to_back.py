"""Two engine steps whose chunks reach the client closer together than the join window (a large
batch read back to back) are still two steps: a request that already has a token in the step
being built starts the next one."""
from __future__ import annotations

import numpy as np

from orchestrator.client.metrics import RequestRecord
from orchestrator.client.steps import STEP_JOIN_S, reconstruct_steps


def test_a_request_seen_again_starts_the_next_step():
    gap = STEP_JOIN_S / 4  # steps 0.5 ms apart: all events would chain into one step by time alone
    times = [np.array([0.010 + k * gap + 1e-5 * r for k in range(4)]) for r in range(3)]
    recs = [RequestRecord(r, "measured", 0.0, 0.0, times[r][0], times[r][-1], 32, 4, 4, token_times_s=times[r])
            for r in range(3)]
    tl = reconstruct_steps(recs)
    assert len(tl) == 4
    assert tl.requests_of(0) == [(0, 32, 0), (1, 32, 0), (2, 32, 0)]
    assert all(tl.requests_of(k) == [(0, 0, 1), (1, 0, 1), (2, 0, 1)] for k in (1, 2, 3))


def test_a_multi_token_chunk_stays_in_its_step():
    tt = np.array([0.010, 0.020, 0.020, 0.030])  # the second chunk carried two tokens
    tl = reconstruct_steps([RequestRecord(0, "measured", 0.0, 0.0, 0.010, 0.030, 16, 4, 4, token_times_s=tt)])
    assert len(tl) == 3 and tl.requests_of(1) == [(0, 0, 2)]
