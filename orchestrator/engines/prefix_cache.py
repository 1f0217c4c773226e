"""The simulator's model of vLLM's automatic prefix caching (V1 KV cache manager, 0.26).

A prompt is cut into blocks of ``block_tokens`` (vLLM's default 16); a block's key hashes its
tokens and the key of the block before it, so a block hits only where the whole prefix up to it
matches. A request's hit is its longest run of leading full blocks found in the cache, never the
whole prompt (vLLM recomputes at least the last token, so a fully cached prompt hits one block
less). After its prefill a request's full prompt blocks join the cache; the least recently used
block leaves when ``capacity_blocks`` are held. (vLLM caches the blocks of generated tokens too;
a session's history re-sends the planned answer, not the generated one, so those never match.)
"""
from __future__ import annotations

from collections import OrderedDict
from typing import List, Sequence

import numpy as np


def block_keys(ids: Sequence[int], block_tokens: int) -> List[int]:
    """The chained keys of the full blocks of ``ids``."""
    arr = np.asarray(ids, dtype=np.int64)
    n = len(arr) // block_tokens
    keys, prev = [], 0
    for row in arr[:n * block_tokens].reshape(n, block_tokens):
        prev = hash((prev, row.tobytes()))
        keys.append(prev)
    return keys


class PrefixCacheModel:
    """Blocks held, least recently used first (see module doc)."""

    def __init__(self, block_tokens: int, capacity_blocks: int):
        self.block_tokens = int(block_tokens)
        self.capacity_blocks = max(1, int(capacity_blocks))
        self._blocks: "OrderedDict[int, None]" = OrderedDict()

    def reset(self) -> None:
        self._blocks.clear()

    def hit_tokens(self, keys: Sequence[int], prompt_tokens: int) -> int:
        """Prompt tokens served from the cache (a run of leading blocks, short of the whole prompt)."""
        n = 0
        for key in keys:
            if key not in self._blocks:
                break
            self._blocks.move_to_end(key)
            n += 1
        hit = n * self.block_tokens
        if hit >= prompt_tokens:  # at least the last token is computed: its block is recomputed
            hit = max(0, hit - self.block_tokens)
        return hit

    def insert(self, keys: Sequence[int]) -> None:
        for key in keys:
            self._blocks[key] = None
            self._blocks.move_to_end(key)
        while len(self._blocks) > self.capacity_blocks:
            self._blocks.popitem(last=False)
