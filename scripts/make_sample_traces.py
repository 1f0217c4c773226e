"""Small sample files in the public traffic formats, generated (no download), seeded:

- ``mooncake.jsonl``: a Mooncake-style timed trace (``timestamp`` ms, ``input_length``,
  ``output_length``, ``hash_ids`` in blocks of ``--block-tokens``, 512 as in the public trace):
  sessions of up to three turns that share a system prompt's blocks, each turn re-sending its
  session's earlier blocks, Poisson arrivals;
- ``azure.csv``: an Azure LLM inference trace (``TIMESTAMP``, ``ContextTokens``,
  ``GeneratedTokens``) with long-tailed lengths;
- ``prompts.jsonl``: a prompt dataset (``prompt`` or ``messages``, some with ``output_tokens``);
- ``sharegpt.json``: ShareGPT-style conversations (human/gpt turns).

    python scripts/make_sample_traces.py OUT_DIR [--requests 200] [--rate 4] [--seed 0]

The public traces live at github.com/kvcache-ai/Mooncake (``FAST25-release/traces``) and
github.com/Azure/AzurePublicDataset (``AzureLLMInferenceTrace_{code,conv}.csv``); download them
yourself and point the workload at the file.
"""
from __future__ import annotations

import argparse
import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

WORDS = ("the", "energy", "of", "a", "token", "batch", "server", "prompt", "cache", "window", "GPU", "answer")


def _text(rng: np.random.Generator, n_words: int) -> str:
    return " ".join(rng.choice(WORDS, size=max(1, n_words)))


def mooncake(rng: np.random.Generator, n: int, rate: float, block: int) -> list:
    """Sessions of up to three turns sharing one of three system prompts (2 blocks each); each
    turn re-sends its session's blocks and adds one or two; Poisson arrivals."""
    systems = [list(range(100 * s, 100 * s + 2)) for s in range(3)]
    rows, t_ms, next_block, sessions = [], 0.0, 1000, []
    while len(rows) < n:
        t_ms += rng.exponential(1000.0 / rate)
        if not sessions or rng.random() < 0.4:  # a new session
            sessions.append([list(systems[int(rng.integers(3))]), 0])
        k = int(rng.integers(len(sessions)))
        history = sessions[k][0]
        new = int(rng.integers(1, 3))
        history.extend(range(next_block, next_block + new))
        next_block += new
        sessions[k][1] += 1
        rows.append({"timestamp": int(t_ms), "input_length": len(history) * block - int(rng.integers(block)),
                     "output_length": int(rng.integers(16, 256)), "hash_ids": list(history)})
        if sessions[k][1] >= 3:  # a session ends after its third turn
            sessions.pop(k)
    return rows


def azure(rng: np.random.Generator, n: int, rate: float) -> list:
    t = datetime(2023, 11, 16, 18, 15, 46)
    rows = []
    for _ in range(n):
        t += timedelta(seconds=float(rng.exponential(1.0 / rate)))
        rows.append({"TIMESTAMP": t.strftime("%Y-%m-%d %H:%M:%S.%f") + "0",
                     "ContextTokens": int(min(8000, rng.lognormal(6.5, 1.0))),
                     "GeneratedTokens": int(min(2000, rng.lognormal(4.5, 0.8)))})
    return rows


def prompts(rng: np.random.Generator, n: int) -> list:
    out = []
    for i in range(n):
        if i % 3 == 0:
            out.append({"messages": [{"role": "system", "content": _text(rng, 12)},
                                     {"role": "user", "content": _text(rng, int(rng.integers(5, 60)))}]})
        else:
            out.append({"prompt": _text(rng, int(rng.integers(5, 200)))})
        if i % 2 == 0:
            out[-1]["output_tokens"] = int(rng.integers(16, 256))
    return out


def sharegpt(rng: np.random.Generator, n: int) -> list:
    convs = []
    for _ in range(max(1, n // 3)):
        turns = []
        for _ in range(int(rng.integers(1, 4))):
            turns.append({"from": "human", "value": _text(rng, int(rng.integers(5, 80)))})
            turns.append({"from": "gpt", "value": _text(rng, int(rng.integers(10, 200)))})
        convs.append({"conversations": turns})
    return convs


def write_samples(out: Path, n: int = 200, rate: float = 4.0, seed: int = 0, block: int = 512) -> dict:
    """Write the four sample files into ``out``; -> name -> path."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = {name: out / name for name in ("mooncake.jsonl", "azure.csv", "prompts.jsonl", "sharegpt.json")}
    paths["mooncake.jsonl"].write_text("".join(json.dumps(r) + "\n" for r in mooncake(rng, n, rate, block)))
    with paths["azure.csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
        writer.writeheader()
        writer.writerows(azure(rng, n, rate))
    paths["prompts.jsonl"].write_text("".join(json.dumps(r) + "\n" for r in prompts(rng, n)))
    paths["sharegpt.json"].write_text(json.dumps(sharegpt(rng, n), indent=1))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--rate", type=float, default=4.0, help="mean arrivals per second of the timed traces")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--block-tokens", type=int, default=512,
                    help="tokens per Mooncake hash id (512, as the public trace; workload.trace.block_tokens)")
    args = ap.parse_args()
    for name, path in write_samples(args.out, args.requests, args.rate, args.seed, args.block_tokens).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
