"""Prompts for a server the orchestrator did not start (``engine=endpoint``): the tokenizer they
are measured under, and text of an exact token length for servers that take no token ids.

The tokenizer is a local directory: ``engine.endpoint.tokenizer``, else ``model.path``, else the
one generated from the model config (``models.model_dir``: no hub). ``TextPrompts.text(ids)``
turns a prompt's token ids into text that encodes (without special tokens) to exactly
``len(ids)`` tokens: decode, re-encode, keep the first n ids of the re-encoding and fill up from
the original ids, until the round trip holds (a few rounds for BPE tokenizers; at once for the
generated word-level one). ``server_count(text)`` is what a server that adds its special tokens
(BOS) should report as ``usage.prompt_tokens``. transformers is imported on first use only.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, List, Sequence

from orchestrator.client.model_files import model_dir
from orchestrator.errors import OrchestratorError

if TYPE_CHECKING:
    from orchestrator.config.root import CellConfig

log = logging.getLogger(__name__)
ROUNDS = 8


def tokenizer_dir(config: "CellConfig") -> Path:
    """The local tokenizer directory a cell's prompts are measured under (see module doc)."""
    opts = config.engine.endpoint
    if opts.tokenizer:
        path = Path(opts.tokenizer).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"engine.endpoint.tokenizer={opts.tokenizer}: not a directory")
        return path
    return model_dir(config.model, config.quantization)


class ExactLengthError(OrchestratorError, ValueError):
    """No text of the wanted token length was found for a prompt."""


class TextPrompts:
    """Text prompts of exact token lengths under the tokenizer in ``path`` (loaded on first use)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._tok = None

    @property
    def tokenizer(self):
        if self._tok is None:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(str(self.path))
        return self._tok

    def encode(self, text: str, special: bool = False) -> List[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=special))

    def text(self, ids: Sequence[int]) -> str:
        """Text that encodes to exactly ``len(ids)`` tokens (``ExactLengthError`` if none found)."""
        n, tok = len(ids), self.tokenizer
        special = set(tok.all_special_ids)
        ids = [i for i in ids if i not in special] or list(ids)
        for _ in range(ROUNDS):
            text = tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            again = self.encode(text)
            if len(again) == n:
                return text
            ids = (again + [i for i in ids if i not in special])[:n] if len(again) < n else again[:n]
        raise ExactLengthError(f"no text of exactly {n} tokens under {self.path} after {ROUNDS} rounds")

    def server_count(self, text: str) -> int:
        """Tokens a server using this tokenizer counts for ``text`` (its special tokens included)."""
        return len(self.encode(text, special=True))
