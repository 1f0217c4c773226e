"""A Ray-distributed, multi-GPU experiment orchestrator for LLM inference (throughput, latency,
energy over a Hydra grid). Importing this package imports no engine, torch, vllm or pynvml."""
__version__ = "0.1.0"
