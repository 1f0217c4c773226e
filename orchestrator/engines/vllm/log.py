"""Reading a vLLM engine's log (``vllm_offline``: the ``LLM`` frontend and its engine-core
process; ``vllm_server``: the ``vllm serve`` subprocess): why a start failed, and which
quantization method and linear kernels vLLM chose.

Lines are compared without their decorations: ANSI colours, vLLM's process prefix
(``(EngineCore pid=123) ``, ``(APIServer pid=7) ``), torch's ``[rank0]: `` and vLLM's log header
(``ERROR 11-29 10:15:02 [core.py:1330] ``). Noise never explains a failure: vLLM's INFO, DEBUG
and WARNING lines, torch's C++ warnings (``[rank0]:[W1129 ...] ProcessGroupNCCL ...
destroy_process_group() was not called``), NCCL / gloo chatter, progress bars.

A failure is explained by, in this order: a line of a known status (``LOG_PATTERNS``: the first
such line, i.e. the innermost exception); else the first Python exception line that is not a
wrapper (vLLM's frontend ends with ``RuntimeError: Engine core initialization failed. See root
cause above.``; a chained traceback prints its cause first), a command-line usage error, a CUDA
error line or a "not supported" line; else the first wrapper line. That line leads the error message.

Formats (vLLM 0.26.0): ``vllm/logger.py`` ``_FORMAT`` (``%(levelname)s %(asctime)s
[%(fileinfo)s:%(lineno)d] %(message)s``, dates ``%m-%d %H:%M:%S``; ``NewLineFormatter`` repeats
the header on every line of a traceback); ``vllm/utils/system_utils.py`` ``_add_prefix``;
``vllm/v1/engine/core.py`` ``"Initializing a V1 LLM engine (v%s) with config: %s"`` with
``VllmConfig.__str__``'s ``quantization=...``; kernel choices ``"Using %s for
AutoAWQMarlinLinearMethod"`` / ``"Using %s for AutoGPTQLinearMethod"`` (quantization/auto_awq.py,
auto_gptq.py) and ``"Selected %s for %s"`` (model_executor/kernels/linear/__init__.py, fp8).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from orchestrator.errors import CellFailure, EngineError

LOG_TAIL_BYTES = 64 * 1024
LOG_HEAD_BYTES = 4 * 1024 * 1024
TAIL_LINES = 40
MAX_LINE_CHARS = 1000
CONTEXT_LINES = 3  # later error lines (wrappers of the root cause) named after it
CONTEXT_LINE_CHARS = 300

# Log lines -> statuses, checked in this order (lower-case substrings).
LOG_PATTERNS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("unsupported", (
        "is not supported for the current gpu",
        "is not supported for quantization method",
        "unknown quantization method",
        "quantization is currently not supported",
        "bfloat16 is only supported on gpus with compute capability",
        "failed to find a kernel that can implement",
        "does not match the quantization method specified",
    )),
    ("kv_cache_too_small", (
        "larger than the available kv cache memory",
        "no available memory for the cache blocks",
        "estimated maximum model length",
    )),
    ("oom", (
        "cuda out of memory",
        "cuda error: out of memory",
        "outofmemoryerror",
        "cudaerrormemoryallocation",
        "cublas_status_alloc_failed",
        "less than desired gpu memory utilization",
    )),
)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PROCESS = re.compile(r"^(?:\([^()]* pid=\d+\) ?|\[rank\d+\]: ?)+")
_HEADER = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) \d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \[[^\]]*\] ?")
_STAMP = re.compile(r"^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) (\d\d-\d\d \d\d:\d\d:\d\d)")
_NOISE = re.compile(r"^\[(?:rank\d+\]:\[)?[WI]\d{3,4} |^[WI]\d{4} \d|^\[gloo\]|nccl (?:warn|info)|"
                    r"destroy_process_group\(\) was not called|^\S+:\d+: \w*Warning: |\d+%\||it/s\]|s/it\]",
                    re.IGNORECASE)
_EXCEPTION = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Failed)(?::\s|$)")
_CUDA = re.compile(r"cuda error|cudaerror\w+|cuda driver error|no kernel image is available|cublas_status_|"
                   r"cudnn_status_|nccl error", re.IGNORECASE)
_NOT_SUPPORTED = re.compile(r"not supported|unsupported", re.IGNORECASE)
_USAGE = re.compile(r"^[\w .-]+: error: ")  # argparse: "vllm serve: error: argument ..."
_WRAPPER = re.compile(r"root cause|died unexpectedly|enginedeaderror|failed to start", re.IGNORECASE)
_ENGINE_CONFIG = re.compile(r"Initializing a V1 LLM engine \(v[^)]*\) with config: .*?\bquantization=([\w-]+)")
_KERNEL = re.compile(r"^(?:Using|Selected) (\w+Kernel) for \w")
_AWQ_FALLBACK = "Falling back to unoptimized AWQ kernels"


def clean_line(line: str) -> Tuple[str, str, bool]:
    """(vLLM log level or '', the line's text, whether the text is indented) of one log line,
    without colours, process prefixes and vLLM's header."""
    text = _PROCESS.sub("", _ANSI.sub("", line).rstrip())
    m = _HEADER.match(text)
    level, text = (m.group(1), text[m.end():]) if m else ("", text)
    return level, text.strip(), text[:1].isspace()


def stamped_lines(text: str) -> Iterator[Tuple[Optional[str], str]]:
    """(the vLLM header's time ``"MM-DD HH:MM:SS"`` or None where the line has no header, the
    line's text as ``clean_line`` gives it) of each line of a log."""
    for raw in text.splitlines():
        m = _STAMP.match(_PROCESS.sub("", _ANSI.sub("", raw)).lstrip())
        yield (m.group(1) if m else None), clean_line(raw)[1]


def meaningful_lines(text: str) -> List[str]:
    """The log's lines that may explain something: cleaned, not empty, not indented (traceback
    frames and source), not noise (vLLM INFO/DEBUG/WARNING lines, torch/NCCL/gloo warnings,
    Python warnings, progress bars)."""
    out = []
    for raw in text.splitlines():
        level, line, indented = clean_line(raw)
        if not line or indented or level in ("DEBUG", "INFO", "WARNING") or _NOISE.search(line):
            continue
        out.append(line[:MAX_LINE_CHARS])
    return out


def classify_log(text: str) -> Optional[Tuple[str, str]]:
    """(status, the first line that says so) for a known failure in a vLLM log, else None."""
    lines = meaningful_lines(text)
    for status, needles in LOG_PATTERNS:
        for line in lines:
            low = line.lower()
            if any(n in low for n in needles):
                return status, line
    return None


def error_lines(text: str) -> List[str]:
    """The log's exception, usage-error, CUDA-error and "not supported" lines, in order, each once."""
    out: List[str] = []
    for line in meaningful_lines(text):
        explains = _EXCEPTION.match(line) or _USAGE.match(line) or _CUDA.search(line) or _NOT_SUPPORTED.search(line)
        if explains and line not in out:
            out.append(line)
    return out


def explaining_line(text: str) -> Optional[str]:
    """The line of a failed engine's log that explains the failure (see the module doc), or None."""
    return _explaining(classify_log(text), error_lines(text))


def _explaining(found: Optional[Tuple[str, str]], lines: List[str]) -> Optional[str]:
    """``explaining_line`` from the log's known-status line (``classify_log``) and error lines."""
    if found:
        return found[1]
    return next((line for line in lines if not _WRAPPER.search(line)), lines[0] if lines else None)


def failure_from_log(what: str, log_text: str, log_path: Optional[Path],
                     exc: Optional[BaseException] = None) -> Exception:
    """The failure of an engine whose log is ``log_text``: ``CellFailure`` for a known status
    (oom, kv_cache_too_small, unsupported), else ``EngineStartError`` (engine_error, worth a
    retry). ``exc``: the exception the frontend raised in this process (it is not in the log:
    it counts as the log's last line). The message's first line is the line that explains the
    failure (``what`` when none does), then ``what`` and the log's path, then (``then:``) the
    error lines that followed it (its wrappers), then the log's last lines."""
    if exc is not None:
        raised = f"{type(exc).__name__}: {exc}"
        log_text, what = f"{log_text}\n{raised}", f"{what}: {raised.splitlines()[0]}"
    tail = "\n".join(log_text.splitlines()[-TAIL_LINES:])
    where = f" (log: {log_path})" if log_path else ""
    found, lines = classify_log(log_text), error_lines(log_text)
    line = _explaining(found, lines)
    body = f"{line}\n{what}{where}" if line else f"{what}{where}"
    later = [x[:CONTEXT_LINE_CHARS] for x in lines if x != line and x not in what][:CONTEXT_LINES]
    if later:
        body += "\nthen: " + " | ".join(later)
    message = f"{body}\n--- log tail ---\n{tail}"
    return CellFailure(found[0], message) if found else EngineStartError(message)


class EngineStartError(EngineError):
    """vLLM failed in a way no known status covers (classified ``engine_error``)."""


def engine_choices(text: str) -> Dict[str, Optional[str]]:
    """What vLLM ran, from its start-up log: ``vllm_quantization_method`` (the engine config
    line's ``quantization=``; ``"none"`` for None; None when the line is missing) and
    ``vllm_linear_kernel`` (the linear kernel classes vLLM chose, in order, comma-separated;
    None when it logged none, e.g. unquantized layers)."""
    method, kernels = None, []
    for raw in text.splitlines():
        line = clean_line(raw)[1]
        m = _ENGINE_CONFIG.search(line)
        if m and method is None:
            method = "none" if m.group(1) == "None" else m.group(1)
            continue
        k = _KERNEL.match(line)
        name = k.group(1) if k else ("AutoAWQLinearMethod" if _AWQ_FALLBACK in line else None)
        if name and name not in kernels:
            kernels.append(name)
    return {"vllm_quantization_method": method, "vllm_linear_kernel": ", ".join(kernels) or None}


def read_tail(path: Optional[Path], n_bytes: int = LOG_TAIL_BYTES) -> str:
    """The last ``n_bytes`` of a log file ('' if it does not exist)."""
    if path is None or not Path(path).exists():
        return ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - n_bytes))
        return f.read().decode(errors="replace")


def read_head(path: Optional[Path], n_bytes: int = LOG_HEAD_BYTES) -> str:
    """The first ``n_bytes`` of a log file (start-up lines; '' if it does not exist)."""
    if path is None or not Path(path).exists():
        return ""
    with open(path, "rb") as f:
        return f.read(n_bytes).decode(errors="replace")
