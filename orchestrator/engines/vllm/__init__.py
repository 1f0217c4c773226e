"""vLLM: static batches in-process (``offline``) and ``vllm serve`` + the streaming client
(``server``), sharing ``common`` (options, capabilities, engine arguments) and ``log`` (a
failure's root cause in vLLM's log). Importing this package registers both variants; vllm itself
is imported inside their methods, on the worker."""
from orchestrator.engines.vllm import offline, server  # noqa: F401 (registers the engine's variants)
