"""``workload.source=dataset`` (``orchestrator.workloads.dataset``) on the real composed config
with the tiny model's generated tokenizer (word level: ``t5`` is token 5): prompt lengths and ids
are the tokenizer's encoding (one user message: its text; a history: the chat template
rendered), output lengths from the data, the reference answer or the distribution, offset and
shuffle, over-long rows skipped and counted, static batches and open loop."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.app.hydra_entry import typed
from orchestrator.client.prompts import TextPrompts, tokenizer_dir
from orchestrator.client.workload import SEGMENT_DATA
from orchestrator.driver.grid import cell_configs, cells
from orchestrator.engines.simulated import SimulatedEngine
from orchestrator.workloads import plan_for

VOCAB = 512
CONTEXT = 512  # model=tiny's max_context_tokens (engine=simulated: no vLLM max_model_len)
OUT_MEAN = 7


@pytest.fixture
def cell(compose):
    def make(*overrides, workload="sharegpt_sample"):
        [cfg] = cell_configs([typed(compose(["model=tiny", "engine=simulated", f"workload={workload}",
                                             "workload.source=dataset", "workload.dataset.format=auto",
                                             f"workload.output.mean_tokens={OUT_MEAN}", "workload.duration_s=5",
                                             *overrides]))])
        return cfg
    return make


@pytest.fixture(scope="module")
def tokenizer(compose):
    [cfg] = cell_configs([typed(compose(["model=tiny", "engine=simulated"]))])
    return TextPrompts(tokenizer_dir(cfg)).tokenizer


def plan_of(cfg):
    (c,) = cells([cfg], {})
    return plan_for(cfg, c.cell_id)


def words(*ids) -> str:
    return " ".join(f"t{i}" for i in ids)


def jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def encode(tok, messages):
    """What the cell's tokenizer makes of a prompt: one user message's text; a history rendered
    with the chat template (the generation prompt added)."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return list(tok.encode(messages[0]["content"], add_special_tokens=False))
    text = tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return list(tok.encode(text, add_special_tokens=False))


HISTORY = [{"role": "system", "content": words(10, 11) + " "}, {"role": "user", "content": words(12, 13)},
           {"role": "assistant", "content": " " + words(14) + " "}, {"role": "user", "content": words(15, 16, 17)}]
ROWS = [
    {"prompt": words(5, 6, 7), "output_tokens": 11},
    {"messages": HISTORY, "output_tokens": 12},
    {"prompt": words(*range(20, 29))},  # no output length: the distribution's
    {"messages": [{"role": "user", "content": words(30, 31)}], "output_tokens": 13},
    {"prompt": " ".join(["t40"] * 600), "output_tokens": 5},  # longer than the context
    {"prompt": words(50, 51, 52, 53), "output_tokens": 14},
]
KEPT = [0, 1, 2, 3, 5]


def test_prompts_are_the_tokenizers_encoding_and_outputs_come_from_the_data(tmp_path, cell, tokenizer):
    path = jsonl(tmp_path / "d.jsonl", ROWS)
    plan = plan_of(cell(f"workload.dataset.path={path}", "workload.dataset.shuffle=false"))
    expected_ids = {r: encode(tokenizer, ROWS[r]["messages"] if "messages" in ROWS[r] else
                              [{"role": "user", "content": ROWS[r]["prompt"]}]) for r in KEPT}
    assert expected_ids[0] == [5, 6, 7] and expected_ids[5] == [50, 51, 52, 53]
    # the history is the chat template's rendering, not its last message
    assert len(expected_ids[1]) > 3 and expected_ids[1] != [15, 16, 17]
    assert expected_ids[1][-3:] == [15, 16, 17]
    expected_out = {0: 11, 1: 12, 2: OUT_MEAN, 3: 13, 5: 14}
    assert len(plan.requests) > 2 * len(KEPT)
    for i, spec in enumerate(plan.requests):
        row = KEPT[i % len(KEPT)]  # file order, cycling, over-long row left out
        assert plan.prompt_ids(spec, VOCAB) == expected_ids[row], i
        assert spec.input_tokens == len(expected_ids[row])
        assert spec.output_tokens == expected_out[row]
        assert [s.key for s in spec.segments] == [(SEGMENT_DATA, row)]
    assert plan.notes["dataset_rows"] == len(KEPT) and plan.notes["dataset_rows_skipped"] == 1


def test_output_distribution_replaces_the_datas_lengths(tmp_path, cell):
    path = jsonl(tmp_path / "d.jsonl", ROWS)
    plan = plan_of(cell(f"workload.dataset.path={path}", "workload.dataset.shuffle=false",
                        "workload.dataset.output=distribution"))
    assert {r.output_tokens for r in plan.requests} == {OUT_MEAN}
    normal = plan_of(cell(f"workload.dataset.path={path}", "workload.dataset.shuffle=false",
                          "workload.dataset.output=distribution", "workload.output.dist=normal",
                          "workload.output.std_tokens=3", "workload.output.max_tokens=20"))
    outs = [r.output_tokens for r in normal.requests]
    assert len(set(outs)) > 3 and all(1 <= o <= 20 for o in outs)


def test_with_output_distribution_a_rows_own_output_length_does_not_skip_it(tmp_path, cell):
    """``output=distribution``: the data's output lengths are not used, so a row whose recorded
    answer would not fit beside its prompt still fits with the drawn one."""
    rows = [{"prompt": words(*range(3, 103)), "output_tokens": 450}, {"prompt": words(5, 6)}]
    path = jsonl(tmp_path / "d.jsonl", rows)
    plan = plan_of(cell(f"workload.dataset.path={path}", "workload.dataset.shuffle=false",
                        "workload.dataset.output=distribution"))
    assert plan.notes["dataset_rows_skipped"] == 0
    assert {r.input_tokens for r in plan.requests} == {100, 2}
    assert {r.output_tokens for r in plan.requests} == {OUT_MEAN}


def test_a_sharegpt_rows_output_is_its_reference_answers_token_count(tmp_path, cell, tokenizer):
    convs = [
        {"conversations": [{"from": "human", "value": words(5, 6)}, {"from": "gpt", "value": words(7, 8, 9)}]},
        {"conversations": [{"from": "human", "value": words(10)}, {"from": "gpt", "value": words(11, 12)},
                           {"from": "human", "value": words(13, 14)}, {"from": "gpt", "value": words(*range(15, 25))}]},
    ]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(convs))
    plan = plan_of(cell(f"workload.dataset.path={path}", "workload.dataset.shuffle=false"))
    histories = [[{"role": "user", "content": words(5, 6)}], [{"role": "user", "content": words(10)}],
                 [{"role": "user", "content": words(10)}, {"role": "assistant", "content": words(11, 12)},
                  {"role": "user", "content": words(13, 14)}]]
    outputs = [3, 2, 10]
    for i, spec in enumerate(plan.requests[:6]):
        assert plan.prompt_ids(spec, VOCAB) == encode(tokenizer, histories[i % 3])
        assert spec.output_tokens == outputs[i % 3]
    assert plan.prompt_ids(plan.requests[0], VOCAB) == [5, 6]


def test_offset_starts_later_in_the_file(tmp_path, cell):
    path = jsonl(tmp_path / "d.jsonl", ROWS)
    plan = plan_of(cell(f"workload.dataset.path={path}", "workload.dataset.shuffle=false",
                        "workload.dataset.offset=2"))
    rows = [r.segments[0].key[1] for r in plan.requests[:len(KEPT) + 2]]
    assert rows == [KEPT[(2 + i) % len(KEPT)] for i in range(len(KEPT) + 2)]
    assert plan.prompt_ids(plan.requests[0], VOCAB) == list(range(20, 29))


def test_shuffle_is_a_seeded_permutation_of_the_rows(tmp_path, cell):
    rows = [{"prompt": words(3 + k, 100 + k), "output_tokens": 4} for k in range(10)]
    path = jsonl(tmp_path / "d.jsonl", rows)

    def order(*extra):
        plan = plan_of(cell(f"workload.dataset.path={path}", "workload.dataset.shuffle=true", *extra))
        return [r.segments[0].key[1] for r in plan.requests[:20]]

    a, again, other = order(), order(), order("workload.seed=1")
    assert sorted(a[:10]) == list(range(10)) and a[10:] == a[:10]  # every row once, then the cycle again
    assert a != list(range(10)) * 2
    assert a == again and other != a
    assert sorted(other[:10]) == list(range(10))


def test_rows_longer_than_the_limit_are_skipped_and_counted(tmp_path, cell):
    path = jsonl(tmp_path / "d.jsonl", ROWS)
    plan = plan_of(cell(f"workload.dataset.path={path}", "workload.dataset.shuffle=false",
                        "workload.dataset.max_prompt_tokens=4"))
    kept = {r.segments[0].key[1] for r in plan.requests}
    assert kept == {0, 3, 5}  # 3, 2 and 4 tokens; the history, the 9- and the 600-token prompt left out
    assert plan.notes["dataset_rows_skipped"] == 3 and plan.notes["dataset_rows"] == 3
    assert max(r.input_tokens for r in plan.requests) <= 4
    # by default the limit is the context less the output: only the 600-token row goes
    default = plan_of(cell(f"workload.dataset.path={path}", "workload.dataset.shuffle=false"))
    assert default.notes["dataset_rows_skipped"] == 1
    assert all(r.input_tokens + r.output_tokens <= CONTEXT for r in default.requests)


def test_a_dataset_feeds_static_batches(tmp_path, cell):
    path = jsonl(tmp_path / "d.jsonl", ROWS)
    cfg = cell(f"workload.dataset.path={path}", "workload.dataset.shuffle=false", "batch_size=3", workload="offline")
    plan = plan_of(cfg)
    assert plan.offline and len(plan.requests) == 3 * (cfg.workload.warmup_batches + cfg.workload.num_batches)
    for spec in plan.requests:
        row = KEPT[spec.index % len(KEPT)]
        assert spec.segments[0].key == (SEGMENT_DATA, row) and spec.batch_index == spec.index // 3
    beyond = plan.batch(cfg.workload.warmup_batches + cfg.workload.num_batches + 2)  # drawn on demand
    assert len(beyond) == 3 and all(s.segments[0].key[0] == SEGMENT_DATA for s in beyond)
    assert [s.segments[0].key[1] for s in beyond] == [KEPT[s.index % len(KEPT)] for s in beyond]
    eng = SimulatedEngine(cfg, 3)
    eng.start()
    run = eng.run(plan)
    measured = [r for r in run.records if r.phase == "measured"]
    assert measured and all(r.status == "ok" for r in run.records)
    assert all(r.output_tokens == r.requested_output_tokens for r in run.records)


def test_a_dataset_feeds_open_loop_arrivals(tmp_path, cell):
    path = jsonl(tmp_path / "d.jsonl", ROWS)
    cfg = cell(f"workload.dataset.path={path}", "workload.dataset.shuffle=false", "workload.rate_rps=4",
               "workload.warmup_requests=3")
    plan = plan_of(cfg)
    assert not plan.offline and plan.rate_rps == 4.0
    arrivals = [r.arrival_s for r in plan.requests]
    assert arrivals == sorted(arrivals) and [r.phase for r in plan.requests[:4]] == ["warmup"] * 3 + ["measured"]
    assert 8 <= len(plan.measured) <= 40  # Poisson at 4 req/s over 5 s
    eng = SimulatedEngine(cfg, cfg.batch_size)
    eng.start()
    run = eng.run(plan)
    ok = [r for r in run.records if r.status == "ok"]
    assert len(ok) == len(plan.requests)
    assert [r.input_tokens for r in ok] == [s.input_tokens for s in plan.requests]
