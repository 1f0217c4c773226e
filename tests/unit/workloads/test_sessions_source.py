"""``workload.source=sessions`` (``orchestrator.workloads.sessions``) on the real composed config
(tiny model, 512-token context): each turn re-sends its session's history (turn k's prompt is
turn k-1's, then the planned answer, then the new user turn), the system prompt is shared,
later turns wait ``think_s`` after the previous answer, warm-up sessions come first, sessions
that would pass the context end early and are counted, and a ShareGPT file's conversations
become sessions with their own turns."""
from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict

import pytest

from orchestrator.app.hydra_entry import typed
from orchestrator.client.prompts import TextPrompts, tokenizer_dir
from orchestrator.client.workload import SEGMENT_ANSWER, SEGMENT_DATA, SEGMENT_SYSTEM
from orchestrator.driver.grid import cell_configs, cells
from orchestrator.workloads import plan_for

VOCAB = 512
CONTEXT = 512
SMALL = ("workload.sessions.system_prompt_tokens=64", "workload.input.mean_tokens=32", "workload.input.std_tokens=8",
         "workload.input.min_tokens=8", "workload.input.max_tokens=48", "workload.output.mean_tokens=16",
         "workload.sessions.min_turns=2", "workload.sessions.max_turns=5", "workload.duration_s=20",
         "workload.rate_rps=1")


@pytest.fixture
def cell(compose):
    def make(*overrides):
        [cfg] = cell_configs([typed(compose(["model=tiny", "engine=simulated", "workload=sessions", *overrides]))])
        return cfg
    return make


def plan_of(cfg):
    (c,) = cells([cfg], {})
    return plan_for(cfg, c.cell_id)


def by_session(plan):
    out = defaultdict(list)
    for r in plan.requests:
        out[r.session].append(r)
    for turns in out.values():
        assert [t.turn for t in turns] == list(range(len(turns)))
    return out


def test_each_turn_resends_the_history_then_the_planned_answer_then_a_new_user_turn(cell):
    plan = plan_of(cell(*SMALL))
    sessions = by_session(plan)
    assert len(sessions) > 10 and plan.notes["sessions_cut_by_context"] == 0
    multi = 0
    for turns in sessions.values():
        assert 2 <= len(turns) <= 5
        for prev, cur in itertools.pairwise(turns):
            multi += 1
            prev_ids, cur_ids = plan.prompt_ids(prev, VOCAB), plan.prompt_ids(cur, VOCAB)
            assert len(cur_ids) == cur.input_tokens
            answer_seg = cur.segments[-2]
            assert answer_seg.role == "assistant" and answer_seg.key == (SEGMENT_ANSWER, prev.session, prev.turn)
            assert answer_seg.n_tokens == prev.output_tokens  # the answer asked for, re-sent as planned
            answer_ids = plan.segment_ids(answer_seg, VOCAB)
            n_prev, n_ans = len(prev_ids), prev.output_tokens
            assert cur_ids[:n_prev] == prev_ids
            assert cur_ids[n_prev:n_prev + n_ans] == answer_ids
            user = cur.input_tokens - n_prev - n_ans
            assert 8 <= user <= 48 and cur.segments[-1].n_tokens == user and cur.segments[-1].role == "user"
            assert cur.segments[:len(prev.segments)] == prev.segments
    assert multi > 10


def test_the_system_prompt_is_the_same_tokens_in_every_session(cell):
    plan = plan_of(cell(*SMALL))
    firsts = [turns[0] for turns in by_session(plan).values()]
    heads = {tuple(plan.prompt_ids(r, VOCAB)[:64]) for r in firsts}
    assert len(heads) == 1
    assert all(r.segments[0].key == (SEGMENT_SYSTEM, 0) and r.segments[0].role == "system"
               and r.segments[0].n_tokens == 64 for r in firsts)
    # what follows the system prompt is each session's own
    tails = {tuple(plan.prompt_ids(r, VOCAB)[64:72]) for r in firsts}
    assert len(tails) == len(firsts)
    # without a system prompt a session starts with its user turn
    bare = plan_of(cell(*SMALL, "workload.sessions.system_prompt_tokens=0"))
    assert all(r.segments[0].role == "user" for r in bare.requests if r.turn == 0)


def test_later_turns_have_no_arrival_and_wait_their_think_time(cell):
    plan = plan_of(cell(*SMALL))
    first = [r for r in plan.requests if r.turn == 0]
    later = [r for r in plan.requests if r.turn > 0]
    assert later and all(math.isnan(r.arrival_s) and r.think_s >= 0 for r in later)
    assert all(math.isfinite(r.arrival_s) and r.think_s == 0 for r in first)
    thinks = [r.think_s for r in later]
    assert len(set(thinks)) == len(thinks)  # exponential: all different
    assert 0.3 * 3.0 < sum(thinks) / len(thinks) < 3 * 3.0  # mean think_time_s=3 (sessions.yaml)
    fixed = plan_of(cell(*SMALL, "workload.sessions.think=fixed", "workload.sessions.think_time_s=2.5"))
    assert {r.think_s for r in fixed.requests if r.turn > 0} == {2.5}
    assert plan.sessions and math.isnan(plan.offered_rate_rps)


def test_session_count_and_warmup_sessions(cell):
    plan = plan_of(cell(*SMALL, "workload.arrival=constant", "workload.rate_rps=2", "workload.duration_s=10",
                        "workload.sessions.warmup_sessions=3"))
    sessions = by_session(plan)
    assert len(sessions) == 3 + 20 == plan.notes["sessions"]  # 2 sessions/s for 10 s, after 3 warm-up ones
    assert plan.notes["sessions_measured"] == 20
    for s, turns in sessions.items():
        assert {t.phase for t in turns} == {"warmup" if s < 3 else "measured"}
    starts = [sessions[s][0].arrival_s for s in sorted(sessions)]
    assert starts == pytest.approx([k / 2 for k in range(23)])
    assert plan.measured_start_s == pytest.approx(1.5)
    assert all(plan.measured_start_s <= sessions[s][0].arrival_s < plan.measured_start_s + 10 for s in range(3, 23))


def test_sessions_that_would_pass_the_context_end_early_and_are_counted(cell):
    plan = plan_of(cell(*SMALL, "workload.sessions.system_prompt_tokens=400", "workload.input.dist=fixed",
                        "workload.input.mean_tokens=64", "workload.output.mean_tokens=32",
                        "workload.sessions.min_turns=3", "workload.sessions.max_turns=3"))
    sessions = by_session(plan)
    # turn 0: 400 + 64 + 32 = 496 fits; turn 1 would be 400 + 64 + 32 + 64 + 32 = 592
    assert all(len(turns) == 1 for turns in sessions.values())
    assert plan.notes["sessions_cut_by_context"] == len(sessions) == plan.notes["sessions"]
    assert all(r.input_tokens + r.output_tokens <= CONTEXT for r in plan.requests)
    # one more turn fits when the system prompt is shorter: cut at the third
    two = by_session(plan_of(cell(*SMALL, "workload.sessions.system_prompt_tokens=300", "workload.input.dist=fixed",
                                  "workload.input.mean_tokens=64", "workload.output.mean_tokens=32",
                                  "workload.sessions.min_turns=3", "workload.sessions.max_turns=3")))
    assert all(len(turns) == 2 for turns in two.values())


def test_a_sharegpt_files_conversations_become_sessions(tmp_path, cell):
    def words(*ids):
        return " ".join(f"t{i}" for i in ids)

    convs = [
        [(words(5, 6), words(7, 8, 9)), (words(10, 11, 12), words(13)), (words(14), words(15, 16))],
        [(words(20, 21, 22, 23), words(24, 25))],
        [(words(30), words(31, 32, 33, 34)), (words(35, 36), words(37))],
    ]
    path = tmp_path / "chat.json"
    path.write_text(json.dumps([{"conversations": [{"from": who, "value": text} for h, g in conv
                                                   for who, text in (("human", h), ("gpt", g))]} for conv in convs]))
    cfg = cell(*SMALL, f"workload.sessions.dataset={path}", "workload.sessions.min_turns=1",
               "workload.sessions.max_turns=6", "workload.sessions.system_prompt_tokens=16")
    assert cfg.workload.sessions.dataset_sha256
    tok = TextPrompts(tokenizer_dir(cfg)).tokenizer
    plan = plan_of(cfg)
    sessions = by_session(plan)
    assert len(sessions) > 6
    for s, turns in sessions.items():
        conv = convs[s % 3]
        assert len(turns) == len(conv), s  # the conversation's turns, no more, no fewer
        for turn, (human, gpt) in zip(turns, conv):
            user_ids = list(tok.encode(human, add_special_tokens=False))
            assert turn.segments[-1].key[0] == SEGMENT_DATA
            assert plan.prompt_ids(turn, VOCAB)[-len(user_ids):] == user_ids
            assert turn.output_tokens == len(tok.encode(gpt, add_special_tokens=False))
        for prev, cur in itertools.pairwise(turns):
            assert plan.prompt_ids(cur, VOCAB)[:prev.input_tokens] == plan.prompt_ids(prev, VOCAB)
    # max_turns cuts a longer conversation
    short = by_session(plan_of(cell(*SMALL, f"workload.sessions.dataset={path}", "workload.sessions.min_turns=1",
                                    "workload.sessions.max_turns=2")))
    assert [len(short[s]) for s in range(3)] == [2, 1, 2]
