"""Reading real traffic from local files (issue 29, in part): timed traces and prompt datasets,
checked line by line, each problem one ``TraceFileError`` line naming the file and the line.

Timed traces (``TraceRequest``: arrival seconds from the trace's first request, prompt and output
token counts, the prompt's shared blocks):

- **Mooncake** JSONL, one request per line: ``timestamp`` (ms), ``input_length``,
  ``output_length``, ``hash_ids`` (the prompt's blocks: requests that share a hash id share that
  block of prompt tokens);
- **Azure** LLM inference trace CSV: ``TIMESTAMP`` (``2023-11-16 18:15:46.6805900``: date, time,
  up to 7 fractional digits), ``ContextTokens``, ``GeneratedTokens``.

Timestamps must not go backwards. Prompt datasets (``DatasetPrompt``: the prompt text or chat
messages, an output length when the data gives one):

- **JSONL**, one object per line with ``prompt`` (text) or ``messages`` (OpenAI chat messages)
  and an optional ``output_tokens``;
- **ShareGPT** JSON: a list of ``{"conversations": [{"from": "human" | "gpt", "value": text},
  ...]}``; each human turn is a prompt whose history is the turns before it, and the next gpt
  turn's text is its reference answer (its length, once tokenized, the output length).

Nothing here tokenizes: lengths from text are the caller's (the cell's model tokenizer).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from orchestrator.errors import ConfigError

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length")


class TraceFileError(ConfigError):
    """A trace or dataset file that cannot be used (one line: the file, the line, what is wrong)."""


@dataclass(frozen=True)
class TraceRequest:
    """One request of a timed trace: arrival (s from the trace's first request), token counts,
    and the ids of its prompt's blocks (Mooncake's ``hash_ids``; () where the trace has none)."""

    arrival_s: float
    input_tokens: int
    output_tokens: int
    hash_ids: Tuple[int, ...] = ()


@dataclass(frozen=True)
class DatasetPrompt:
    """One prompt of a dataset: chat ``messages`` (a single user message for a text prompt) and
    the output length the data gives (None: the workload's distribution decides), or the
    reference answer's text (ShareGPT) to tokenize for it."""

    messages: Tuple[Dict[str, str], ...]
    output_tokens: Optional[int] = None
    reference: Optional[str] = None
    conversation: int = -1  # ShareGPT: which conversation of the file it comes from


def _lines(path: Path) -> Iterator[Tuple[int, str]]:
    """(line number, text) of the non-blank lines; ``TraceFileError`` for a missing file."""
    if not path.is_file():
        raise TraceFileError(f"{path}: no such file")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                yield n, line


def _json_lines(path: Path) -> Iterator[Tuple[str, dict]]:
    """("line N", object) of each non-blank line of a JSONL file; ``TraceFileError`` for a line
    that is not a JSON object."""
    for n, line in _lines(path):
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            raise TraceFileError(f"{path}: line {n}: not a JSON object")
        yield f"line {n}", obj


def _count(path: Path, where: str, name: str, value) -> int:
    """A non-negative whole token count, else ``TraceFileError``."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise TraceFileError(f"{path}: {where}: {name}={value!r} is not a whole number") from None
    if number < 0 or number != float(value):
        raise TraceFileError(f"{path}: {where}: {name}={value!r} is not a whole number >= 0")
    return number


def _in_order(path: Path, times: Sequence[Tuple[str, float]]) -> List[float]:
    """The arrival times from the first, checked never to go backwards."""
    if not times:
        raise TraceFileError(f"{path}: empty (no request)")
    for (where, t), (_, previous) in zip(times[1:], times):
        if t < previous:
            raise TraceFileError(f"{path}: {where}: the timestamp goes backwards ({t:g} after {previous:g})")
    first = times[0][1]
    return [t - first for _, t in times]


def read_mooncake(path: Path) -> List[TraceRequest]:
    """A Mooncake-style JSONL trace (see module doc)."""
    path = Path(path)
    rows, times = [], []
    for where, obj in _json_lines(path):
        missing = [k for k in MOONCAKE_FIELDS if k not in obj]
        if missing:
            raise TraceFileError(f"{path}: {where}: no {', '.join(missing)} (a Mooncake trace line has "
                                 f"{', '.join(MOONCAKE_FIELDS)} and hash_ids)")
        try:
            t_ms = float(obj["timestamp"])
        except (TypeError, ValueError):
            raise TraceFileError(f"{path}: {where}: timestamp={obj['timestamp']!r} is not a number (ms)") from None
        hashes = obj.get("hash_ids") or []
        if not isinstance(hashes, list) or not all(isinstance(h, int) for h in hashes):
            raise TraceFileError(f"{path}: {where}: hash_ids must be a list of whole numbers")
        rows.append((_count(path, where, "input_length", obj["input_length"]),
                     _count(path, where, "output_length", obj["output_length"]), tuple(hashes)))
        times.append((where, t_ms / 1e3))
    return [TraceRequest(t, i, o, h) for t, (i, o, h) in zip(_in_order(path, times), rows)]


def _azure_time(path: Path, where: str, text: str) -> float:
    """Seconds since the epoch of an Azure trace timestamp (fractional digits beyond 6 dropped)."""
    text = text.strip()
    head, _, frac = text.partition(".")
    try:
        stamp = datetime.strptime(head, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise TraceFileError(f"{path}: {where}: TIMESTAMP={text!r} is not 'YYYY-MM-DD HH:MM:SS[.fraction]'") from None
    if frac and not frac.isdigit():
        raise TraceFileError(f"{path}: {where}: TIMESTAMP={text!r} has a fraction that is not digits")
    return stamp.timestamp() + (float(f"0.{frac}") if frac else 0.0)


def read_azure(path: Path) -> List[TraceRequest]:
    """An Azure LLM inference trace CSV (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise TraceFileError(f"{path}: no such file")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in AZURE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise TraceFileError(f"{path}: no column {', '.join(missing)} (an Azure trace has "
                                 f"{', '.join(AZURE_COLUMNS)}; found {', '.join(reader.fieldnames or []) or 'none'})")
        rows, times = [], []
        for n, rec in enumerate(reader, start=2):
            where = f"line {n}"
            rows.append((_count(path, where, "ContextTokens", rec["ContextTokens"]),
                         _count(path, where, "GeneratedTokens", rec["GeneratedTokens"])))
            times.append((where, _azure_time(path, where, rec["TIMESTAMP"])))
    return [TraceRequest(t, i, o) for t, (i, o) in zip(_in_order(path, times), rows)]


def read_prompts_jsonl(path: Path) -> List[DatasetPrompt]:
    """A JSONL prompt dataset (see module doc)."""
    path = Path(path)
    out = []
    for where, obj in _json_lines(path):
        if isinstance(obj.get("prompt"), str):
            messages: Tuple[Dict[str, str], ...] = ({"role": "user", "content": obj["prompt"]},)
        elif isinstance(obj.get("messages"), list) and obj["messages"] and all(
                isinstance(m, dict) and isinstance(m.get("content"), str) for m in obj["messages"]):
            messages = tuple({"role": str(m.get("role", "user")), "content": m["content"]} for m in obj["messages"])
        else:
            raise TraceFileError(f"{path}: {where}: needs 'prompt' (text) or 'messages' (a list of "
                                 "{role, content})")
        tokens = obj.get("output_tokens")
        out.append(DatasetPrompt(messages, None if tokens is None else _count(path, where, "output_tokens", tokens)))
    if not out:
        raise TraceFileError(f"{path}: empty (no prompt)")
    return out


ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def read_sharegpt(path: Path) -> List[DatasetPrompt]:
    """A ShareGPT-style JSON file (see module doc): one prompt per human turn that a gpt turn
    answers, with the conversation before it as history."""
    path = Path(path)
    if not path.is_file():
        raise TraceFileError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise TraceFileError(f"{path}: not JSON") from None
    if not isinstance(data, list):
        raise TraceFileError(f"{path}: a ShareGPT file is a JSON list of conversations")
    out = []
    for i, conv in enumerate(data):
        turns = conv.get("conversations") if isinstance(conv, dict) else None
        if not isinstance(turns, list):
            raise TraceFileError(f"{path}: conversation {i}: no 'conversations' list")
        history: List[Dict[str, str]] = []
        for j, turn in enumerate(turns):
            role = ROLES.get(str(turn.get("from", ""))) if isinstance(turn, dict) else None
            if role is None or not isinstance(turn.get("value"), str):
                raise TraceFileError(f"{path}: conversation {i}, turn {j}: needs 'from' (human, gpt, system) "
                                     "and a text 'value'")
            if role == "assistant" and history and history[-1]["role"] == "user":
                out.append(DatasetPrompt(tuple(history), reference=turn["value"], conversation=i))
            history.append({"role": role, "content": turn["value"]})
    if not out:
        raise TraceFileError(f"{path}: empty (no human turn that a gpt turn answers)")
    return out
