"""The simulator's model of vLLM's prefix caching (``engines.prefix_cache``,
``engine.simulated.enable_prefix_caching``) under multi-turn sessions: no hit without it; with it
later turns hit their history in whole blocks, never the whole prompt; TTFT and prefill work
drop; the cache is emptied between cells that share one engine; the cache model's LRU eviction
and chained block keys."""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

from orchestrator.app.hydra_entry import typed
from orchestrator.client.metrics import prefix_cache, summarize
from orchestrator.driver.grid import cell_configs, cells
from orchestrator.engines.prefix_cache import PrefixCacheModel, block_keys
from orchestrator.engines.simulated import SimulatedEngine
from orchestrator.store.schema import PREFIX_CACHE_HIT_RATE
from orchestrator.workloads import plan_for

BLOCK = 16  # engine.simulated.prefix_block_tokens' default


@pytest.fixture(scope="module")
def configs(compose):
    """Llama-2-7B on an H100, simulated, multi-turn sessions (1,024-token shared system prompt),
    prefix caching off and on: the same plan for both."""
    def make(caching):
        [cfg] = cell_configs([typed(compose(["model=llama2_7b", "gpu=h100", "engine=simulated", "workload=sessions",
                                             "batch_size=16", "workload.duration_s=30",
                                             f"engine.simulated.enable_prefix_caching={caching}"]))])
        return cfg
    return {False: make("false"), True: make("true")}


def run(cfg, engine=None):
    (c,) = cells([cfg], {})
    plan = plan_for(cfg, c.cell_id)
    if engine is None:
        engine = SimulatedEngine(cfg, cfg.batch_size)
        engine.start()
    return plan, engine, engine.run(plan)


def ok_records(wr):
    return [r for r in wr.records if r.status == "ok"]


def test_both_cells_send_the_same_prompts(configs):
    off, _, _ = run(configs[False])
    on, _, _ = run(configs[True])
    assert [(r.input_tokens, r.output_tokens, r.session, r.turn) for r in off.requests] == \
        [(r.input_tokens, r.output_tokens, r.session, r.turn) for r in on.requests]
    assert [off.prompt_ids(r, 32000) for r in off.requests[:6]] == [on.prompt_ids(r, 32000) for r in on.requests[:6]]


def test_without_prefix_caching_nothing_is_cached(configs):
    _, _, wr = run(configs[False])
    assert wr.records and all(r.cached_tokens == 0 for r in wr.records)
    assert prefix_cache(ok_records(wr))[PREFIX_CACHE_HIT_RATE] == 0.0


def test_later_turns_hit_their_history_in_whole_blocks_never_the_whole_prompt(configs):
    _, _, wr = run(configs[True])
    ok = ok_records(wr)
    by_key = {(r.session, r.turn): r for r in ok}
    later = [r for r in ok if r.turn > 0]
    assert len(later) > 10
    for r in ok:
        assert r.cached_tokens % BLOCK == 0 and 0 <= r.cached_tokens < r.input_tokens
    for r in later:
        prev = by_key[(r.session, r.turn - 1)]
        # the previous turn's prompt blocks are cached; its last, partial block is not (it holds the answer)
        assert r.cached_tokens == prev.input_tokens // BLOCK * BLOCK > 0
    first_turns = sorted((r for r in ok if r.turn == 0), key=lambda r: r.arrival_s)
    assert first_turns[0].cached_tokens == 0  # nothing cached yet
    assert all(r.cached_tokens == 1024 for r in first_turns[1:])  # the shared system prompt
    assert prefix_cache(ok)[PREFIX_CACHE_HIT_RATE] > 0.5


def test_a_session_turn_is_sent_its_think_time_after_the_previous_answer(configs):
    plan, _, wr = run(configs[True])
    think = {(s.session, s.turn): s.think_s for s in plan.requests}
    by_key = {(r.session, r.turn): r for r in wr.records}
    later = [r for r in wr.records if r.turn > 0]
    assert later
    for r in later:
        prev = by_key[(r.session, r.turn - 1)]
        assert r.arrival_s == pytest.approx(prev.end_s + think[(r.session, r.turn)])
        assert r.arrival_s <= wr.window_end_s  # turns due after the window are not sent
    assert len(wr.records) < len(plan.requests)


def test_the_cache_cuts_ttft_and_prefill_work(configs):
    plan, eng_off, off = run(configs[False])
    _, eng_on, on = run(configs[True])
    row_off = summarize(off, plan.offered_rps, True)
    row_on = summarize(on, plan.offered_rps, True)
    assert row_on["ttft_p50_ms"] < 0.6 * row_off["ttft_p50_ms"]
    prefill_off = sum(r.input_tokens - r.cached_tokens for r in ok_records(off))
    prefill_on = sum(r.input_tokens - r.cached_tokens for r in ok_records(on))
    assert prefill_on < 0.5 * prefill_off
    assert sum(r.input_tokens for r in ok_records(on)) == sum(r.input_tokens for r in ok_records(off))
    energy_off = eng_off.modeled_power().energy_mj[-1]
    energy_on = eng_on.modeled_power().energy_mj[-1]
    assert energy_on < energy_off


def test_a_shared_engine_starts_every_cell_with_an_empty_cache(configs):
    plan, eng, first = run(configs[True])
    second = eng.run(plan)  # the same engine runs the next cell
    assert second.records[0].cached_tokens == 0
    assert [r.cached_tokens for r in second.records] == [r.cached_tokens for r in first.records]
    rate1 = prefix_cache(ok_records(first))[PREFIX_CACHE_HIT_RATE]
    rate2 = prefix_cache(ok_records(second))[PREFIX_CACHE_HIT_RATE]
    assert rate1 == rate2 and not math.isnan(rate1)


# ---------------------------------------------------------------- the cache model


def ids(*blocks):
    """A prompt of whole blocks, each BLOCK copies of one token id (blocks may repeat)."""
    return [b for b in blocks for _ in range(BLOCK)]


def test_block_keys_are_chained_and_cover_whole_blocks_only():
    a = block_keys(ids(5, 6, 7) + [9] * 10, BLOCK)
    assert len(a) == 3  # the partial tail has no key
    b = block_keys(ids(8, 6, 7), BLOCK)
    assert a[0] != b[0] and a[1] != b[1] and a[2] != b[2]  # the same block after another prefix: another key
    assert block_keys(ids(5, 6, 4), BLOCK)[:2] == a[:2]


def test_a_block_hits_only_when_its_whole_prefix_matches():
    cache = PrefixCacheModel(BLOCK, capacity_blocks=100)
    cache.insert(block_keys(ids(1, 2, 3, 4), BLOCK))
    assert cache.hit_tokens(block_keys(ids(9, 2, 3, 4), BLOCK), 4 * BLOCK + 1) == 0
    assert cache.hit_tokens(block_keys(ids(1, 2, 9, 4), BLOCK), 4 * BLOCK + 1) == 2 * BLOCK
    assert cache.hit_tokens(block_keys(ids(1, 2, 3, 4, 5), BLOCK), 5 * BLOCK) == 4 * BLOCK
    # a prompt fully cached recomputes its last block (at least its last token is computed)
    assert cache.hit_tokens(block_keys(ids(1, 2, 3, 4), BLOCK), 4 * BLOCK) == 3 * BLOCK
    assert cache.hit_tokens(block_keys(ids(1, 2, 3, 4) + [7], BLOCK), 4 * BLOCK + 1) == 4 * BLOCK


def test_the_least_recently_used_block_leaves_at_capacity():
    cache = PrefixCacheModel(BLOCK, capacity_blocks=3)
    a, b, c = (block_keys(ids(x), BLOCK) for x in (1, 2, 3))
    for keys in (a, b, c):
        cache.insert(keys)
    assert cache.hit_tokens(a, BLOCK + 1) == BLOCK  # a used again: b is now the oldest
    d = block_keys(ids(4), BLOCK)
    cache.insert(d)
    assert cache.hit_tokens(b, BLOCK + 1) == 0
    assert [cache.hit_tokens(k, BLOCK + 1) for k in (a, c, d)] == [BLOCK] * 3
    big = block_keys(ids(5, 6, 7, 8), BLOCK)  # more than the cache holds: only its last 3 stay
    cache.insert(big)
    assert cache.hit_tokens(big, 4 * BLOCK + 1) == 0  # its first block left: the chain has no head
    assert [cache.hit_tokens(k, BLOCK + 1) for k in (a, c, d)] == [0, 0, 0]
    cache.reset()
    cache.insert(a)
    assert cache.hit_tokens(a, BLOCK + 1) == BLOCK and cache.hit_tokens(big, 4 * BLOCK + 1) == 0


def test_prompt_ids_of_a_session_plan_make_the_simulators_keys(configs):
    """The simulator's hits come from the prompts' real token ids (the plan's): two sessions'
    first turns share exactly the system prompt's blocks."""
    cfg = configs[True]
    (c,) = cells([cfg], {})
    plan = plan_for(cfg, c.cell_id)
    by_session = defaultdict(list)
    for r in plan.requests:
        by_session[r.session].append(r)
    a, b = by_session[0][0], by_session[1][0]
    ka = block_keys(plan.prompt_ids(a, cfg.model.vocab_size), BLOCK)
    kb = block_keys(plan.prompt_ids(b, cfg.model.vocab_size), BLOCK)
    shared = int(np.argmin([x == y for x, y in zip(ka, kb)] + [False]))
    assert shared == 1024 // BLOCK
