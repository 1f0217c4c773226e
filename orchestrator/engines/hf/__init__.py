"""Hugging Face transformers static batching (``engine``) and its model loading (``model``: random
weights of the right shapes, bitsandbytes INT8). Importing this package registers the engine;
torch and transformers are imported inside its methods, on the worker."""
from orchestrator.engines.hf import engine  # noqa: F401 (registers the engine)
