"""Prompts for a server the orchestrator did not start (``engine=endpoint``): the tokenizer they
are measured under, and text of an exact token length for servers that take no token ids.

The tokenizer is a local directory: ``engine.endpoint.tokenizer``, else ``model.path``, else the
one generated from the model config (``models.model_dir``: no hub). ``TextPrompts.text(ids)``
turns a prompt's token ids into text that encodes (without special tokens) to exactly
``len(ids)`` tokens: decode, re-encode, keep the first n ids of the re-encoding and fill up from
the original ids, until the round trip holds (a few rounds for BPE tokenizers; at once for the
generated word-level one). ``server_count(text)`` is what a server that adds its special tokens
(BOS) should report as ``usage.prompt_tokens``; ``chat_count(text)`` what a chat server reports
for one user message holding it: the tokenizer's chat template rendered (with the generation
prompt) and encoded as vLLM does (no special tokens added to the rendered text), or, without a
template, the text as a completion. ``chat_overhead()`` is what the template adds to a message
(0 without one): a chat prompt of n tokens is built as ``n - chat_overhead()`` tokens of text, so
the server sees the length the workload asked for. ``count(text)`` counts a response's tokens (a
server that reports none). transformers is imported on first use only.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence

from orchestrator.client.model_files import model_dir
from orchestrator.errors import ConfigError, OrchestratorError

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
        self._overhead: Optional[int] = None

    @property
    def tokenizer(self):
        """The tokenizer (``ConfigError``, one line, where transformers is not installed)."""
        if self._tok is None:
            try:
                from transformers import AutoTokenizer
            except ImportError:
                raise ConfigError("engine=endpoint: text prompts, chat messages and counting a server's text need the "
                                  "model's tokenizer, which needs transformers: pip install -e '.[hf]'") from None
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

    def count(self, text: str) -> int:
        """Tokens of a response's text (no special tokens)."""
        return len(self.encode(text))

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def chat_count(self, text: str) -> int:
        """Tokens a chat server using this tokenizer counts for one user message holding ``text``."""
        if not self.has_chat_template:
            return self.server_count(text)
        rendered = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                      add_generation_prompt=True)
        return len(self.encode(str(rendered)))

    def chat_overhead(self) -> int:
        """Tokens the chat template adds around one user message (0 without a template)."""
        if self._overhead is None:
            sample = "hello"
            self._overhead = max(0, self.chat_count(sample) - len(self.encode(sample))) if self.has_chat_template else 0
        return self._overhead
