"""Tables, recommendations, cost, compare and VRAM checks on small hand-made runs rows.

Rows go through the real store schema (``schema.runs_table``) and ``dataset.prepare_runs``, as a
loaded sweep's would; every expected number below is worked out by hand.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from orchestrator.analysis.compare import compare_points
from orchestrator.analysis.cost import CostAssumptions, cost_table
from orchestrator.analysis.dataset import (
    SweepData,
    SweepError,
    batch_points,
    prepare_runs,
    require_baseline,
    require_ok,
)
from orchestrator.analysis.energy import energy_table
from orchestrator.analysis.plots import batch_axis, pareto_front
from orchestrator.analysis.recommend import Slo, recommendations
from orchestrator.analysis.tables import detail_table, status_table, summary_table
from orchestrator.analysis.vram_table import vram_table
from orchestrator.config.fields import as_plain
from orchestrator.driver.grid import config_of
from orchestrator.report.markdown import series_label
from orchestrator.store import schema


def config(gpu="h100", workload="chat_medium", bs=1, repeat=0):
    """The typed cell config of a hand-made row: Llama-2-7B fp16 (6.74 B params, 512 KiB of KV per
    token), 256 input + 128 output tokens, vLLM at gpu_memory_utilization 0.9."""
    return config_of(["model=llama2_7b", "quantization=none", f"gpu={gpu}", f"workload={workload}",
                      "engine=vllm", f"batch_size={bs}", f"repeat={repeat}", "workload.input.mean_tokens=256",
                      "workload.output.mean_tokens=128", "engine.vllm.gpu_memory_utilization=0.9"])


def row(bs, tok_s, j_req, *, gpu="h100", workload="chat_medium", repeat=0, status="ok", **extra):
    """A runs row: latencies grow with the batch, energy per request ``j_req`` (J)."""
    r = {"cell_id": f"{workload}-{gpu}-{bs}-{repeat}", "sweep": "t", "status": status, "error": "", "engine": "vllm",
             "model": "llama2_7b", "quantization": "none", "gpu": gpu, "workload": workload, "arrival": "poisson",
             "batch_size": bs, "repeat": repeat, "schema_version": schema.SCHEMA_VERSION, "config_json": "",
             "input_tokens_mean_cfg": 256.0, "output_tokens_mean_cfg": 128.0}
    if status == "ok":
        r.update(output_throughput_tok_s=tok_s, request_throughput_rps=tok_s / 128, offered_rate_rps=20.0,
                 n_requests_measured=100, n_requests_ok=100, n_requests_total=110, n_requests_completed_in_window=90,
                 ttft_p50_ms=50.0 * bs, ttft_p99_ms=100.0 * bs, tpot_p50_ms=10.0 + bs, tpot_p99_ms=12.0 + bs,
                 e2e_p50_ms=1000.0 + 100 * bs, e2e_p99_ms=2000.0 + 100 * bs, mean_running_batch=bs * 0.9,
                 output_tokens_per_request_mean=128.0, input_tokens_per_request_mean=256.0,
                 energy_source="nvml", energy_j=j_req * 90, net_energy_j=(j_req - 2) * 90,
                 energy_per_request_j=j_req, net_energy_per_request_j=j_req - 2.0,
                 energy_per_1k_output_tokens_j=j_req / 128 * 1000,
                 net_energy_per_1k_output_tokens_j=(j_req - 2) / 128 * 1000,
                 idle_power_w=60.0, mean_power_w=300.0, gpu_util_mean_pct=80.0, saturated=False, short_window=False,
                 energy_mismatch=False, token_count_mismatch=False, energy_invalid=False)
    r.update(extra)
    return r


def frame(rows, configs=None):
    return prepare_runs(schema.runs_table(rows).to_pandas(), configs or {})


def points_of(rows):
    return batch_points(frame(rows).query("status == 'ok'"))


SERIES = [row(1, 100.0, 10.0), row(2, 190.0, 6.0), row(4, 350.0, 4.0), row(8, 360.0, 4.2, saturated=True)]


def test_flags_and_points():
    df = frame(SERIES + [row(16, 1, 1, energy_mismatch=True, saturated=True)])
    assert list(df["flags"]) == ["", "", "", "S", "S E"]
    assert list(df["series"].unique()) == ["llama2_7b/none/h100"]
    assert df["context_tokens"].iloc[0] == 256 + 128 / 2


def test_repeats_are_folded():
    pts = points_of([row(1, 100.0, 10.0), row(1, 110.0, 12.0, repeat=1, energy_mismatch=True)])
    assert len(pts) == 1
    p = pts.iloc[0]
    assert p["output_throughput_tok_s"] == 105.0 and p["energy_per_request_j"] == 11.0
    assert p["n_requests_measured"] == 200 and p["n_cells"] == 2 and p["flags"] == "E"


def test_summary_picks_best_throughput_and_best_energy():
    s = summary_table(points_of(SERIES), baseline_batch=1).iloc[0]
    assert s["tput_batch_size"] == 8 and s["energy_batch_size"] == 4
    assert s["tput_change_output_throughput_tok_s_pct"] == pytest.approx(260.0)
    assert s["energy_change_energy_per_request_j_pct"] == pytest.approx(-60.0)
    assert s["tput_change_ttft_p50_ms_pct"] == pytest.approx(700.0)  # 50 ms -> 400 ms
    assert s["tput_flags"] == "S" and s["base_flags"] == ""


def test_summary_without_baseline_has_no_changes():
    s = summary_table(points_of(SERIES[1:]), baseline_batch=1).iloc[0]
    assert np.isnan(s["base_output_throughput_tok_s"]) and np.isnan(s["tput_change_output_throughput_tok_s_pct"])


def test_missing_baseline_and_no_ok_cell_are_errors():
    with pytest.raises(SweepError, match="baseline batch size 3 is not in the sweep"):
        require_baseline(points_of(SERIES), 3)
    runs = frame([row(1, 0, 0, status="oom"), row(2, 0, 0, status="infeasible")])
    with pytest.raises(SweepError, match="no cell finished ok"):
        require_ok(SweepData(path="x", runs=runs, configs={}, _store=None))


def test_detail_table_changes_and_success():
    d = detail_table(points_of(SERIES), 1).set_index("batch_size")
    assert d.loc[4, "change_output_throughput_tok_s_pct"] == pytest.approx(250.0)
    assert d.loc[4, "change_tpot_p50_ms_pct"] == pytest.approx((14 - 11) / 11 * 100)
    assert d.loc[1, "success_pct"] == 100.0


def test_energy_table_gross_net_and_scaling():
    e = energy_table(points_of(SERIES), 1).set_index("batch_size")
    assert e.loc[4, "energy_per_request_j"] == 4.0 and e.loc[4, "net_energy_per_request_j"] == 2.0
    assert e.loc[4, "change_energy_per_request_j_pct"] == pytest.approx(-60.0)
    assert e.loc[4, "change_net_energy_per_request_j_pct"] == pytest.approx(-75.0)  # 8 J -> 2 J net
    assert e.loc[4, "throughput_scaling_x"] == pytest.approx(3.5)


def test_energy_not_measured_is_nan_not_zero():
    rows = [row(b, t, j, energy_source="none", energy_j=None, energy_per_request_j=None) for b, t, j in
            ((1, 100.0, 10.0), (2, 190.0, 6.0))]
    pts = points_of(rows)
    assert not pts["energy_measured"].any()
    assert energy_table(pts, 1)["energy_per_request_j"].isna().all()
    assert cost_table(pts, CostAssumptions(), 1).empty


def test_cost_table_by_hand():
    c = cost_table(points_of(SERIES), CostAssumptions(1_000_000, 0.10, 400.0), 1).set_index("batch_size")
    assert c.loc[1, "kwh_per_month"] == pytest.approx(10.0 * 1e6 / 3.6e6)
    assert c.loc[4, "cost_per_month"] == pytest.approx(4.0 * 1e6 / 3.6e6 * 0.10)
    assert c.loc[4, "kg_co2_per_month"] == pytest.approx(4.0 * 1e6 / 3.6e6 * 0.4)
    assert c.loc[4, "saving_cost_per_month"] == pytest.approx(6.0 * 1e6 / 3.6e6 * 0.10)
    assert c.loc[4, "saving_pct"] == pytest.approx(60.0) and c.loc[1, "saving_pct"] == 0.0


def test_recommendations_follow_the_rules():
    rows = SERIES + [row(16, 400.0, 3.0, ttft_p99_ms=5000.0)]
    r = recommendations(points_of(rows), Slo(ttft_p99_ms=2000.0, tpot_p99_ms=100.0)).set_index("scenario")
    # eligible: BS 1, 2, 4 (BS 8 saturated, BS 16 over the TTFT SLO)
    assert (r["n_eligible"] == 3).all()
    assert r.loc["latency", "batch_size"] == 1
    assert r.loc["throughput", "batch_size"] == 4
    assert r.loc["cost", "batch_size"] == 4
    # balanced: tok/s per s of E2E p50: 100/1.1, 190/1.2, 350/1.4 -> BS 4
    assert r.loc["balanced", "batch_size"] == 4
    assert "350" in r.loc["throughput", "reason"]


def test_throughput_prefers_the_smaller_batch_within_5_percent():
    rows = [row(1, 100.0, 10.0), row(2, 300.0, 5.0), row(4, 310.0, 4.0)]
    r = recommendations(points_of(rows), Slo(None, None)).set_index("scenario")
    assert r.loc["throughput", "batch_size"] == 2 and "within 5%" in r.loc["throughput", "reason"]


def test_no_eligible_point_is_explained():
    rows = [row(b, 100.0 * b, 10.0 / b, saturated=True) for b in (1, 2)]
    r = recommendations(points_of(rows), Slo())
    assert r["batch_size"].isna().all()
    assert "2 of 2 saturated" in r["reason"].iloc[0]


def test_status_table_keeps_only_failed_cells():
    runs = frame(SERIES + [row(64, 0, 0, status="oom", error="CUDA out of memory\ntrace...")])
    st = status_table(runs)
    assert list(st["status"]) == ["oom"] and list(st["reason"]) == ["CUDA out of memory"]


def test_pareto_front():
    df = pd.DataFrame({"x": [1, 2, 3, 2.5, 4], "y": [1, 2, 5, 6, 4]})
    assert list(pareto_front(df, "x", "y").index) == [0, 1, 4]


def test_compare_matches_on_the_shared_axes():
    a = points_of([row(1, 100.0, 10.0, gpu="t4"), row(8, 400.0, 3.0, gpu="t4")])
    b = points_of([row(1, 300.0, 5.0, gpu="h100"), row(8, 900.0, 2.0, gpu="h100"), row(16, 1.0, 1.0, gpu="h100")])
    c = compare_points(a, b)
    assert c.compared == ["gpu"] and "gpu" not in c.keys and (c.only_a, c.only_b) == (0, 1)
    t = c.table.set_index("batch_size")
    assert t.loc[1, "change_output_throughput_tok_s_pct"] == pytest.approx(200.0)
    assert t.loc[8, "change_energy_per_request_j_pct"] == pytest.approx(-100 / 3)


def test_vram_cross_checks():
    rows = [row(8, 100.0, 1.0, memory_used_max_mib=0.9 * 79.6 * 1024),
            row(16, 0, 0, status="oom"), row(512, 0, 0, status="infeasible")]
    configs = {r["cell_id"]: config(bs=r["batch_size"]) for r in rows}
    c = configs[rows[0]["cell_id"]]
    assert (c.model.n_layers, c.model.hidden_size, c.model.n_kv_heads, c.gpu.memory_gib) == (32, 4096, 32, 79.6)
    v = vram_table(frame(rows, configs), configs).iloc[0]
    # budget at the largest swept batch (512): activations 2048 x 76,800 B + 512 x 32,000 x 4 B of logits
    act_gib = (2048 * 76_800 + 512 * 32_000 * 4) / 2**30
    assert v["context_tokens"] == 384
    assert v["max_batch"] == int((79.6 * 0.9 - 13_476_298_752 / 2**30 - act_gib - 1.0) // 0.1875) == 308
    assert (v["n_ok"], v["n_oom"], v["n_infeasible"], v["n_oom_within_fit"]) == (1, 1, 1, 1)
    assert v["measured_memory_gib"] == pytest.approx(71.64) and v["memory_check"] == "consistent"
    assert not v["fits_at_bs_max"]


def test_compare_keeps_every_variant_of_one_side():
    """Measured CUDA graphs and eager (two series on one point) against a simulator that predicts
    one number for both: each variant gets its own row against the single prediction; when both
    sides have the variants they pair by series label."""
    graphs, eager = row(1, 100.0, 10.0), {**row(1, 80.0, 12.0), "cell_id": "eager"}
    eager_cfg = config_of(["model=llama2_7b", "quantization=none", "gpu=h100", "workload=chat_medium",
                           "engine=vllm", "batch_size=1", "engine.vllm.enforce_eager=true"])
    a = batch_points(frame([graphs, eager], {graphs["cell_id"]: config(), "eager": eager_cfg}))
    assert a["series"].nunique() == 2
    b = points_of([row(1, 90.0, 11.0, gpu="h200")])
    c = compare_points(a, b)
    assert c.variants and (c.only_a, c.only_b) == (0, 0) and len(c.table) == 2
    changes = sorted(c.table["change_output_throughput_tok_s_pct"])
    assert changes == [pytest.approx(-10.0), pytest.approx(12.5)]
    b2 = a.copy()
    b2["output_throughput_tok_s"] = b2["output_throughput_tok_s"] * 2
    both = compare_points(a, b2)
    assert both.variants and len(both.table) == 2 and (both.table["series_a"] == both.table["series_b"]).all()
    assert list(both.table["change_output_throughput_tok_s_pct"]) == [pytest.approx(100.0)] * 2
    assert not compare_points(a.iloc[:1], b).variants


def test_a_series_is_what_the_cells_measured_not_how_their_config_was_written():
    """Cells measured by two sweeps, one written before an option of another engine existed (the
    study's chat cells and the energy search's, on the same H200): their stored configs differ in
    ``engine.simulated`` only, which a vLLM cell's identity leaves out, so they are one series;
    a vLLM option of their own (CUDA graphs off) still makes two."""
    import dataclasses

    cfgs = {f"chat_medium-h100-{bs}-0": config(bs=bs) for bs in (1, 2, 4)}
    old = cfgs["chat_medium-h100-2-0"]
    sim = dataclasses.replace(old.engine.simulated, quantized_weight_efficiency={"awq": 0.3})
    cfgs["chat_medium-h100-2-0"] = dataclasses.replace(old, engine=dataclasses.replace(old.engine, simulated=sim))
    rows = SERIES[:3]
    assert frame(rows, cfgs)["series"].nunique() == 1
    eager = dataclasses.replace(old.engine, vllm=dataclasses.replace(old.engine.vllm, enforce_eager=True))
    cfgs["chat_medium-h100-4-0"] = dataclasses.replace(cfgs["chat_medium-h100-4-0"], engine=eager)
    assert sorted(frame(rows, cfgs)["series"].unique()) == ["llama2_7b/none/h100 [enforce_eager=false]",
                                                              "llama2_7b/none/h100 [enforce_eager=true]"]


def _cfg(bs, *overrides, engine="vllm", quantization="none", workload="offline"):
    return config_of(["model=llama2_7b", f"quantization={quantization}", "gpu=h100", f"workload={workload}",
                      f"engine={engine}", f"batch_size={bs}", *overrides])


def test_series_labels_name_what_tells_the_variants_apart():
    """Variants of one model/quantization/GPU/workload are labelled by the options whose values
    differ among the variants of one engine, and by the engine when several ran; a point with one
    variant keeps the plain label; more than three differing options end in the variant's digest."""
    rows = [row(1, 10.0, 5.0, workload="offline", cell_id=c, engine=e, quantization=q)
            for c, e, q in (("t0", "hf", "int8"), ("t6", "hf", "int8"), ("v", "vllm", "int8"), ("fp", "vllm", "none"))]
    cfgs = {"t0": _cfg(1, "engine.hf.int8_threshold=0.0", engine="hf", quantization="int8"),
            "t6": _cfg(1, "engine.hf.int8_threshold=6.0", engine="hf", quantization="int8"),
            "v": _cfg(1, quantization="int8"), "fp": _cfg(1)}
    labels = dict(zip(frame(rows, cfgs)["cell_id"], frame(rows, cfgs)["series"]))
    assert labels == {"t0": "llama2_7b/int8/h100 [hf, int8_threshold=0.0]",
                      "t6": "llama2_7b/int8/h100 [hf, int8_threshold=6.0]",
                      "v": "llama2_7b/int8/h100 [vllm]", "fp": "llama2_7b/none/h100"}
    many = ["engine.vllm.enforce_eager=true", "engine.vllm.max_model_len=1024", "engine.vllm.enable_prefix_caching=true",
            "engine.vllm.gpu_memory_utilization=0.8"]
    rows = [row(1, 10.0, 5.0, workload="offline", cell_id=c) for c in ("a", "b")]
    f = frame(rows, {"a": _cfg(1), "b": _cfg(1, *many)})
    a, b = f.set_index("cell_id")["series"], f.set_index("cell_id")["variant"]
    assert a["b"] == f"llama2_7b/none/h100 [enable_prefix_caching=true, enforce_eager=true, gpu_memory_utilization=0.8, …#{b['b']}]"
    assert a["a"].startswith("llama2_7b/none/h100 [enable_prefix_caching=false, enforce_eager=false, ")
    assert series_label(f.set_index("cell_id").loc["a"]) == "llama2_7b/none" + a["a"][len("llama2_7b/none/h100"):]
    rows.append(row(1, 10.0, 5.0, workload="offline", cell_id="c"))  # no stored config
    f = frame(rows, {"a": _cfg(1), "b": _cfg(1, "engine.vllm.enforce_eager=true")}).set_index("cell_id")["series"]
    assert dict(f) == {"a": "llama2_7b/none/h100 [enforce_eager=false]", "b": "llama2_7b/none/h100 [enforce_eager=true]",
                       "c": "llama2_7b/none/h100 [no stored config]"}


def test_prediction_errors_split_held_out_from_fitted():
    """A 'prediction' (h200 rows) against 'measurements' (also h200: same grid): fitted on the
    offline points, held out on chat. Errors worked out by hand from the rows' numbers."""
    from orchestrator.analysis.prediction_error import FitSelection, prediction_errors

    measured = [row(1, 100.0, 10.0, workload="offline"), row(8, 400.0, 4.0, workload="offline"),
                row(1, 100.0, 10.0), row(8, 400.0, 4.0), row(32, 800.0, 2.0)]
    predicted = [row(1, 102.0, 10.0, workload="offline"), row(8, 396.0, 4.4, workload="offline"),
                 row(1, 150.0, 12.0), row(8, 380.0, 4.0), row(32, 880.0, 1.0)]
    c = compare_points(points_of(measured), points_of(predicted))
    selection = FitSelection(quantization="none", workload="offline", model="llama2_7b", gpu="h100")
    assert list(selection.fitted(c.table)) == [False, False, False, True, True]  # sorted: chat_medium first
    e = prediction_errors(c.table, selection).set_index("group")
    assert list(e.index) == ["none · chat_medium", "all held out", "none · offline", "all fitted"]
    held = e.loc["all held out"]
    assert held["points"] == 3 and held["held_out"]
    # tok/s errors +50%, -5%, +10%; J/token +20%, 0%, -50%
    assert held["output_throughput_tok_s_median_abs_error_pct"] == pytest.approx(10.0)
    assert held["output_throughput_tok_s_max_abs_error_pct"] == pytest.approx(50.0)
    assert held["energy_per_output_token_j_median_abs_error_pct"] == pytest.approx(20.0)
    assert held["energy_per_output_token_j_max_abs_error_pct"] == pytest.approx(50.0)
    fitted = e.loc["all fitted"]  # tok/s +2%, -1%; J/token 0%, +10%
    assert fitted["points"] == 2 and not fitted["held_out"]
    assert fitted["output_throughput_tok_s_median_abs_error_pct"] == pytest.approx(1.5)
    assert fitted["energy_per_output_token_j_max_abs_error_pct"] == pytest.approx(10.0)
    other_gpu = FitSelection(quantization="none", workload="offline", gpu="a100")
    assert not other_gpu.fitted(c.table).any()


def test_prediction_errors_per_variant_and_per_engine():
    """Two bitsandbytes thresholds (hf) and a vLLM cell measured, one prediction per point: each
    threshold is its own group, and the held-out side is summarised per engine too."""
    from orchestrator.analysis.prediction_error import FitSelection, prediction_errors

    kw = dict(workload="offline", quantization="int8")
    measured = [row(1, 10.0, 5.0, cell_id="t0", engine="hf", **kw), row(1, 8.0, 5.0, cell_id="t6", engine="hf", **kw),
                row(2, 100.0, 5.0, cell_id="v", **kw)]
    cfgs = {"t0": _cfg(1, "engine.hf.int8_threshold=0.0", engine="hf", quantization="int8"),
            "t6": _cfg(1, "engine.hf.int8_threshold=6.0", engine="hf", quantization="int8"),
            "v": _cfg(2, quantization="int8")}
    a = batch_points(frame(measured, cfgs))
    b = points_of([row(1, 20.0, 5.0, **kw), row(2, 110.0, 5.0, **kw)])
    c = compare_points(a, b)
    e = prediction_errors(c.table, FitSelection(quantization="none", workload="offline")).set_index("group")
    assert list(e.index) == ["int8 [hf, int8_threshold=0.0] · offline", "int8 [hf, int8_threshold=6.0] · offline",
                             "int8 [vllm] · offline", "all held out",
                             "held out, hf engine", "held out, vllm engine"]
    tok = "output_throughput_tok_s_median_abs_error_pct"
    assert e.loc["int8 [hf, int8_threshold=6.0] · offline", tok] == pytest.approx(150.0)  # 20 against 8
    assert e.loc["held out, hf engine", tok] == pytest.approx(125.0)  # +100% and +150%
    assert e.loc["held out, vllm engine", tok] == pytest.approx(10.0)
    assert e.loc["all held out", "points"] == 3


def test_rows_without_config_from_two_engines_stay_two_series():
    rows = [row(1, 10.0, 5.0, workload="offline", cell_id="h", engine="hf"),
            row(1, 20.0, 5.0, workload="offline", cell_id="v")]
    f = frame(rows).set_index("cell_id")["series"]
    assert dict(f) == {"h": "llama2_7b/none/h100 [hf, no stored config]", "v": "llama2_7b/none/h100 [vllm, no stored config]"}
    assert len(batch_points(frame(rows))) == 2


def test_compare_pairs_variants_by_identity_when_both_sweeps_ran_them():
    """Two sweeps with the same two variants (graphs, eager) pair by identity digest even when a
    third variant in one of them makes its labels read differently."""
    graphs = row(1, 100.0, 10.0, workload="offline", cell_id="g")
    eager = row(1, 50.0, 20.0, workload="offline", cell_id="e")
    cfgs = {"g": _cfg(1), "e": _cfg(1, "engine.vllm.enforce_eager=true"),
            "x": _cfg(1, "engine.vllm.gpu_memory_utilization=0.8")}
    a = batch_points(frame([graphs, eager], cfgs))
    b_rows = [graphs | {"output_throughput_tok_s": 110.0}, eager | {"output_throughput_tok_s": 40.0},
              row(1, 70.0, 10.0, workload="offline", cell_id="x")]
    b = batch_points(frame(b_rows, cfgs))
    assert set(a["series"]) != set(b["series"]) - {"llama2_7b/none/h100 [gpu_memory_utilization=0.8]"}
    c = compare_points(a, b)
    assert (c.only_a, c.only_b) == (0, 1) and len(c.table) == 2
    got = dict(zip(c.table["series_a"], c.table["change_output_throughput_tok_s_pct"]))
    assert got == {"llama2_7b/none/h100 [enforce_eager=false]": pytest.approx(10.0),
                   "llama2_7b/none/h100 [enforce_eager=true]": pytest.approx(-20.0)}


def test_the_throughput_plot_draws_each_variant_as_its_own_line(tmp_path, monkeypatch):
    from orchestrator.analysis import plots

    rows = [row(b, t, 5.0, workload="offline", cell_id=f"{c}{b}") for c, f in (("g", 1.0), ("e", 0.5))
            for b, t in ((1, 100.0 * f), (8, 700.0 * f))]
    cfgs = {f"g{b}": _cfg(b) for b in (1, 8)} | {f"e{b}": _cfg(b, "engine.vllm.enforce_eager=true") for b in (1, 8)}
    pts = batch_points(frame(rows, cfgs))
    assert sorted(plots._short(pts).unique()) == ["llama2_7b/none [enforce_eager=false]",
                                                  "llama2_7b/none [enforce_eager=true]"]
    from matplotlib.figure import Figure

    drawn, save = [], Figure.savefig  # the lines of the figure as it is saved (then saved for real)

    def spy(fig, *args, **kwargs):
        drawn.extend(ln for ax in fig.axes for ln in ax.get_lines() if not ln.get_label().startswith("_"))
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    plots.plot_throughput(pts, tmp_path / "t.png")
    lines = {ln.get_label(): list(ln.get_ydata()) for ln in drawn}
    assert lines == {"llama2_7b/none [enforce_eager=false]": [100.0, 700.0],
                     "llama2_7b/none [enforce_eager=true]": [50.0, 350.0]}
    assert (tmp_path / "t.png").stat().st_size > 0


def test_a_row_that_ran_on_the_cpu_says_so_and_batch_size_is_named_per_engine():
    cpu = row(1, 10.0, 50.0, engine="hf", engine_extra=json.dumps({"device": "cpu", "dtype": "float32"}))
    gpu = row(2, 20.0, 40.0, engine="hf", engine_extra=json.dumps({"device": "cuda", "gpu": "NVIDIA H100"}))
    sim = row(4, 30.0, 30.0, workload="offline", engine="simulated")
    df = frame([cpu, gpu, sim])
    assert list(df["device"]) == ["cpu", "gpu", "gpu"]
    assert sorted(df["gpu"]) == ["cpu", "h100", "h100"]  # the config said h100; the CPU measured it
    assert set(df.loc[df["device"] == "cpu", "series"]) == {"llama2_7b/none/cpu"}
    assert dict(zip(df["engine"], df["batch_knob"])) == {"hf": "batch size", "simulated": "max-num-seqs"}
    points = batch_points(df)
    assert set(points["device"]) == {"cpu", "gpu"} and "batch_knob" in points
    assert batch_axis(points) == "batch size (max-num-seqs)"
    assert batch_axis(points[points["engine"] == "hf"]) == "batch size"


def test_how_a_server_cell_was_measured_stands_next_to_its_numbers_and_the_default_api_is_named():
    """Two cells of one server over the two APIs: each series is labelled with its API (the
    completions one although its identity leaves the default out), and the detail table says how
    each point was measured; a store whose rows do not say has no such column."""
    axes = ["engine=vllm", "gpu=h100", "model=llama2_7b", "workload=chat_medium", "batch_size=8"]
    configs = {}
    rows = []
    for api, count in (("completions", "usage"), ("chat", "tokenized")):
        cfg = config_of([*axes, f"engine.vllm.api={api}"])
        cid = f"c-{api}"
        configs[cid] = cfg
        rows.append(row(8, 100.0, 10.0, cell_id=cid, api=api, token_count_source=count, itl_basis="chunk",
                        config_json=json.dumps(as_plain(cfg))))
    df = frame(rows, configs)
    assert sorted(df["series"]) == ["llama2_7b/none/h100 [api=chat]", "llama2_7b/none/h100 [api=completions]"]
    detail = detail_table(batch_points(df))
    assert sorted(detail["how_measured"]) == ["chat; tokens counted from tokenized; ITL per chunk",
                                             "completions; tokens counted from usage; ITL per chunk"]
    assert "how_measured" not in detail_table(batch_points(frame(SERIES)))
