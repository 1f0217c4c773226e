"""The request side: workload plans (``workload``), model files and prompt token ids
(``model_files``), the async streaming OpenAI-compatible client (``stream``) and its response
reader (``sse``), the bounded drain (``drain``), what a running server accepts (``probe``) and text
prompts of exact token length (``prompts``), and per-cell request metrics (``metrics``). Runs on
workers and, for the endpoint probe, on the driver; imports no engine."""
