"""What a workload source needs from its cell: the workload, the batch size, the seed, the
context limit, the model's tokenizer (loaded on first use) and the drain limit; and the
parsed traffic files, read once per process (``load_trace``, ``load_dataset``)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from orchestrator.client import trace_files
from orchestrator.config.workload_sources import FileFormat

if TYPE_CHECKING:
    from orchestrator.client.prompts import TextPrompts
    from orchestrator.config.groups import WorkloadConfig
    from orchestrator.config.root import CellConfig


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's bytes (``TraceFileError`` for a missing file)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise trace_files.TraceFileError(f"{p}: no such file")
    return _sha256(_stat_key(path))


@lru_cache(maxsize=16)
def _sha256(key: Tuple[str, float, int]) -> str:
    h = hashlib.sha256()
    with open(key[0], "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checked(path: str, sha256: str) -> str:
    """``path`` when its content is the one a cell was defined with (``sha256``; '' checks nothing),
    else ``TraceFileError``."""
    if sha256 and file_sha256(path) != sha256:
        raise trace_files.TraceFileError(f"{path}: its content is not the file the sweep was defined with "
                                         f"(sha256 {file_sha256(path)[:12]} != {sha256[:12]})")
    return path


def _stat_key(path: str) -> Tuple[str, float, int]:
    p = Path(path).expanduser()
    try:
        st = p.stat()
        return str(p), st.st_mtime, st.st_size
    except OSError:
        return str(p), 0.0, -1


def trace_format(path: str, fmt: FileFormat) -> FileFormat:
    """``auto``: ``.csv`` is Azure, anything else Mooncake."""
    if fmt is not FileFormat.auto:
        return fmt
    return FileFormat.azure if Path(path).suffix.lower() == ".csv" else FileFormat.mooncake


def dataset_format(path: str, fmt: FileFormat) -> FileFormat:
    """``auto``: ``.json`` is ShareGPT, anything else JSONL."""
    if fmt is not FileFormat.auto:
        return fmt
    return FileFormat.sharegpt if Path(path).suffix.lower() == ".json" else FileFormat.jsonl


@lru_cache(maxsize=8)
def _trace(key: Tuple[str, float, int], fmt: FileFormat) -> Tuple[trace_files.TraceRequest, ...]:
    read = trace_files.read_azure if fmt is FileFormat.azure else trace_files.read_mooncake
    return tuple(read(Path(key[0])))


@lru_cache(maxsize=8)
def _dataset(key: Tuple[str, float, int], fmt: FileFormat) -> Tuple[trace_files.DatasetPrompt, ...]:
    read = trace_files.read_sharegpt if fmt is FileFormat.sharegpt else trace_files.read_prompts_jsonl
    return tuple(read(Path(key[0])))


def load_trace(path: str, fmt: FileFormat = FileFormat.auto, sha256: str = "") -> Sequence[trace_files.TraceRequest]:
    """The requests of a timed trace (``TraceFileError``: one line), read once per file version;
    ``sha256``: the content it must have."""
    return _trace(_stat_key(checked(path, sha256)), trace_format(path, fmt))


def load_dataset(path: str, fmt: FileFormat = FileFormat.auto, sha256: str = "") -> Sequence[trace_files.DatasetPrompt]:
    """The prompts of a dataset (``TraceFileError``: one line), read once per file version;
    ``sha256``: the content it must have."""
    return _dataset(_stat_key(checked(path, sha256)), dataset_format(path, fmt))


def context_tokens(cfg: "CellConfig") -> int:
    """The longest prompt + output a cell's engine takes: the model's context, and vLLM's
    ``max_model_len`` where vLLM may run the cell."""
    limit = int(cfg.model.max_context_tokens)
    if cfg.engine.name in ("vllm", "auto"):
        limit = min(limit, int(cfg.engine.vllm.max_model_len))
    return limit


@dataclass
class SourceContext:
    """A source's inputs (see module doc)."""

    workload: "WorkloadConfig"
    batch_size: int
    repeat: int
    context_tokens: int
    drain_timeout_s: float
    config: Optional["CellConfig"] = field(default=None, repr=False)  # where the tokenizer comes from
    _prompts: Optional["TextPrompts"] = field(default=None, repr=False)

    @classmethod
    def of(cls, cfg: "CellConfig", drain_timeout_s: float) -> "SourceContext":
        return cls(cfg.workload, int(cfg.batch_size), int(cfg.repeat), context_tokens(cfg),
                   float(drain_timeout_s), cfg)

    @property
    def seed(self) -> int:
        """The repeat's seed: arrivals, lengths and prompts (the same in every cell of a repeat)."""
        return self.workload.seed_for(self.repeat)

    @property
    def prompts(self) -> "TextPrompts":
        """The cell's tokenizer (``ConfigError`` without transformers)."""
        if self._prompts is None:
            from orchestrator.client.prompts import TextPrompts, tokenizer_dir

            if self.config is None:
                raise ValueError("this source needs the cell's model tokenizer")
            self._prompts = TextPrompts(tokenizer_dir(self.config))
        return self._prompts

    def encode_messages(self, messages: Sequence[Dict[str, str]]) -> List[int]:
        """A prompt's token ids: one user message is its text; a history is rendered with the
        tokenizer's chat template (with the generation prompt; ``role: text`` lines without one)."""
        if len(messages) == 1 and messages[0]["role"] == "user":
            return self.prompts.encode(messages[0]["content"])
        tok = self.prompts.tokenizer
        if getattr(tok, "chat_template", None):
            text = str(tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True))
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return self.prompts.encode(text)
