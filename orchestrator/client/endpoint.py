"""Where requests go (``Endpoint``: base URL, route, model name, key) and how the server is spoken
to (``Dialect``: prompts as token ids or text, vLLM's extra fields or OpenAI's only, continuous
usage). Shared by the streaming client, its response reader and the endpoint probe."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional


COMPLETIONS, CHAT = "completions", "chat"
ROUTES = {COMPLETIONS: "/v1/completions", CHAT: "/v1/chat/completions"}


@dataclass(frozen=True)
class Endpoint:
    """Where to send: ``base_url`` like ``http://127.0.0.1:8000`` (no trailing ``/v1``) and the
    ``api`` (``completions``: a prompt; ``chat``: one user message)."""

    base_url: str
    model: str
    api_key: Optional[str] = None
    api: str = COMPLETIONS

    @property
    def url(self) -> str:
        """The route requests are POSTed to."""
        return self.base_url.rstrip("/") + ROUTES[self.api]

    @property
    def chat(self) -> bool:
        return self.api == CHAT

    def headers(self) -> Dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h


@dataclass(frozen=True)
class Dialect:
    """How request bodies are written. ``text_prompts``: the prompt goes as text (``prompt_text``
    of the client), else as token ids; ``vllm_extras``: ``return_token_ids``, ``request_id``,
    ``ignore_eos``/``min_tokens`` (without them, the OpenAI fields only: a strict server refuses
    fields it does not know); ``continuous_usage``: ask for usage in every chunk."""

    text_prompts: bool = False
    vllm_extras: bool = True
    continuous_usage: bool = False

    @property
    def name(self) -> str:
        """``vllm`` (vLLM's extra fields sent) or ``openai`` (the OpenAI fields only)."""
        return "vllm" if self.vllm_extras else "openai"


VLLM = Dialect()
