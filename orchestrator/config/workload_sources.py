"""Each workload source's typed block (``workload.<source>.*``), declared here so that the config
schema is static: what a cell's requests are made of when they are not drawn from the length
distributions (``workload.source=synthetic``, the default).

- ``dataset``: prompts from a local file (ShareGPT JSON or JSONL), re-tokenized with the cell's
  model tokenizer; arrivals from ``workload.arrival`` as for synthetic traffic.
- ``trace``: a timed trace (Mooncake JSONL or Azure CSV) replayed at its recorded times, scaled
  (``speedup``) or re-timed to a mean rate over the whole trace (``rate_rps``), over a slice
  (``start_s`` on, the window ``workload.duration_s`` long); Mooncake ``hash_ids`` become shared
  prompt blocks of ``block_tokens`` tokens.
- ``sessions``: multi-turn chat sessions arriving open-loop (``workload.arrival`` at
  ``workload.rate_rps`` sessions per second); each turn re-sends the whole history plus a new
  user turn, ``think_time_s`` after the previous answer.

Only the chosen source's block is part of a cell's identity (``fields.chosen_by``). A file is
named by its path but identified by its content: the driver resolves the path and fills in the
file's SHA-256 (``sha256``), which is what a cell's identity holds, so moving the file (or
submitting the sweep as a Ray job) re-runs nothing, and editing it re-runs everything it fed; a
worker that finds other content at the path refuses the cell.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Optional

from orchestrator.config.fields import check, setting


class Source(str, Enum):
    """What a workload's requests are made of (see the module doc)."""

    synthetic = "synthetic"
    dataset = "dataset"
    trace = "trace"
    sessions = "sessions"


class FileFormat(str, Enum):
    """A traffic file's format; ``auto`` decides by its name (``.csv``: azure; ``.jsonl`` of a
    trace: mooncake, of a dataset: jsonl; ``.json``: sharegpt)."""

    auto = "auto"
    mooncake = "mooncake"
    azure = "azure"
    jsonl = "jsonl"
    sharegpt = "sharegpt"


TRACE_FORMATS = (FileFormat.auto, FileFormat.mooncake, FileFormat.azure)
DATASET_FORMATS = (FileFormat.auto, FileFormat.jsonl, FileFormat.sharegpt)


class OutputLengths(str, Enum):
    """Where a dataset's output lengths come from: the data (``output_tokens``, a reference
    answer's length; the workload's distribution where a row has neither) or always the
    workload's ``output`` distribution."""

    data = "data"
    distribution = "distribution"


class ThinkTime(str, Enum):
    """How long a user thinks between an answer and the next turn: ``exponential`` with mean
    ``think_time_s`` or ``fixed``."""

    exponential = "exponential"
    fixed = "fixed"


def _check_path(key: str, path: str) -> None:
    check(key, path, bool(path), "must name a local file")
    check(key, path, Path(path).expanduser().is_file(), "no such file")


@dataclass
class DatasetSource:
    """``path``: a ShareGPT JSON or a JSONL of ``{prompt | messages, output_tokens?}``;
    ``max_prompt_tokens``: prompts longer than this (after tokenizing) are skipped (0: the model's
    context less the output); prompts are used in file order, cycling, from ``offset``, shuffled
    with the workload's seed when ``shuffle``."""

    path: str = setting("")
    sha256: str = ""  # the file's content (filled in by the driver)
    format: FileFormat = FileFormat.auto
    output: OutputLengths = OutputLengths.data
    max_prompt_tokens: int = 0
    offset: int = 0
    shuffle: bool = True

    def validate(self) -> None:
        _check_path("workload.dataset.path", self.path)
        check("workload.dataset.format", self.format.value, self.format in DATASET_FORMATS,
              "auto, jsonl or sharegpt")
        check("workload.dataset.max_prompt_tokens", self.max_prompt_tokens, self.max_prompt_tokens >= 0, "must be >= 0")
        check("workload.dataset.offset", self.offset, self.offset >= 0, "must be >= 0")


@dataclass
class TraceSource:
    """``path``: a Mooncake JSONL or an Azure CSV. Timing: the recorded arrivals divided by
    ``speedup``, or, with ``rate_rps`` set, every gap scaled alike so that the whole trace's mean
    rate is ``rate_rps`` (its burstiness kept; a slice's own rate may differ: the cell's
    ``offered_rate_rps`` says what its window offered). The slice: the window opens at the first request
    at or after ``start_s`` (replayed seconds from the trace's first request) preceded by
    ``workload.warmup_requests`` warm-up requests and lasts ``workload.duration_s`` (less where
    the trace ends first). ``block_tokens``: tokens per hash id (Mooncake's is 512)."""

    path: str = setting("")
    sha256: str = ""  # the file's content (filled in by the driver)
    format: FileFormat = FileFormat.auto
    speedup: float = 1.0
    rate_rps: Optional[float] = None
    start_s: float = 0.0
    block_tokens: int = 512
    # the trace's own mean lengths (filled in by the driver; they size the drain limit and the VRAM check)
    mean_input_tokens: float = setting(0.0)
    mean_output_tokens: float = setting(0.0)

    def validate(self) -> None:
        _check_path("workload.trace.path", self.path)
        check("workload.trace.format", self.format.value, self.format in TRACE_FORMATS, "auto, mooncake or azure")
        check("workload.trace.speedup", self.speedup, self.speedup > 0, "must be > 0")
        check("workload.trace.rate_rps", self.rate_rps, self.rate_rps is None or self.rate_rps > 0,
              "must be > 0 (or null: the recorded times / speedup)")
        check("workload.trace.speedup", self.speedup, self.rate_rps is None or self.speedup == 1.0,
              "set speedup or rate_rps, not both")
        check("workload.trace.start_s", self.start_s, self.start_s >= 0, "must be >= 0")
        check("workload.trace.block_tokens", self.block_tokens, self.block_tokens >= 1, "must be >= 1")


@dataclass
class SessionsSource:
    """Multi-turn sessions: ``min_turns``..``max_turns`` user turns each (uniform), the first
    ``warmup_sessions`` of them warm-up; every session opens with the same
    ``system_prompt_tokens`` (a shared system prompt: 0 for none); user turns' lengths from
    ``workload.input``, answers' from ``workload.output``, or both from the conversations of a
    ShareGPT ``dataset`` (its human turns and the lengths of its answers, re-tokenized)."""

    min_turns: int = 2
    max_turns: int = 6
    think_time_s: float = 5.0
    think: ThinkTime = ThinkTime.exponential
    system_prompt_tokens: int = 0
    warmup_sessions: int = 2
    dataset: str = setting("")
    dataset_sha256: str = ""  # the dataset's content (filled in by the driver)

    def validate(self) -> None:
        check("workload.sessions.min_turns", self.min_turns, self.min_turns >= 1, "must be >= 1")
        check("workload.sessions.max_turns", self.max_turns, self.max_turns >= self.min_turns,
              f"must be >= workload.sessions.min_turns ({self.min_turns})")
        check("workload.sessions.think_time_s", self.think_time_s, self.think_time_s >= 0, "must be >= 0")
        check("workload.sessions.system_prompt_tokens", self.system_prompt_tokens, self.system_prompt_tokens >= 0,
              "must be >= 0")
        check("workload.sessions.warmup_sessions", self.warmup_sessions, self.warmup_sessions >= 0, "must be >= 0")
        if self.dataset:
            _check_path("workload.sessions.dataset", self.dataset)
