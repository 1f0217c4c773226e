"""One response's stream read chunk by chunk (``client.sse.SseStream``): completions and chat
chunks, where usage comes (a final chunk of its own, LiteLLM's final chunk whose choices hold no
content, continuous running counts), streams that end without ``[DONE]``, and a server that
reports no count, counted by its text."""
from __future__ import annotations

import json

import pytest

from orchestrator.client.sse import SseStream
from orchestrator.client.workload import RequestSpec

SPEC = RequestSpec(index=0, phase="measured", arrival_s=0.0, input_tokens=8, output_tokens=3)


def _feed(st: SseStream, chunks, done: bool = True) -> SseStream:
    for t, chunk in enumerate(chunks, start=1):
        st.feed(json.dumps(chunk), float(t))
    if done:
        st.feed("[DONE]", 99.0)
    return st


def _chat(text, finish=None):
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text},
                                                             "finish_reason": finish}]}


def _words(text: str) -> int:
    return len(text.split())


def test_chat_deltas_with_usage_in_a_final_chunk_of_its_own():
    st = _feed(SseStream(), [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
                             _chat("a"), _chat(" b"), _chat(" c", "length"),
                             {"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 3}}])
    rec = st.record(SPEC, 0.0, 0.0, 100.0)
    assert (rec.status, rec.output_tokens, rec.count_source, rec.prompt_tokens_reported) == ("ok", 3, "usage", 8)
    assert (rec.first_token_s, rec.end_s) == (2.0, 4.0)  # the role-only chunk carries no content
    assert list(rec.chunk_times_s) == [2.0, 3.0, 4.0] and rec.token_times_s is None


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("final", [{"index": 0}, {"index": 0, "delta": {}}])
def test_litellms_final_chunk_holds_usage_beside_a_choice_without_content(continuous, final):
    """LiteLLM's proxy: after the finish reason, the last chunk is ``[{"index": 0}]`` (completions)
    or ``[{"index": 0, "delta": {}}]`` (chat) with the usage — the total, not a running count of
    one more content chunk, also where running counts were asked for (it sends none)."""
    st = _feed(SseStream(continuous=continuous), [_chat("a"), _chat(" b"), _chat(" c", "stop"),
                                                  {"choices": [final], "usage": {"prompt_tokens": 8,
                                                                                 "completion_tokens": 3}}])
    rec = st.record(SPEC, 0.0, 0.0, 100.0)
    assert (rec.status, rec.output_tokens, rec.count_source) == ("ok", 3, "usage") and not rec.error
    assert not st.continuous_seen and rec.end_s == 3.0 and list(rec.chunk_times_s) == [1.0, 2.0, 3.0]


def test_usage_that_counts_nothing_is_no_usage():
    """LiteLLM without include_usage puts all-zero usage on every completions chunk: no count, so
    the text is counted (or the request is an error row), never an ok row of 0 tokens."""
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    chunks = [{"choices": [{"index": 0, "text": w}], "usage": zero} for w in ("a ", "b ")]
    chunks.append({"choices": [{"index": 0, "text": "c", "finish_reason": "stop"}], "usage": zero})
    rec = _feed(SseStream(continuous=True, keep_text=True), chunks).record(SPEC, 0.0, 0.0, 100.0, count_text=_words)
    assert (rec.status, rec.output_tokens, rec.count_source, rec.first_token_s) == ("ok", 3, "tokenized", 1.0)
    bare = _feed(SseStream(), chunks).record(SPEC, 0.0, 0.0, 100.0)
    assert bare.status == "error" and "no token count" in bare.error


def test_a_stream_that_ends_after_its_finish_reason_without_done_is_complete():
    """``transformers serve`` closes the stream after the finish reason, with no ``[DONE]``."""
    st = _feed(SseStream(keep_text=True), [_chat("a"), _chat(" b", "length")], done=False)
    rec = st.record(SPEC, 0.0, 0.0, 100.0, count_text=_words)
    assert (rec.status, rec.output_tokens, rec.count_source) == ("ok", 2, "tokenized")
    cut = _feed(SseStream(keep_text=True), [_chat("a")], done=False)  # no finish reason: cut short
    bad = cut.record(SPEC, 0.0, 0.0, 100.0, count_text=_words)
    assert bad.status == "error" and "ended before [DONE] or a finish reason" in bad.error


def test_no_count_at_all_is_an_error_without_a_tokenizer():
    st = _feed(SseStream(), [{"choices": [{"index": 0, "text": "x y", "finish_reason": "length"}]}])
    rec = st.record(SPEC, 0.0, 0.0, 100.0)
    assert rec.status == "error" and "no token count" in rec.error


@pytest.mark.parametrize("where", ["choice", "delta"])
def test_token_ids_on_the_choice_or_in_a_chat_delta_give_per_token_times(where):
    def chunk(ids, text):
        choice = {"index": 0, "delta": {"content": text}}
        (choice if where == "choice" else choice["delta"])["token_ids"] = ids
        return {"choices": [choice]}

    st = _feed(SseStream(), [chunk([5, 6], "a b"), chunk([7], " c"),
                             {"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 3}}])
    rec = st.record(SPEC, 0.0, 0.0, 100.0)
    assert rec.status == "ok" and list(rec.token_times_s) == [1.0, 1.0, 2.0] and not rec.error


def test_continuous_usage_on_multi_token_chunks_with_empty_text():
    """vLLM's continuous usage stats: every chunk's usage is a running count, even where its text
    is empty (several tokens that decode to nothing yet)."""
    chunks = [{"choices": [{"index": 0, "text": ""}], "usage": {"completion_tokens": 2}},
              {"choices": [{"index": 0, "text": "abc", "finish_reason": "length"}], "usage": {"completion_tokens": 3}},
              {"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 3}}]
    rec = _feed(SseStream(continuous=True), chunks).record(SPEC, 0.0, 0.0, 100.0)
    assert rec.status == "ok" and list(rec.token_times_s) == [1.0, 1.0, 2.0] and rec.output_tokens == 3
