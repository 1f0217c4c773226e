"""The store's tables: their versioned Arrow schemas and the names of the columns other modules
read (constants, so a column is named once), and the builders that give a row or a columnar dict
exactly the schema (``runs_table``, ``columns_table``, ``empty_table``). Units are in the names:
``_s`` seconds, ``_ms`` milliseconds, ``_j`` joules, ``_w`` watts, ``_rps`` requests per second,
``_tok_s`` tokens per second, ``_pct`` percent, ``_mib`` MiB."""
from __future__ import annotations

from typing import Dict, Iterable, Mapping

import pyarrow as pa

# --------------------------------------------------------------------------- runs columns read across modules
WINDOW_S = "window_s"
N_REQUESTS_TOTAL = "n_requests_total"
N_REQUESTS_MEASURED = "n_requests_measured"
N_REQUESTS_OK = "n_requests_ok"
N_REQUESTS_FAILED = "n_requests_failed"
N_REQUESTS_DRAINED = "n_requests_drained"
N_REQUESTS_COMPLETED_IN_WINDOW = "n_requests_completed_in_window"
N_REQUESTS_CANCELLED = "n_requests_cancelled"
OFFERED_RATE_RPS = "offered_rate_rps"
ACHIEVED_RATE_RPS = "achieved_rate_rps"
REQUEST_THROUGHPUT_RPS = "request_throughput_rps"
OUTPUT_TOKENS_IN_WINDOW = "output_tokens_in_window"
OUTPUT_THROUGHPUT_TOK_S = "output_throughput_tok_s"
TENSOR_PARALLEL_SIZE = "tensor_parallel_size"
"""The GPUs one cell spans, of one node (null in files from before it: one)."""
OUTPUT_TOK_S_PER_GPU = "output_throughput_per_gpu_tok_s"
"""Derived by the analysis: output tok/s over the cell's GPUs."""
OUTPUT_TOKENS_PER_REQUEST_MEAN = "output_tokens_per_request_mean"
INPUT_TOKENS_PER_REQUEST_MEAN = "input_tokens_per_request_mean"
PROMPT_TOKENS_IN_WINDOW = "prompt_tokens_in_window"
PREFIX_CACHE_HIT_RATE = "prefix_cache_hit_rate"
CACHED_TOKENS_PER_REQUEST_MEAN = "cached_tokens_per_request_mean"
ENERGY_PER_1K_PROMPT_TOKENS_J = "energy_per_1k_prompt_tokens_j"
WORKLOAD_SOURCE = "workload_source"
CACHED_TOKENS = "cached_tokens"
STEP_SOURCE = "step_source"
ENERGY_OUTSIDE_STEPS_J = "energy_outside_steps_j"
PREFILL_ENERGY_SHARE = "prefill_energy_share"
REQUEST_ENERGY_COLUMNS = ("energy_prefill_j", "energy_decode_j", "energy_j", "net_energy_prefill_j",
                          "net_energy_decode_j", "net_energy_j")
"""Per request: the window's energy attributed to it (``energy.attribution``), gross and net of idle."""
TOKEN_COUNT_MISMATCH = "token_count_mismatch"
CLIENT_LAGGING = "client_lagging"
CLIENT_LAG_P99_MS = 10.0
"""Send-lag p99 (ms) above which a cell is flagged ``client_lagging``: a tenth of a typical 100 ms
TTFT (what the client sustains: ``experiments/benchmarks/client_capacity/``)."""
SEND_LAG_MS = "send_lag_ms"
SATURATED = "saturated"
MEAN_RUNNING_BATCH = "mean_running_batch"
TTFT_P50_MS = "ttft_p50_ms"
TTFT_P99_MS = "ttft_p99_ms"
TPOT_P50_MS = "tpot_p50_ms"
TPOT_P99_MS = "tpot_p99_ms"
E2E_P50_MS = "e2e_p50_ms"
E2E_P99_MS = "e2e_p99_ms"
ENERGY_SOURCE = "energy_source"
ENERGY_NOTE = "energy_note"
ENERGY_J = "energy_j"
ENGINE_START_S = "engine_start_s"
ENGINE_START_KEY = ("host", "gpu_uuid", "engine", ENGINE_START_S, "engine_shared_cells")
"""The runs columns whose values are the same on every row measured on one engine start (the
``engine_shared_cells`` cells that shared it) and, in practice, on no other start's:
``engine_start_s`` is a ``time.monotonic()`` difference of nanosecond resolution."""


def engine_start_seconds(rows: Iterable[Mapping]) -> Dict[tuple, float]:
    """Each engine start's ``engine_start_s`` once, keyed by its ``ENGINE_START_KEY`` values
    (the cells that shared a start count once; rows without a start are left out)."""
    return {tuple(r.get(c) for c in ENGINE_START_KEY): float(r[ENGINE_START_S])
            for r in rows if r.get(ENGINE_START_S) is not None}


START_PHASES = "start_phases"
"""The key of an engine run's extra (``engine_extra``) that holds where its start's seconds went
(``engines.vllm.start_phases``: a dict of the phases below without their ``start_`` prefix)."""
START_PHASE_COLUMNS = tuple(f"start_{p}_s" for p in ("launch", "frontend", "core_boot", "model_setup", "weights",
                                                       "init_engine", "compile", "profiling", "graph_capture", "warmup",
                                                       "init_other", "ready"))
START_COMPILE_CACHED = "start_compile_cached"
IDLE_POWER_W = "idle_power_w"
NET_ENERGY_J = "net_energy_j"
ENERGY_PER_REQUEST_J = "energy_per_request_j"
NET_ENERGY_PER_REQUEST_J = "net_energy_per_request_j"
ENERGY_PER_1K_OUTPUT_TOKENS_J = "energy_per_1k_output_tokens_j"
NET_ENERGY_PER_1K_OUTPUT_TOKENS_J = "net_energy_per_1k_output_tokens_j"
MEAN_POWER_W = "mean_power_w"
ENERGY_INVALID = "energy_invalid"
ENERGY_MISMATCH = "energy_mismatch"
SHORT_WINDOW = "short_window"
GPU_UTIL_MEAN_PCT = "gpu_util_mean_pct"
MEMORY_USED_MAX_MIB = "memory_used_max_mib"
TTFT_MS = "ttft_ms"
TPOT_MS = "tpot_ms"
E2E_MS = "e2e_ms"

SCHEMA_VERSION = 3
"""2: ``cell_id`` hashes the declared identity of the resolved engine (``orchestrator.core.identity``)
and ``config_json`` holds typed values (enums as strings). Version 1 stores (ids over the whole
config) load the same; their cells simply do not match version-2 ids, so a re-run measures them
again. 3: bounded drains (``cancelled`` requests, ``n_requests_cancelled``, ``drain_*``), offline
windows of at least ``min_window_s`` (``n_batches_measured``, ``batch_output_tok_s_cv``), prompts
keyed by the cell (``prompt_hash``) and prefix caching off: new workload/engine fields, so new
ids; older stores load with those columns null. The quantization method and linear kernel the
engine reports it ran (``quantization_method``, ``linear_kernel``) are columns too. Added since,
without a new version (older files load with them null): ``itl_basis`` (token | chunk),
``engine=endpoint``'s ``prompt_mode`` (token_ids | text), ``token_times_source`` (token_ids |
continuous_usage | chunks), ``request_dialect`` (vllm | openai) and ``n_prompt_tokens_mismatch``,
and ``energy_per_gpu_j`` (JSON {GPU UUID: J} where a cell's energy is summed over several GPUs;
with ``energy_mismatch_gpus``, the JSON list of those GPUs whose own counter and integrated power
disagree, and ``idle_power_per_gpu_w``, JSON {GPU UUID: W} of each one's idle baseline);
the client's own lateness (``send_lag_p50_ms``/``p99``/``max``, ``client_lagging``; per request
``send_lag_ms``) and how a server was spoken to and counted (``api``: completions | chat;
``token_count_source``: usage | token_ids | tokenized; ``chat_template_tokens``;
``output_lengths_forced``); real traffic (``workload_source``: synthetic | dataset | trace |
sessions, ``workload_notes`` JSON of what the source did) and the prefix cache
(``prefix_cache_hit_rate``, ``cached_tokens_per_request_mean``, ``prompt_tokens_in_window``,
``energy_per_1k_prompt_tokens_j``, ``prefix_cache_reset``; per request ``cached_tokens``,
``session``, ``turn``). Since then ``n_requests_completed_in_window`` counts measured requests
only (warm-up is never served): older rows counted warm-up completions too. The ``steps`` table
(one row per engine step: times, prefill/decode tokens, the requests in it, its energy) and the
energy attributed per request (``REQUEST_ENERGY_COLUMNS``) and per cell (``step_source``,
``n_steps``, ``energy_in_steps_j``, ``energy_outside_steps_j``, ``prefill_energy_share``) are
new too; older stores have no steps files and null columns. The phases of the cell's engine start
(``START_PHASE_COLUMNS``, ``start_compile_cached``: vLLM engines, from their log; the same on every
row of one start) are new since; null for other engines and older rows."""
READABLE_VERSIONS = (1, 2, 3)
TABLES = ("runs", "requests", "power", "steps")
F64, I64, STR, BOOL = pa.float64(), pa.int64(), pa.string(), pa.bool_()

_PCT = [f"{m}_{p}_ms" for m in ("ttft", "tpot", "itl", "e2e") for p in ("p50", "p90", "p99", "mean")]

RUNS_SCHEMA = pa.schema(
    [
        ("cell_id", STR), ("sweep", STR), ("schema_version", I64), ("status", STR), ("error", STR),
        ("attempts", I64), ("engine", STR), ("engine_requested", STR), ("engine_reason", STR),
        ("model", STR), ("quantization", STR), ("gpu", STR), ("accelerator_type", STR),
        ("batch_size", I64), (TENSOR_PARALLEL_SIZE, I64), ("workload", STR), ("arrival", STR), ("repeat", I64),
        ("seed", I64), ("input_tokens_mean_cfg", F64), ("output_tokens_mean_cfg", F64), ("config_json", STR),
        ("window_start_s", F64), ("window_end_s", F64), (WINDOW_S, F64),
        (N_REQUESTS_TOTAL, I64), (N_REQUESTS_MEASURED, I64), (N_REQUESTS_OK, I64),
        (N_REQUESTS_FAILED, I64), (N_REQUESTS_DRAINED, I64), (N_REQUESTS_COMPLETED_IN_WINDOW, I64),
        (N_REQUESTS_CANCELLED, I64), ("drain_timeout_s", F64), ("drain_s", F64), ("min_window_s", F64),
        ("n_batches_measured", I64), ("batch_output_tok_s_cv", F64),
        (OFFERED_RATE_RPS, F64), ("scheduled_rate_rps", F64), (ACHIEVED_RATE_RPS, F64), (REQUEST_THROUGHPUT_RPS, F64),
        (OUTPUT_TOKENS_IN_WINDOW, I64), (OUTPUT_THROUGHPUT_TOK_S, F64), ("total_throughput_tok_s", F64),
        (OUTPUT_TOKENS_PER_REQUEST_MEAN, F64), (INPUT_TOKENS_PER_REQUEST_MEAN, F64),
        (PROMPT_TOKENS_IN_WINDOW, I64), (PREFIX_CACHE_HIT_RATE, F64), (CACHED_TOKENS_PER_REQUEST_MEAN, F64),
        (TOKEN_COUNT_MISMATCH, BOOL), (SATURATED, BOOL), (MEAN_RUNNING_BATCH, F64),
        ("send_lag_p50_ms", F64), ("send_lag_p99_ms", F64), ("send_lag_max_ms", F64), (CLIENT_LAGGING, BOOL),
    ]
    + [(c, F64) for c in _PCT]
    + [("itl_basis", STR)]
    + [
        (ENERGY_SOURCE, STR), (ENERGY_NOTE, STR), (ENERGY_J, F64), ("energy_integrated_j", F64),
        (IDLE_POWER_W, F64), ("baseline_energy_j", F64), (NET_ENERGY_J, F64),
        (ENERGY_PER_REQUEST_J, F64), (NET_ENERGY_PER_REQUEST_J, F64),
        (ENERGY_PER_1K_OUTPUT_TOKENS_J, F64), (NET_ENERGY_PER_1K_OUTPUT_TOKENS_J, F64),
        (ENERGY_PER_1K_PROMPT_TOKENS_J, F64),
        (MEAN_POWER_W, F64), ("max_power_w", F64), (ENERGY_INVALID, BOOL), (ENERGY_MISMATCH, BOOL),
        (SHORT_WINDOW, BOOL), ("counter_update_period_s", F64), (GPU_UTIL_MEAN_PCT, F64),
        (MEMORY_USED_MAX_MIB, F64), ("sm_clock_mean_mhz", F64), ("temperature_max_c", F64),
        ("node_id", STR), ("host", STR), ("gpu_name", STR), ("gpu_uuid", STR), ("ray_gpu_ids", STR),
        ("assigned_resources", STR), ("engine_versions", STR), (ENGINE_START_S, F64),
        ("engine_shared_cells", I64), ("engine_extra", STR), ("quantization_method", STR),
        ("linear_kernel", STR), ("prompt_mode", STR), ("token_times_source", STR), ("request_dialect", STR),
        ("n_prompt_tokens_mismatch", I64), ("api", STR), ("token_count_source", STR), ("chat_template_tokens", I64),
        ("output_lengths_forced", BOOL), ("energy_per_gpu_j", STR), ("energy_mismatch_gpus", STR),
        ("idle_power_per_gpu_w", STR), (WORKLOAD_SOURCE, STR), ("workload_notes", STR),
        ("prefix_cache_reset", BOOL), (STEP_SOURCE, STR), ("n_steps", I64), ("energy_in_steps_j", F64),
        (ENERGY_OUTSIDE_STEPS_J, F64), ("net_energy_outside_steps_j", F64), (PREFILL_ENERGY_SHARE, F64),
    ]
    + [(c, F64) for c in START_PHASE_COLUMNS]
    + [
        (START_COMPILE_CACHED, BOOL), ("cell_wall_s", F64),
        ("started_unix_s", F64), ("finished_unix_s", F64),
    ]
)

REQUESTS_SCHEMA = pa.schema(
    [
        ("cell_id", STR), ("request_index", I64), ("phase", STR), ("batch_index", I64),
        ("scheduled_arrival_s", F64), ("send_s", F64), (SEND_LAG_MS, F64), ("first_token_s", F64), ("end_s", F64),
        ("n_token_times", I64), ("input_tokens", I64), ("output_tokens", I64),
        ("requested_output_tokens", I64), (TTFT_MS, F64), (TPOT_MS, F64), (E2E_MS, F64),
        ("drained", BOOL), ("status", STR), ("error", STR), ("prompt_hash", STR),
        (CACHED_TOKENS, I64), ("session", I64), ("turn", I64),
    ]
    + [(c, F64) for c in REQUEST_ENERGY_COLUMNS]
)

STEPS_SCHEMA = pa.schema(
    [
        ("cell_id", STR), ("step_index", I64), ("start_s", F64), ("end_s", F64), ("prefill_tokens", I64),
        ("decode_tokens", I64), ("n_requests", I64), ("energy_j", F64), ("net_energy_j", F64),
        ("prefill_share", F64), (STEP_SOURCE, STR), ("request_index", pa.list_(pa.int64())),
        ("request_prefill_tokens", pa.list_(pa.int64())), ("request_decode_tokens", pa.list_(pa.int64())),
    ]
)

POWER_SCHEMA = pa.schema(
    [
        ("cell_id", STR), ("t_ns", I64), ("t_rel_s", F64), ("power_w", F64), ("energy_mj", F64),
        ("util_pct", F64), ("memory_used_mib", F64), ("sm_clock_mhz", F64), ("temperature_c", F64),
        ("in_window", BOOL),
    ]
)

SCHEMAS = {"runs": RUNS_SCHEMA, "requests": REQUESTS_SCHEMA, "power": POWER_SCHEMA, "steps": STEPS_SCHEMA}


def with_meta(schema: pa.Schema) -> pa.Schema:
    return schema.with_metadata({"orchestrator_schema_version": str(SCHEMA_VERSION)})


def runs_table(rows: Iterable[Dict]) -> pa.Table:
    """Rows -> runs table; missing columns are null, unknown keys are an error."""
    rows = list(rows)
    names = set(RUNS_SCHEMA.names)
    for r in rows:
        extra = set(r) - names
        if extra:
            raise KeyError(f"runs row has columns not in the schema: {sorted(extra)}")
    cols = {n: [r.get(n) for r in rows] for n in RUNS_SCHEMA.names}
    return pa.Table.from_pydict(cols, schema=with_meta(RUNS_SCHEMA))


def columns_table(table: str, columns: Dict) -> pa.Table:
    """Columnar dict (lists or numpy arrays) -> a requests/power table with the exact schema."""
    schema = SCHEMAS[table]
    n = len(next(iter(columns.values()))) if columns else 0
    arrays = [pa.array(columns[f.name] if f.name in columns else [None] * n, type=f.type, from_pandas=True)
              for f in schema]
    return pa.Table.from_arrays(arrays, schema=with_meta(schema))


def empty_table(table: str) -> pa.Table:
    return with_meta(SCHEMAS[table]).empty_table()
