"""``workload.source=trace`` (``orchestrator.workloads.trace``) on the real composed config: the
replayed times (recorded / speedup, or re-timed to ``rate_rps``), the window's slice (start_s,
warm-up, a duration shorter and longer than the trace), the offered rate, the prompts a
Mooncake trace's hash ids share, the cut last block, clipping to the context and an Azure
trace's own prompts. Traces are small files written per test."""
from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from orchestrator.app.hydra_entry import typed
from orchestrator.client.workload import SEGMENT_BLOCK, SEGMENT_UNIQUE
from orchestrator.driver.grid import cell_configs, cells
from orchestrator.workloads import plan_for

VOCAB = 512  # model=tiny
BLOCK = 16


@pytest.fixture
def cell(compose):
    """cell(*overrides) -> the CellConfig of the tiny model on the simulator with the sample
    Mooncake workload and the overrides (the trace file resolved and identified by the driver)."""
    def make(*overrides):
        [cfg] = cell_configs([typed(compose(["model=tiny", "engine=simulated", "workload=mooncake_sample",
                                             *overrides]))])
        return cfg
    return make


def plan_of(cfg):
    (c,) = cells([cfg], {})
    return plan_for(cfg, c.cell_id)


def mooncake(path: Path, rows) -> Path:
    """rows: (timestamp ms, input_length, output_length, hash_ids)."""
    path.write_text("".join(json.dumps({"timestamp": t, "input_length": i, "output_length": o, "hash_ids": list(h)})
                            + "\n" for t, i, o, h in rows))
    return path


def trace_args(path: Path, *extra):
    return (f"workload.trace.path={path}", f"workload.trace.block_tokens={BLOCK}", *extra)


def common_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


IRREGULAR_MS = [int(x) for x in np.cumsum(np.random.default_rng(3).exponential(700.0, 40)).round()]
IRREGULAR_MS = [t - IRREGULAR_MS[0] + 1_700_000 for t in IRREGULAR_MS]  # an absolute clock: replay starts at 0


@pytest.mark.parametrize("speedup", [1.0, 2.0, 0.5])
def test_replayed_arrivals_are_the_recorded_times_over_speedup(tmp_path, cell, speedup):
    path = mooncake(tmp_path / "t.jsonl", [(t, 20, 8, []) for t in IRREGULAR_MS])
    plan = plan_of(cell(*trace_args(path, "workload.warmup_requests=0", "workload.duration_s=100000",
                                    f"workload.trace.speedup={speedup}")))
    recorded = (np.array(IRREGULAR_MS) - IRREGULAR_MS[0]) / 1e3
    assert len(plan.requests) == len(IRREGULAR_MS)
    assert [r.arrival_s for r in plan.requests] == pytest.approx((recorded / speedup).tolist())
    assert all(r.phase == "measured" for r in plan.requests) and plan.measured_start_s == 0.0


@pytest.mark.parametrize("rate", [3.0, 0.25])
def test_rate_rps_retimes_the_whole_trace_to_that_mean_rate_keeping_its_shape(tmp_path, cell, rate):
    path = mooncake(tmp_path / "t.jsonl", [(t, 20, 8, []) for t in IRREGULAR_MS])
    plan = plan_of(cell(*trace_args(path, "workload.warmup_requests=0", "workload.duration_s=100000",
                                    f"workload.trace.rate_rps={rate}")))
    arrivals = np.array([r.arrival_s for r in plan.requests])
    recorded = (np.array(IRREGULAR_MS) - IRREGULAR_MS[0]) / 1e3
    n = len(arrivals)
    assert n == len(IRREGULAR_MS)
    # the whole trace's mean rate (n - 1 gaps over its span) is rate_rps
    assert (n - 1) / (arrivals[-1] - arrivals[0]) == pytest.approx(rate)
    # every gap scaled alike: the trace's burstiness kept
    scale = arrivals[1:] / recorded[1:]
    assert scale.tolist() == pytest.approx([scale[0]] * (n - 1))
    # the whole trace in the window: the window offers exactly rate_rps
    assert plan.offered_rate_rps == pytest.approx(rate)


SLICE_S = [0, 1, 2, 3, 4, 5, 6, 6.5, 7, 9, 12, 12.2, 13, 15, 20, 21, 22, 23, 24, 25]


def test_the_window_opens_at_start_s_after_its_warmup_and_requests_past_it_are_not_sent(tmp_path, cell):
    path = mooncake(tmp_path / "t.jsonl", [(int(t * 1000), 20, 8, []) for t in SLICE_S])
    plan = plan_of(cell(*trace_args(path, "workload.trace.start_s=5.5", "workload.warmup_requests=2",
                                    "workload.duration_s=8")))
    # the first request at or after 5.5 s (t=6, row 6) opens the window, rows 4 and 5 are its warm-up;
    # the window is [6, 14): rows 6..12; t0 = row 4's time
    assert [r.phase for r in plan.requests] == ["warmup"] * 2 + ["measured"] * 7
    assert [r.arrival_s for r in plan.requests] == pytest.approx([0, 1, 2, 2.5, 3, 5, 8, 8.2, 9])
    assert plan.measured_start_s == pytest.approx(2.0)
    assert plan.duration_s == pytest.approx(8.0)
    assert plan.offered_rate_rps == pytest.approx(7 / 8)
    assert plan.offered_rps == pytest.approx(len(plan.measured) / plan.duration_s)
    # nothing after the window's end (row 13 at 15 s would arrive at 11 s)
    assert max(r.arrival_s for r in plan.requests) < plan.measured_start_s + plan.duration_s
    assert plan.notes["trace_first_row"] == 6 and plan.notes["trace_rows_measured"] == 7
    assert plan.notes["trace_requests"] == len(SLICE_S)


def test_a_window_longer_than_the_rest_of_the_trace_ends_one_mean_gap_after_its_last_request(tmp_path, cell):
    path = mooncake(tmp_path / "t.jsonl", [(int(t * 1000), 20, 8, []) for t in SLICE_S])
    plan = plan_of(cell(*trace_args(path, "workload.trace.start_s=5.5", "workload.warmup_requests=2",
                                    "workload.duration_s=100")))
    mean_gap = 25 / 19
    assert len(plan.measured) == 14  # rows 6..19: every request to the trace's end
    assert plan.duration_s == pytest.approx(25 + mean_gap - 6)
    assert plan.offered_rate_rps == pytest.approx(14 / (25 + mean_gap - 6))
    assert plan.offered_rate_rps == pytest.approx(len(plan.measured) / plan.duration_s)


def test_warmup_requests_push_the_window_past_start_s(tmp_path, cell):
    path = mooncake(tmp_path / "t.jsonl", [(int(t * 1000), 20, 8, []) for t in SLICE_S])
    plan = plan_of(cell(*trace_args(path, "workload.trace.start_s=0", "workload.warmup_requests=3",
                                    "workload.duration_s=4")))
    # at least 3 warm-up requests before the window: it opens at row 3 (3 s), lasts 4 s: [3, 7) holds
    # rows 3..7 (3, 4, 5, 6, 6.5 s)
    assert [r.phase for r in plan.requests] == ["warmup"] * 3 + ["measured"] * 5
    assert plan.measured_start_s == pytest.approx(3.0)
    assert plan.offered_rate_rps == pytest.approx(5 / 4)


def test_a_slice_with_no_request_left_is_one_error_line(tmp_path, cell):
    from orchestrator.client.trace_files import TraceFileError

    path = mooncake(tmp_path / "t.jsonl", [(int(t * 1000), 20, 8, []) for t in SLICE_S])
    cfg = cell(*trace_args(path, "workload.trace.start_s=1000", "workload.warmup_requests=0"))
    with pytest.raises(TraceFileError, match="none left for the window"):
        plan_of(cfg)


def test_shared_hash_ids_are_shared_token_prefixes_of_block_tokens_each(tmp_path, cell):
    rows = [
        (0, 48, 8, [1, 2, 3]),    # A
        (100, 48, 8, [1, 2, 4]),  # B: A's first two blocks, then its own
        (200, 37, 8, [1, 2, 3]),  # C: A's blocks, the last cut to 5 tokens
        (300, 26, 8, [1]),        # D: A's first block, then 10 tokens of its own
        (400, 26, 8, [1]),        # E: as D, its own tail differs
        (500, 48, 8, [5, 2, 3]),  # F: another first block, then A's blocks 2 and 3
        (600, 8, 8, [2]),         # G: shorter than a block: block 2's first 8 tokens
    ]
    path = mooncake(tmp_path / "t.jsonl", rows)
    plan = plan_of(cell(*trace_args(path, "workload.warmup_requests=0", "workload.duration_s=1000")))
    assert len(plan.requests) == len(rows)
    ids = [plan.prompt_ids(r, VOCAB) for r in plan.requests]
    assert [len(x) for x in ids] == [r[1] for r in rows]
    a, b, c, d, e, f, g = ids
    assert common_prefix(a, b) == 2 * BLOCK  # exactly the shared blocks: they differ right after
    assert a[2 * BLOCK:3 * BLOCK] != b[2 * BLOCK:3 * BLOCK]
    assert c == a[:37] and common_prefix(a, c) == 37
    assert d[:BLOCK] == a[:BLOCK] and common_prefix(d, e) == BLOCK
    assert f[BLOCK:] == a[BLOCK:] and f[:BLOCK] != a[:BLOCK]
    assert g == a[BLOCK:BLOCK + 8]  # a hash id is the same tokens wherever it recurs
    # every token id is an ordinary one
    assert all(3 <= t < VOCAB for x in ids for t in x)
    # the segments say so: blocks of the trace, the cut one, then the request's own tokens
    segs = [r.segments for r in plan.requests]
    assert [(s.key, s.n_tokens) for s in segs[2]] == [((SEGMENT_BLOCK, 1), 16), ((SEGMENT_BLOCK, 2), 16),
                                                      ((SEGMENT_BLOCK, 3), 5)]
    assert [s.key[0] for s in segs[3]] == [SEGMENT_BLOCK, SEGMENT_UNIQUE] and segs[3][1].n_tokens == 10


def test_requests_longer_than_the_context_are_clipped_and_counted(tmp_path, cell):
    rows = [
        (0, 1000, 100, list(range(63))),  # prompt past the context: cut to 512 - 100
        (100, 100, 400, list(range(7))),  # output past half the context: 256
        (200, 300, 300, []),               # both: output 256, prompt 256
        (300, 200, 50, []),                # fits
    ]
    path = mooncake(tmp_path / "t.jsonl", rows)
    plan = plan_of(cell(*trace_args(path, "workload.warmup_requests=0", "workload.duration_s=1000")))
    assert [(r.input_tokens, r.output_tokens) for r in plan.requests] == [(412, 100), (100, 256), (256, 256),
                                                                          (200, 50)]
    assert plan.notes["trace_requests_clipped"] == 3
    assert all(len(plan.prompt_ids(r, VOCAB)) == r.input_tokens for r in plan.requests)
    assert all(r.input_tokens + r.output_tokens <= 512 for r in plan.requests)


def test_an_azure_trace_replays_its_times_and_every_prompt_is_its_own(tmp_path, cell):
    start = datetime(2023, 11, 16, 18, 15, 46)
    offsets = [0.0, 0.5, 0.5, 1.25, 3.0, 3.1, 4.0, 6.5, 7.0, 9.0, 9.5, 12.0]
    path = tmp_path / "azure.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
        for k, off in enumerate(offsets):
            stamp = (start + timedelta(seconds=off)).strftime("%Y-%m-%d %H:%M:%S.%f") + "0"
            w.writerow([stamp, 64 if k % 2 else 40, 16])  # same lengths: the prompts must still differ
    plan = plan_of(cell(f"workload.trace.path={path}", "workload.trace.format=auto", "workload.warmup_requests=0",
                        "workload.duration_s=1000"))
    assert [r.arrival_s for r in plan.requests] == pytest.approx(offsets)
    ids = [tuple(plan.prompt_ids(r, VOCAB)) for r in plan.requests]
    assert [len(x) for x in ids] == [64 if k % 2 else 40 for k in range(len(offsets))]
    assert all(s.key[0] == SEGMENT_UNIQUE for r in plan.requests for s in r.segments)
    assert len(set(ids)) == len(ids)
    assert max(common_prefix(x, y) for i, x in enumerate(ids) for y in ids[i + 1:]) < 4
