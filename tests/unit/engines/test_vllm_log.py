"""Reading vLLM logs (``orchestrator.engines.vllm.log``) on excerpts built from vLLM 0.26.0's own
message formats and on real vLLM 0.26.0 logs from an H200 (``tests/unit/engines/data/vllm_logs/``,
``h200_*``: llama2_7b shapes, dummy weights, enforce_eager): a failed cell's ``error`` leads with
the line that explains it and its status is right; the quantization method and linear kernel
vLLM chose are read from a start-up log and become runs columns."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import errors
from orchestrator.client.model_files import checkpoint_quant_method
from orchestrator.config.groups import WorkloadKind
from orchestrator.driver.grid import config_of
from orchestrator.engines import engine_for
from orchestrator.engines.vllm import common as vc
from orchestrator.engines.vllm import log as vl
from orchestrator.errors import CellFailure, Status
from orchestrator.store import cell_tables as results
from orchestrator.store.schema import RUNS_SCHEMA

LOGS = Path(__file__).parent / "data" / "vllm_logs"
ENGINE_DIED = RuntimeError("Engine core initialization failed. See root cause above. "
                           "Failed core proc(s): {'EngineCore': 1}")
NCCL = ("[rank0]:[W1129 10:15:13.402118331 ProcessGroupNCCL.cpp:1553] Warning: WARNING: destroy_process_group() "
        "was not called before program exit, which can leak resources. For more info, please see "
        "https://pytorch.org/docs/stable/distributed.html#shutdown (function operator())")


def log(name: str) -> str:
    return (LOGS / name).read_text()


# ------------------------------------------------------------------------------- failures


@pytest.mark.parametrize("name, exc, status, first", [
    ("offline_int8_missing_module.log", ENGINE_DIED, Status.engine_error,
     "ModuleNotFoundError: No module named 'bitsandbytes'"),
    ("serve_oom_profiling.log", None, Status.oom,
     "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 7.81 GiB. GPU 0 has a total capacity of "
     "139.81 GiB of which 3.12 GiB is free."),
    ("serve_bf16_on_t4.log", None, Status.unsupported,
     "ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0. Your Tesla T4 GPU "
     "has compute capability 7.5."),
    ("serve_unsupported_quantization.log", None, Status.unsupported,
     "ValueError: The quantization method fp8 is not supported for the current GPU. Minimum capability: 80. "
     "Current capability: 75."),
    ("h200_offline_bnb_no_weights.log", RuntimeError("Engine core initialization failed. See root cause above. "
                                                     "Failed core proc(s): {}"), Status.engine_error,
     "RuntimeError: No model weights found in: `/root/.cache/orchestrator/models/llama2_7b-none-float16-"),
    ("offline_engine_core_died.log", RuntimeError("Engine core initialization failed. See root cause above. "
                                                  "Failed core proc(s): {'EngineCore': -11}"), Status.engine_error,
     "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): "
     "{'EngineCore': -11}"),
])
def test_a_failed_cells_error_leads_with_the_explaining_line(name, exc, status, first):
    text = log(name)
    err = vl.failure_from_log("vllm failed to start", text, LOGS / name, exc)
    got_status, retryable = errors.classify(err)
    assert got_status is status and retryable is (status is Status.engine_error)
    error = errors.error_text(err)  # what the worker writes into the runs row's error
    assert error.splitlines()[0].startswith(first), error.splitlines()[0]
    assert "vllm failed to start" in error.splitlines()[1] and name in error.splitlines()[1]
    assert "--- log tail ---" in error and "destroy_process_group" not in error.splitlines()[0]


def test_the_root_cause_comes_before_its_wrappers():
    """A chained traceback prints its cause first; the frontend's wrapper comes last."""
    text = log("offline_int8_missing_module.log") + "\nRuntimeError: Engine core initialization failed. See root " \
                                                    "cause above. Failed core proc(s): {'EngineCore': 1}\n" + NCCL
    assert vl.explaining_line(text) == "ModuleNotFoundError: No module named 'bitsandbytes'"
    then = str(vl.failure_from_log("x", text, None)).splitlines()[2]
    assert then.startswith("then: ImportError: Please install bitsandbytes>=0.48.1") and "Engine core" in then
    real = log("h200_offline_bnb_no_weights.log")
    assert real.splitlines()[-1].startswith("[rank0]:[W1129") and "destroy_process_group" in real.splitlines()[-1]
    err = str(vl.failure_from_log("vllm.LLM failed to start", real, None, ENGINE_DIED)).splitlines()
    assert err[0].startswith("RuntimeError: No model weights found in:") and err[2] == "--- log tail ---"
    assert text.splitlines()[-1] == NCCL  # the old "last line of the log"


@pytest.mark.parametrize("line", [
    NCCL,
    "W1129 10:50:07.575000 3247964 torch/distributed/elastic/multiprocessing/api.py:897] Sending process 8 closing "
    "signal SIGTERM",
    "[Gloo] Rank 0 is connected to 0 peer ranks. Expected number of connected peer ranks is : 0",
    "Capturing CUDA graphs (decode, FULL): 100%|██████████| 11/11 [00:01<00:00,  7.12it/s]",
    "(EngineCore pid=7) WARNING 11-29 14:10:12 [auto_awq.py:323] Layer 'model.layers.0.mlp.down_proj' is not "
    "supported by AutoAWQMarlin. Falling back to unoptimized AWQ kernels.",
    "(APIServer pid=7) INFO 11-29 14:10:01 [model.py:1788] Using max model len 2048",
    "/root/site/torch/cuda/__init__.py:63: FutureWarning: The pynvml package is deprecated. Not supported.",
    "(EngineCore pid=7) ERROR 11-29 12:20:15 [core.py:1330]   File \"/root/site/vllm/platforms/cuda.py\", line 625",
])
def test_noise_never_explains_a_failure(line):
    assert vl.meaningful_lines(line) == [] and vl.explaining_line(line) is None


@pytest.mark.parametrize("line, want", [
    ("(EngineCore pid=9188) ERROR 11-29 11:03:01 [core.py:1330] RuntimeError: CUDA error: an illegal memory "
     "access was encountered", "RuntimeError: CUDA error: an illegal memory access was encountered"),
    ("\x1b[36m(EngineCore pid=1)\x1b[0m \x1b[31mERROR\x1b[0m \x1b[90m11-29 11:03:01\x1b[0m "
     "\x1b[90m[core.py:1330]\x1b[0m ValueError: bad",
     "ValueError: bad"),  # VLLM_LOGGING_COLOR=1: colours stripped
    ("CUDA driver error: device not ready", "CUDA driver error: device not ready"),
    ("(APIServer pid=3) vllm serve: error: argument --max-num-seqs: invalid int value: 'x'",
     "vllm serve: error: argument --max-num-seqs: invalid int value: 'x'"),
    ("[rank0]: AssertionError", "AssertionError"),
    ("torch._dynamo.exc.BackendCompilerFailed: backend='inductor' raised:",
     "torch._dynamo.exc.BackendCompilerFailed: backend='inductor' raised:"),
    ("ERROR 11-29 10:00:00 [gpu_model_runner.py:5345] Failed to load model - not enough GPU memory. (original "
     "error: CUDA out of memory. Tried to allocate 2.00 GiB)", None),
])
def test_explaining_line_formats(line, want):
    got = vl.explaining_line(line)
    if want is None:  # a known status's line: the cleaned line itself
        assert got == vl.clean_line(line)[1]
    else:
        assert got == want


def test_a_frontend_exception_is_the_last_line_of_the_log():
    """The offline frontend raises in the worker's process: its exception is not in the log."""
    err = vl.failure_from_log("vllm.LLM failed to start", "INFO 11-29 10:00:00 [model.py:623] Resolved architecture: "
                              "LlamaForCausalLM\n" + NCCL, None,
                              ValueError("Unknown quantization method: foo. Must be one of ['awq', 'fp8']."))
    assert isinstance(err, CellFailure) and err.status is Status.unsupported
    lines = str(err).splitlines()
    assert lines[0] == "ValueError: Unknown quantization method: foo. Must be one of ['awq', 'fp8']."
    assert lines[1] == "vllm.LLM failed to start: " + lines[0]


def test_error_text_of_other_exceptions_keeps_the_exception_line():
    """The hf engine's failures are plain exceptions raised in the worker."""
    assert errors.error_text(ValueError("engine.hf.dtype=x: no")) == "ValueError: engine.hf.dtype=x: no"
    assert errors.error_text(CellFailure(Status.unsupported, "no bf16")) == "no bf16"
    assert errors.error_text(vl.EngineStartError("ImportError: x\nmore")).splitlines()[0] == "ImportError: x"


# ------------------------------------------------------------------------------- what vLLM ran

CONFIG_LINE = "Initializing a V1 LLM engine (v%s) with config: %s"  # vllm/v1/engine/core.py


def startup(quantization: str, *kernel_lines: str, prefix: str = "(EngineCore pid=7790) ") -> str:
    """A start-up excerpt: vLLM's engine config line (``VllmConfig.__str__`` order) and kernel lines."""
    config = (f"model='/m', speculative_config=None, tokenizer='/m', dtype=torch.float16, max_seq_len=2048, "
              f"load_format=dummy, quantization={quantization}, quantization_config=None, enforce_eager=False, "
              f"kv_cache_dtype=auto, seed=0, enable_prefix_caching=False")
    lines = [f"{prefix}INFO 11-29 14:10:09 [core.py:117] " + CONFIG_LINE % ("0.26.0", config)]
    lines += [f"{prefix}INFO 11-29 14:10:12 [{src}] {msg}" for src, msg in kernel_lines]
    return "\n".join(lines)


@pytest.mark.parametrize("text, method, kernel", [
    (log("serve_awq_marlin_ok.log"), "auto_awq", "MarlinLinearKernel"),
    (log("h200_offline_awq.log"), "auto_awq", "MacheteLinearKernel"),  # sm90: Machete before Marlin
    (log("h200_offline_fp8.log"), "fp8", "CutlassFP8ScaledMMLinearKernel"),
    (log("h200_offline_bnb_no_weights.log"), "bitsandbytes", None),
    (startup("auto_gptq", ("auto_gptq.py:357", "Using %s for AutoGPTQLinearMethod" % "MacheteLinearKernel")),
     "auto_gptq", "MacheteLinearKernel"),
    (startup("fp8", ("__init__.py:637", "Selected %s for %s" % ("CutlassFP8ScaledMMLinearKernel",
                                                                "Fp8PerTensorOnlineLinearMethod"))),
     "fp8", "CutlassFP8ScaledMMLinearKernel"),
    (startup("fp8", ("__init__.py:637", "Selected %s for %s" % ("MarlinFP8ScaledMMLinearKernel",
                                                                "Fp8PerTensorOnlineLinearMethod")), prefix=""),
     "fp8", "MarlinFP8ScaledMMLinearKernel"),
    (startup("auto_awq", ("auto_awq.py:473", "Using MarlinLinearKernel for AutoAWQMarlinLinearMethod"),
             ("auto_awq.py:323", "Layer 'lm_head' is not supported by AutoAWQMarlin. Falling back to unoptimized "
                                 "AWQ kernels.")), "auto_awq", "MarlinLinearKernel, AutoAWQLinearMethod"),
    (log("serve_oom_profiling.log"), "none", None),  # quantization=None: unquantized, no kernel line
    ("Segmentation fault", None, None),
])
def test_engine_choices_from_the_startup_log(text, method, kernel):
    assert vl.engine_choices(text) == {"vllm_quantization_method": method, "vllm_linear_kernel": kernel}


def test_engine_choices_become_runs_columns():
    extra = {"vllm_quantization_method": "auto_awq", "vllm_linear_kernel": "MarlinLinearKernel", "x": 1}
    assert results.extra_columns(extra) == {"quantization_method": "auto_awq", "linear_kernel": "MarlinLinearKernel",
                                            "prefix_cache_reset": None}
    assert results.extra_columns({}) == {"quantization_method": None, "linear_kernel": None, "prefix_cache_reset": None}
    assert {"quantization_method", "linear_kernel"} <= set(RUNS_SCHEMA.names)


def test_read_head(tmp_path):
    p = tmp_path / "x.log"
    p.write_text("START" + "b" * 100)
    assert vl.read_head(p, 5) == "START" and vl.read_head(tmp_path / "none.log") == ""


# ------------------------------------------------------------------------------- which quantization is passed


def test_a_checkpoint_that_declares_the_cells_format_lets_vllm_pick(tmp_path):
    """vLLM 0.26 maps a checkpoint's ``quant_method`` (awq/gptq) to ``auto_awq``/``auto_gptq`` and picks
    the kernel; the name is passed only where the checkpoint does not declare the cell's format."""
    def args(overrides):
        return vc.engine_args(config_of(["engine=vllm", "gpu=h100", *overrides]), 8, "/m")

    assert checkpoint_quant_method(config_of(["model=llama2_7b_awq"]).model,
                                   config_of(["model=llama2_7b_awq"]).quantization) == "awq"
    assert "quantization" not in args(["model=llama2_7b_awq"])
    assert "quantization" not in args(["quantization=gptq"])
    assert args(["quantization=fp8"])["quantization"] == "fp8"  # fp8: dynamic from fp16 weights
    assert "quantization" not in args([])
    real = tmp_path / "gptq_ckpt"
    real.mkdir()
    (real / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "gptq", "bits": 4}}))
    assert "quantization" not in args(["quantization=gptq", f"model.path={real}"])
    assert args(["quantization=awq", f"model.path={real}"])["quantization"] == "awq"  # vLLM refuses the mismatch


def test_vllm_refuses_int8_before_launch_with_what_to_use():
    cls = engine_for("vllm", WorkloadKind.offline)
    assert "int8" not in cls.quantizations and "int8" in cls.refused_quantizations
    why = cls.quantization_refusal("int8")
    assert why.startswith("engine vllm does not run quantization int8: ") and "\n" not in why
    assert "4 bits" in why and "engine=hf" in why and "quantization=fp8" in why
