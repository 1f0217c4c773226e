"""The parts of ``scripts/bench_vllm.py`` (see its docstring for the method):

``common``   settings, targets, the shared config overrides and cell configs, ``results.json`` writes
``procs``    each part's own process: command, environment, log following, time limit
``offline``  part ``offline``: the orchestrator's sweep, its Parquet rows, the per-cell overhead (e)
``bare``     part ``bare``: ``vllm.LLM`` + ``LLM.generate`` (reference tok/s, sampler on/off, energy)
``server``   part ``server``: ``VllmServerEngine`` + the client, then ``vllm bench serve``
``report``   the pass/fail checks and ``results.md``

Only ``report`` and ``common`` are imported by ``--report-only``; no module imports vllm, torch
or pynvml at import time.
"""
