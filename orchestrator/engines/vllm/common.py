"""What the vLLM engines share: their options schema, capabilities, engine arguments, logs and
GPU checks (``vllm_offline``: static batches in-process; ``vllm_server``: ``vllm serve`` driven by
the streaming client). Both run with the same engine arguments (``engine_args``): the model
directory from ``models.model_dir`` with ``load_format="dummy"``, the ``engine.vllm`` knobs,
``quantization`` from ``quantization.vllm_quantization`` (left to vLLM when the directory's
``config.json`` declares that format), the seed, and ``disable_log_stats=False``
(vLLM only keeps per-request timestamps with stats on). vLLM's compile cache and the kernel
caches live in ``engine.vllm.compile_cache_dir`` (``cache_env``), kept between cells. Engine output goes to a
log file (``new_log_path``, ``output_to``) that ``vllm_log`` reads: why a start failed, and the
quantization method and kernels vLLM chose; after a start, ``start_phases`` reads where its
seconds went. ``vllm`` and ``torch`` are imported inside
functions only.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Dict, Iterator, List, Mapping, Optional, Tuple

from orchestrator.client.model_files import checkpoint_quant_method, model_dir
from orchestrator.client.workload import RequestSpec
from orchestrator.config.engine_options import VllmOptions
from orchestrator.config.groups import Weights
from orchestrator.energy.gpuinfo import GpuIdentity, check_gpu_types, gpu_processes, memory_used_mib
from orchestrator.engines.base import Engine, GpuUse
from orchestrator.engines.vllm.log import engine_choices, read_head
from orchestrator.engines.vllm.start_phases import EXTRA_KEY as START_PHASES_KEY
from orchestrator.engines.vllm.start_phases import engine_core_pid, parse_start_phases, process_created_unix_s
from orchestrator.engines.vllm.step_recorder import SCHEDULER_CLS, STEPS_FILE_ENV, SYNC_SCHEDULER_CLS, new_steps_file
from orchestrator.errors import CellFailure

if TYPE_CHECKING:
    from orchestrator.config.root import CellConfig

log = logging.getLogger(__name__)

LOG_DIR_ENV = "ORCHESTRATOR_LOG_DIR"
MEMORY_MARGIN_MIB = 512.0
MEMORY_WAIT_S = 60.0


def vllm_options(config: "CellConfig") -> VllmOptions:
    return config.engine.vllm


INT8_REFUSAL = ("vLLM's in-flight bitsandbytes quantizes to 4 bits (its BitsAndBytesConfig defaults to "
                "load_in_4bit) and forces load_format=bitsandbytes (real weights only), so the cell would not "
                "run 8-bit weights; use engine=hf for bitsandbytes LLM.int8, or quantization=fp8 for 8-bit "
                "weights under vLLM")
"""Why the vllm engines refuse ``quantization=int8`` (vLLM 0.26.0: ``BitsAndBytesConfig.__init__``
defaults, ``get_quant_config``'s in-flight ``from_config({})``, ``EngineArgs.create_load_config``)."""


class VllmEngine(Engine):
    """Capabilities and GPU plumbing common to the two vLLM engines."""

    quantizations = frozenset({"none", "awq", "gptq", "fp8"})
    refused_quantizations = MappingProxyType({"int8": INT8_REFUSAL})
    gpu = GpuUse.required
    auto_rank = 0
    auto_modules = ("vllm",)
    typical_start_s = 120.0  # one H200: 67-106 s with the compile cache warm, 160-208 s cold
    tensor_parallel = True  # tensor_parallel_size GPUs of one node, multiprocessing workers
    options: VllmOptions

    def __init__(self, config: "CellConfig", max_batch_size: int):
        super().__init__(config, max_batch_size)
        self._gpu: Optional[GpuIdentity] = None
        self._gpus: List[GpuIdentity] = []  # every GPU the cell spans (tensor parallelism), the first is _gpu
        self._log_path: Optional[Path] = None
        self._start_info: Dict = {}

    def _claim_gpu(self) -> None:
        """Check the type of every GPU the cell spans (``wrong_gpu``) and wait until each has the
        memory vLLM asks for."""
        self._gpus = check_gpu_types(self.config.gpu.nvml_name_contains, int(self.config.tensor_parallel_size))
        self._gpu = self._gpus[0]
        seen = [wait_for_gpu_memory(g, self.options.gpu_memory_utilization) for g in self._gpus]
        # several GPUs: the waits add up, the memory found in use is the most of any
        self._start_info = {k: (sum if k.endswith("_wait_s") else max)(s[k] for s in seen) for k in seen[0]}

    def energy_gpu_uuids(self) -> Tuple[str, ...]:
        """Every GPU of a cell that spans several (summed, each its own column); () for one."""
        return tuple(g.uuid for g in self._gpus) if len(self._gpus) > 1 else ()

    def _note_engine_choices(self, method: Optional[str] = None, launched_unix_s: Optional[float] = None,
                             ready_unix_s: Optional[float] = None, from_spare: Optional[bool] = None) -> None:
        """Put what vLLM ran into the run's extra: ``vllm_quantization_method`` and
        ``vllm_linear_kernel`` from the start-up log (``vllm_log.engine_choices``); ``method``
        (the frontend's own ``model_config.quantization``), when known, wins over the log. And
        where the start's seconds went (``start_phases``, under ``start_phases.EXTRA_KEY``),
        between our launch and ready times (``time.time()``); ``from_spare``: whether a spare
        process with its imports done served the launch (servers; None: not applicable)."""
        text = read_head(self._log_path)
        choices = engine_choices(text)
        if method is not None:
            choices["vllm_quantization_method"] = method
        self._start_info.update(choices)
        try:
            created = process_created_unix_s(engine_core_pid(text))  # while it runs
            phases = parse_start_phases(text, launched_unix_s, ready_unix_s, created)
        except Exception as exc:  # what the start cost is a note: it never fails a start that succeeded
            log.warning("vllm: could not read the start phases from %s: %s", self._log_path, exc)
            return
        self._start_info[START_PHASES_KEY] = dataclasses.replace(phases, from_spare=from_spare).as_extra()

    def versions(self) -> Dict[str, str]:
        return engine_versions(self._gpu)

    def gpu_uuid(self) -> Optional[str]:
        return self._gpu.uuid if self._gpu is not None else None


def engine_args(config: "CellConfig", max_num_seqs: int, model_path: str) -> Dict:
    """The ``vllm.EngineArgs`` fields of a cell (``LLM(**args)``; ``serve_flags`` for the CLI).

    ``max_num_seqs``: the most sequences vLLM runs at once (offline: the largest batch of the
    cells sharing the engine; server: the cell's batch size)."""
    opts, quant = vllm_options(config), config.quantization
    args = {
        "model": str(model_path),
        "load_format": "auto" if config.model.weights is Weights.real else "dummy",
        "max_num_seqs": int(max_num_seqs),
        "enforce_eager": bool(opts.enforce_eager),
        "enable_chunked_prefill": bool(opts.enable_chunked_prefill),
        "enable_prefix_caching": bool(opts.enable_prefix_caching),
        "scheduling_policy": opts.scheduling_policy.value,
        "gpu_memory_utilization": float(opts.gpu_memory_utilization),
        "max_model_len": int(opts.max_model_len),
        "dtype": opts.dtype,
        "seed": int(config.workload.seed),
        "disable_log_stats": False,
    }
    if opts.max_num_batched_tokens:
        args["max_num_batched_tokens"] = int(opts.max_num_batched_tokens)
    tp = int(config.tensor_parallel_size)
    if tp > 1:  # one worker process per GPU of the task's own allocation (Ray's backend would ask Ray for GPUs again)
        args.update(tensor_parallel_size=tp, distributed_executor_backend="mp")
    extra = parse_extra_args(opts.extra_args or {})
    if opts.record_steps:  # vLLM's scheduler with a log of every step (engines.vllm.step_recorder)
        args["scheduler_cls"] = SCHEDULER_CLS if extra.get("async_scheduling", True) is not False else SYNC_SCHEDULER_CLS
    # A checkpoint whose config.json declares the cell's format (AWQ/GPTQ): vLLM detects the
    # method (0.26: auto_awq / auto_gptq) and picks its kernel (Machete/Marlin) as for a real
    # checkpoint. Otherwise the name is passed: fp8 quantizes fp16 weights online, and vLLM
    # refuses a checkpoint of another format.
    if quant.vllm_quantization and checkpoint_quant_method(config.model, quant) != quant.vllm_quantization:
        args["quantization"] = quant.vllm_quantization
    args.update(extra)  # the user's extra arguments win
    return args


def parse_extra_args(extra: Mapping[str, str]) -> Dict:
    """``engine.vllm.extra_args`` (strings from YAML/CLI) -> EngineArgs fields: keys in
    snake_case, values parsed as YAML scalars (``"true"`` -> True, ``"8192"`` -> 8192)."""
    import yaml

    out = {}
    for key, value in extra.items():
        name = str(key).lstrip("-").replace("-", "_")
        out[name] = yaml.safe_load(value) if isinstance(value, str) else value
    return out


STORE_TRUE_FLAGS = ("disable_log_stats",)  # plain switches: no --no-<flag> form


def serve_flags(args: Mapping) -> List[str]:
    """``vllm serve`` flags for EngineArgs fields (the model is positional, not here): booleans
    as ``--x`` / ``--no-x`` (vLLM's BooleanOptionalAction), dicts and lists as JSON."""
    out: List[str] = []
    for key, value in args.items():
        if key == "model" or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                out.append(flag)
            elif key not in STORE_TRUE_FLAGS:
                out.append("--no-" + flag[2:])
        elif isinstance(value, (dict, list)):
            out += [flag, json.dumps(value)]
        else:
            out += [flag, str(value)]
    return out


# the kernel caches a fresh machine fills in its first engine start (Triton kernels, FlashInfer's
# JIT-built modules, the driver's PTX cache, torch C++ extensions: 80-113 s of a first start of
# 138-154 s on H200s, 214.5 s on an H100, FlashInfer's sampling module alone 103.6 s there), each
# under its own folder of the compile cache dir; each keys its entries by its own version and the
# GPU's architecture, so one dir serves any vLLM version and GPU (FlashInfer's modules only where its
# sources are older than them: it runs ninja, which rebuilds on mtimes, before it loads one)
KERNEL_CACHE_ENV = MappingProxyType({"TRITON_CACHE_DIR": "triton", "FLASHINFER_WORKSPACE_BASE": "flashinfer",
                                     "CUDA_CACHE_PATH": "nv_compute_cache",
                                     "TORCH_EXTENSIONS_DIR": "torch_extensions"})


def cache_env(config: "CellConfig", steps_file: Optional[Path] = None) -> Dict[str, str]:
    """Environment of a vLLM engine: its caches in ``engine.vllm.compile_cache_dir``, kept
    between cells (a shared folder keeps them between machines): vLLM's own (``VLLM_CACHE_ROOT``:
    torch.compile artefacts, FlashInfer autotuning) and the kernel caches of ``KERNEL_CACHE_ENV``,
    each in a folder of the dir unless this process's environment already names one (vLLM's and
    the libraries' defaults when the option is empty); no usage reporting, no model hub (models
    are local), and where its scheduler logs its steps (``steps_file``; this package importable in
    its processes)."""
    env = {"VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"}
    if steps_file is not None:
        env[STEPS_FILE_ENV] = str(steps_file)
        root = str(Path(__file__).resolve().parents[3])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    d = vllm_options(config).compile_cache_dir
    if d:
        path = Path(os.path.expanduser(d))
        path.mkdir(parents=True, exist_ok=True)
        env["VLLM_CACHE_ROOT"] = str(path)
        env.update({name: str(path / folder) for name, folder in KERNEL_CACHE_ENV.items()
                    if not os.environ.get(name)})
    return env


def steps_file_for(config: "CellConfig") -> Optional[Path]:
    """A fresh file for the engine's step log, where ``engine.vllm.record_steps`` (else None)."""
    return new_steps_file(log_dir()) if vllm_options(config).record_steps else None


def model_path(config: "CellConfig") -> Path:
    return model_dir(config.model, config.quantization)


def sampling_kwargs(spec: RequestSpec, ignore_eos: bool) -> Dict:
    """``SamplingParams`` fields of one request: exactly ``spec.output_tokens`` new tokens with
    ``ignore_eos`` (min = max), greedy, no detokenisation (tokens are counted from ids)."""
    n = int(spec.output_tokens)
    return {"max_tokens": n, "min_tokens": n if ignore_eos else 0, "ignore_eos": bool(ignore_eos),
            "temperature": 0.0, "detokenize": False}


def log_dir() -> Path:
    """Where engine logs go: ``$ORCHESTRATOR_LOG_DIR`` or ``~/.cache/orchestrator/logs``."""
    d = Path(os.environ.get(LOG_DIR_ENV, Path.home() / ".cache" / "orchestrator" / "logs"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def new_log_path(prefix: str) -> Path:
    return log_dir() / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.log"


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so child processes
    started inside inherit it) to ``path``; restore them on exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def wait_for_gpu_memory(gpu, gpu_memory_utilization: float, timeout_s: float = MEMORY_WAIT_S) -> Dict:
    """Wait until the GPU has the memory vLLM will ask for (``utilization x total`` free, plus a
    margin): a previous cell's process may still be exiting. Still short after ``timeout_s``:
    ``CellFailure('gpu_busy')`` naming the processes that hold it (vLLM would end ``oom``, which
    says nothing of whose memory it was; a ``gpu_busy`` cell is re-run on resume).
    -> what was seen, for the run's extra."""
    allowed = gpu.memory_total_mib * (1.0 - gpu_memory_utilization) - MEMORY_MARGIN_MIB
    t0 = time.monotonic()
    used = memory_used_mib(gpu.uuid)
    while used > allowed and time.monotonic() - t0 < timeout_s:
        time.sleep(0.5)
        used = memory_used_mib(gpu.uuid)
    if used > allowed:
        raise CellFailure("gpu_busy", gpu_busy_message(gpu, used, allowed, time.monotonic() - t0))
    return {"gpu_memory_used_before_start_mib": used, "gpu_memory_wait_s": time.monotonic() - t0}


def gpu_busy_message(gpu, used_mib: float, allowed_mib: float, waited_s: float) -> str:
    """The first line of a ``gpu_busy`` error: how much is in use, by whom, since how long."""
    procs = gpu_processes(gpu.uuid)
    who = ", ".join(f"pid {pid} {name} {mib:,.0f} MiB" for pid, name, mib in procs) or "NVML lists no process"
    return (f"GPU {gpu.uuid} has {used_mib:,.0f} MiB in use after waiting {waited_s:.0f} s, vLLM needs it "
            f"under {allowed_mib:,.0f} MiB (gpu_memory_utilization): held by {who} — a process left by "
            f"another run? (stop it, then run the same command again: gpu_busy cells are re-run)")


def engine_versions(gpu) -> Dict[str, str]:
    """vllm and torch (package metadata: no import), CUDA runtime (when torch is already
    imported), driver and CUDA driver versions."""
    from importlib.metadata import PackageNotFoundError, version

    out: Dict[str, str] = {}
    for pkg in ("vllm", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    if "torch" in sys.modules:
        out["cuda_runtime"] = str(sys.modules["torch"].version.cuda)
    if gpu is not None:
        out.update(driver=gpu.driver_version, cuda_driver=gpu.cuda_driver_version)
    return out


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (a server started next may still lose it to another)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_ok(url: str, timeout_s: float = 2.0, headers: Optional[Dict[str, str]] = None) -> bool:
    """Does ``url`` answer 200 within ``timeout_s``?"""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout_s) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
