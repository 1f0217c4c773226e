"""Key answers on hand-made points: the energy knee, the SLO range of an online series with the
reason each other batch fails, and quantization's energy ratio against the unquantized series."""
from __future__ import annotations

import pytest

from orchestrator.analysis import answers
from orchestrator.analysis.dataset import batch_points
from orchestrator.analysis.recommend import Slo
from orchestrator.report import answers as render
from tests.unit.analysis.test_analysis_tables import _cfg, frame, points_of, row


def offline(bs, j_tok, quantization="none"):
    # row() takes J/request; 128 output tokens per request
    return row(bs, 100.0 * bs, j_tok * 128, workload="offline", arrival="offline", quantization=quantization,
               cell_id=f"off-{quantization}-{bs}")


def test_the_knee_is_where_the_next_batch_saves_under_ten_percent():
    pts = points_of([offline(1, 2.0), offline(2, 1.0), offline(4, 0.6), offline(8, 0.55), offline(16, 0.40)])
    [k] = answers.energy_knees(pts)
    # 2.0 -> 1.0 (-50%), 1.0 -> 0.6 (-40%), 0.6 -> 0.55 (-8%: the knee is BS 4), 0.55 -> 0.40
    assert (k.first_batch, k.knee_batch, k.last_batch) == (1, 4, 16)
    assert (k.first_j_per_tok, k.knee_j_per_tok, k.last_j_per_tok) == pytest.approx((2.0, 0.6, 0.4))
    text = render.knee_sentence(k)
    assert "2,000 mJ per output token at BS 1" in text and "knee is BS 4" in text and "3.3× less" in text
    [steady] = answers.energy_knees(points_of([offline(1, 2.0), offline(2, 1.0)]))
    assert steady.knee_batch == steady.last_batch == 2 and "still saves" in render.knee_sentence(steady)


def test_slo_range_says_why_each_batch_fails():
    # row(): TTFT p99 = 100 x BS ms, TPOT p99 = 12 + BS ms
    pts = points_of([row(1, 100.0, 10.0, saturated=True), row(8, 400.0, 5.0), row(32, 900.0, 4.0),
                     row(256, 950.0, 4.0)])
    [r] = answers.slo_ranges(pts, Slo(ttft_p99_ms=5_000.0, tpot_p99_ms=100.0))
    assert r.passing == (8, 32) and r.offered_rate_rps == 20.0
    assert dict(r.failures) == {1: "saturated", 256: "TTFT p99 25,600 ms, TPOT p99 268.0 ms"}
    # J/token = J/request / 128: 5/128 at BS 8, 4/128 at BS 32 (the cheaper one that passes)
    assert r.passing_j_per_tok == pytest.approx((5 / 128, 4 / 128)) and r.cheapest == (32, pytest.approx(4 / 128))
    text = render.slo_sentence(r)
    assert "at 20 req/s" in text and "max-num-seqs 8, 32 meet them" in text and "BS 1: saturated" in text
    assert "least energy at BS 32: 31.25 mJ per output token (vs 39.06 mJ at BS 8)" in text, text
    [none] = answers.slo_ranges(pts, Slo(ttft_p99_ms=10.0, tpot_p99_ms=None))
    assert none.passing == () and "no max-num-seqs meets the SLOs" in render.slo_sentence(none)


def test_quantization_ratio_against_the_unquantized_series():
    pts = points_of([offline(1, 2.0), offline(64, 0.1), offline(256, 0.05),
                     offline(1, 1.0, "awq"), offline(64, 0.06, "awq")])
    rows = answers.quant_ratios(pts)
    assert [(r.batch_size, round(r.ratio, 3)) for r in rows] == [(1, 0.5), (64, 0.6)]
    assert rows[0].series.startswith("llama2_7b/awq") and rows[0].base_series.startswith("llama2_7b/none")
    text = render.quant_sentence(rows)
    assert "0.50 at BS 1 (1,000 vs 2,000 mJ), 0.60 at BS 64 (60 vs 100 mJ)" in text


def test_quantization_ratio_pairs_the_same_engine_options_or_names_the_difference():
    """AWQ with and without CUDA graphs against fp16 that ran both: each pairs with its own; when
    fp16 ran only with graphs, the eager AWQ ratio still comes, saying what it ran differently."""
    rows, cfgs = [], {}
    for quant, j in (("none", 2.0), ("awq", 1.0)):
        for eager in (False, True):
            cid = f"{quant}-{eager}"
            rows.append(offline(1, j * (3 if eager else 1), quant) | {"cell_id": cid})
            cfgs[cid] = _cfg(1, f"engine.vllm.enforce_eager={str(eager).lower()}", quantization=quant)
    ratios = answers.quant_ratios(batch_points(frame(rows, cfgs)))
    assert sorted((r.series, r.base_series, round(r.ratio, 2), r.differs) for r in ratios) == [
        ("llama2_7b/awq/h100 [enforce_eager=false]", "llama2_7b/none/h100 [enforce_eager=false]", 0.5, ()),
        ("llama2_7b/awq/h100 [enforce_eager=true]", "llama2_7b/none/h100 [enforce_eager=true]", 0.5, ())]
    only_graphs = [r for r in rows if r["cell_id"] != "none-True"]
    ratios = answers.quant_ratios(batch_points(frame(only_graphs, cfgs)))
    eager = next(r for r in ratios if "enforce_eager=true" in r.series)
    assert eager.base_series == "llama2_7b/none/h100" and eager.differs == ("enforce_eager=true",)
    assert round(eager.ratio, 2) == 1.5
    assert "(it ran enforce_eager=true; llama2_7b/none/h100 did not)" in render.quant_sentence([eager])


def test_quantization_ratio_across_engines_when_only_another_engine_ran_unquantized():
    """Seed 004's question: bitsandbytes INT8 on transformers against vLLM fp16 of the same model —
    paired across engines and saying so; with an hf fp16 series too, it pairs its own engine."""
    cells = {"int8": ("hf", "int8", 10.0), "fp16-vllm": ("vllm", "none", 2.5), "fp16-hf": ("hf", "none", 5.0)}

    def ratios(*ids):
        rows = [offline(1, cells[c][2], cells[c][1]) | {"cell_id": c, "engine": cells[c][0]} for c in ids]
        cfgs = {c: _cfg(1, engine=cells[c][0], quantization=cells[c][1]) for c in ids}
        return answers.quant_ratios(batch_points(frame(rows, cfgs)))

    [r] = ratios("int8", "fp16-vllm")
    assert r.base_series == "llama2_7b/none/h100" and r.differs == ("engine=hf",) and round(r.ratio, 2) == 4.0
    assert "(it ran engine=hf; llama2_7b/none/h100 did not)" in render.quant_sentence([r])
    [r] = ratios("int8", "fp16-vllm", "fp16-hf")
    assert r.base_series == "llama2_7b/none/h100 [hf]" and r.differs == () and round(r.ratio, 2) == 2.0


def test_an_engine_without_a_batch_knob_is_never_told_to_set_one():
    # an endpoint's server schedules its own batches: the answer is whether the server meets the SLOs
    pts = points_of([row(8, 400.0, 5.0, engine="endpoint")])
    [r] = answers.slo_ranges(pts, Slo(ttft_p99_ms=5_000.0, tpot_p99_ms=100.0))
    assert r.knob == "" and render.slo_sentence(r) == "**llama2_7b/none/h100** at 20 req/s (chat_medium): the server meets them."
    [miss] = answers.slo_ranges(pts, Slo(ttft_p99_ms=10.0, tpot_p99_ms=None))
    text = render.slo_sentence(miss)
    assert "the server does not meet them (TTFT p99 800 ms)" in text and "max-num-seqs" not in text, text
    hf = points_of([row(8, 400.0, 5.0, engine="hf")])
    assert "batch size 8 meets them" in render.slo_sentence(answers.slo_ranges(hf, Slo(5_000.0, 100.0))[0])
