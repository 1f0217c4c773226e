"""``engine=auto``'s choice for one GPU type from what the cluster offers and what a node of the
type has installed (``placement.auto_choice``; the probe itself runs on a real cluster in
``tests/integration/test_auto_engine.py``)."""
from __future__ import annotations

from orchestrator.driver.placement import auto_choice

ALL = {m: (True, f"{m} 1.0") for m in ("vllm", "torch", "transformers", "bitsandbytes")}


def test_vllm_first_and_hf_as_its_fallback_where_the_gpu_has_both():
    choice = auto_choice("H100", True, ALL)
    assert (choice.engine, choice.reason) == ("vllm", "a H100 node has vllm 1.0")
    assert [(f.engine, f.reason) for f in choice.fallbacks] == [
        ("hf", "a H100 node has torch 1.0, transformers 1.0, bitsandbytes 1.0")]


def test_the_simulator_only_where_no_engine_can_measure():
    no_gpu = auto_choice("H100", False, {})
    assert (no_gpu.engine, no_gpu.reason, no_gpu.fallbacks) == ("simulated", "the Ray cluster offers no H100 GPU", ())
    missing = {**ALL, "vllm": (False, "vllm is not installed there"), "bitsandbytes": (False, "no wheel")}
    bare = auto_choice("T4", True, missing)
    assert bare.engine == "simulated" and bare.fallbacks == ()
    assert bare.reason == ("a T4 node has no usable vllm (vllm is not installed there); a T4 node has no usable "
                           "torch, transformers, bitsandbytes (no wheel)")


def test_hf_alone_measures_where_vllm_is_missing():
    choice = auto_choice("A100", True, {**ALL, "vllm": (False, "vllm is not installed there")})
    assert choice.engine == "hf" and choice.fallbacks == ()  # the simulator never backs a measuring engine
