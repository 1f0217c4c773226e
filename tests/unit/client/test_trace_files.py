"""Real traffic from local files (``client.trace_files``): the generated samples of every format
read back with their lengths, times and shared prompt blocks; bad files (missing, wrong columns,
empty, not JSON, timestamps that go backwards, negative counts) are one ``TraceFileError`` line
naming the file and the line."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.client.trace_files import (
    TraceFileError,
    read_azure,
    read_mooncake,
    read_prompts_jsonl,
    read_sharegpt,
)
from orchestrator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("make_sample_traces", ROOT / "scripts" / "make_sample_traces.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_samples(tmp_path_factory.mktemp("traces"), n=120, rate=4.0, seed=0)


def test_a_mooncake_trace_keeps_its_times_lengths_and_shared_blocks(samples):
    trace = read_mooncake(samples["mooncake.jsonl"])
    raw = [json.loads(x) for x in samples["mooncake.jsonl"].read_text().splitlines()]
    assert len(trace) == 120 and trace[0].arrival_s == 0.0
    assert [r.arrival_s for r in trace] == pytest.approx([(x["timestamp"] - raw[0]["timestamp"]) / 1e3 for x in raw])
    assert all(b.arrival_s >= a.arrival_s for a, b in zip(trace, trace[1:]))
    assert [(r.input_tokens, r.output_tokens, list(r.hash_ids)) for r in trace] == \
        [(x["input_length"], x["output_length"], x["hash_ids"]) for x in raw]
    # sessions share their system prompt's blocks and re-send their history: prefixes repeat
    seen, shared = set(), 0
    for r in trace:
        shared += r.hash_ids[:2] in seen
        seen.add(r.hash_ids[:2])
    assert len(seen) == 3 and shared == len(trace) - 3  # three system prompts, every later request reuses one
    longer = sum(1 for a in trace for b in trace if len(b.hash_ids) > len(a.hash_ids) and
                 b.hash_ids[:len(a.hash_ids)] == a.hash_ids)
    assert longer > len(trace) // 2  # later turns re-send a whole earlier prompt as their prefix
    assert 0.7 * 120 / 4.0 < trace[-1].arrival_s < 1.3 * 120 / 4.0  # Poisson at 4 req/s


def test_an_azure_trace_reads_its_seven_digit_timestamps(samples):
    trace = read_azure(samples["azure.csv"])
    assert len(trace) == 120 and trace[0].arrival_s == 0.0 and trace[-1].arrival_s > 10
    assert all(r.input_tokens > 0 and r.output_tokens > 0 and r.hash_ids == () for r in trace)
    one = samples["azure.csv"].parent / "one.csv"
    one.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"
                   "2023-11-16 18:15:50.9951690,396,109\n")
    a, b = read_azure(one)
    assert (a.input_tokens, a.output_tokens, b.input_tokens, b.output_tokens) == (374, 44, 396, 109)
    assert b.arrival_s == pytest.approx(4.314579)


def test_prompt_datasets_give_messages_and_output_lengths(samples):
    prompts = read_prompts_jsonl(samples["prompts.jsonl"])
    assert len(prompts) == 120 and prompts[0].messages[0]["role"] == "system"
    assert prompts[1].messages == ({"role": "user", "content": prompts[1].messages[0]["content"]},)
    assert [p.output_tokens is not None for p in prompts[:4]] == [True, False, True, False]
    chats = read_sharegpt(samples["sharegpt.json"])
    convs = json.loads(samples["sharegpt.json"].read_text())
    assert len(chats) == sum(len(c["conversations"]) // 2 for c in convs)
    later = [c for c in chats if len(c.messages) > 1]  # a later turn carries its whole history
    assert later and all(c.messages[-1]["role"] == "user" and len(c.messages) % 2 == 1 for c in later)
    assert all(c.reference for c in chats)


@pytest.mark.parametrize("reader, name, text, needle", [
    (read_mooncake, "t.jsonl", None, "no such file"),
    (read_mooncake, "t.jsonl", "", "empty (no request)"),
    (read_mooncake, "t.jsonl", '{"timestamp": 5, "input_length": 3}\n', "line 1: no output_length"),
    (read_mooncake, "t.jsonl", "not json\n", "line 1: not a JSON object"),
    (read_mooncake, "t.jsonl", '{"timestamp": 9, "input_length": 3, "output_length": 2}\n'
                               '{"timestamp": 5, "input_length": 3, "output_length": 2}\n',
     "line 2: the timestamp goes backwards (0.005 after 0.009)"),
    (read_mooncake, "t.jsonl", '{"timestamp": 1, "input_length": -3, "output_length": 2}\n',
     "line 1: input_length=-3 is not a whole number >= 0"),
    (read_mooncake, "t.jsonl", '{"timestamp": 1, "input_length": 3, "output_length": 2, "hash_ids": "x"}\n',
     "hash_ids must be a list"),
    (read_azure, "t.csv", "time,tokens\n1,2\n", "no column TIMESTAMP, ContextTokens, GeneratedTokens"),
    (read_azure, "t.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n", "empty (no request)"),
    (read_azure, "t.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,2\n", "line 2: TIMESTAMP='yesterday'"),
    (read_azure, "t.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:47,1,2\n"
                          "2023-11-16 18:15:46,1,2\n", "line 3: the timestamp goes backwards"),
    (read_prompts_jsonl, "p.jsonl", '{"text": "hi"}\n', "line 1: needs 'prompt' (text) or 'messages'"),
    (read_prompts_jsonl, "p.jsonl", '{"prompt": "hi", "output_tokens": "many"}\n',
     "line 1: output_tokens='many' is not a whole number"),
    (read_sharegpt, "s.json", '{"conversations": []}', "a JSON list of conversations"),
    (read_sharegpt, "s.json", '[{"conversations": [{"from": "bot", "value": "x"}]}]',
     "conversation 0, turn 0: needs 'from'"),
    (read_sharegpt, "s.json", '[{"conversations": [{"from": "gpt", "value": "x"}]}]', "empty (no human turn"),
])
def test_a_bad_file_is_one_line_naming_it(tmp_path, reader, name, text, needle):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(TraceFileError) as exc:
        reader(path)
    message = str(exc.value)
    assert isinstance(exc.value, ConfigError) and "\n" not in message
    assert message.startswith(str(path)) and needle in message, message


def test_the_sample_script_runs_from_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_sample_traces.py"), str(tmp_path),
                           "--requests", "10"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(read_mooncake(tmp_path / "mooncake.jsonl")) == 10 and len(read_azure(tmp_path / "azure.csv")) == 10
