"""Analysis of a finished sweep: tables, fits, roofline and VRAM tables (maths in
``orchestrator.perf``), cost/carbon, recommendations and checks, for the report.

Submodules are imported on use; importing this package imports nothing heavy. The runtime never
imports it. The public API below is resolved lazily from its submodule; every function returns
a pandas DataFrame (or a small dataclass) with units in column names:

=========================  ======================  ==================================================
name                       module                  what
=========================  ======================  ==================================================
``read_sweep(dir)``        ``dataset``             load a sweep -> ``SweepData`` (runs + derived columns)
``batch_points(ok)``       ``dataset``             one row per series x batch size (repeats folded, 95% CIs, CVs)
``baseline_sizes``         ``dataset``             each series' baseline batch size (given, else its smallest)
``repeatability_table``    ``repeats``             mean, Student-t 95% CI and CV over repeats per point
``status_table(runs)``     ``tables``              cells whose status is not ok, with the reason
``detail_table``           ``tables``              requests, throughput, latency per batch size
``summary_table``          ``tables``              baseline vs best-throughput vs best-energy batch
``energy_table``           ``energy``              gross and net J/request, J/1k tokens, scaling
``fit_power_law``          ``scaling``             y ≈ C x BS^k in log space -> ``PowerLawFit``
``fit_with_breakdown``     ``scaling``             the fit plus where it stops holding
``scaling_table``          ``scaling``             fits per series for a metric
``roofline_table``         ``roofline_table``      decode intensity, ridge, ceiling, achieved fraction
``ridge_batches``          ``roofline_table``      decode batch at which each combination turns compute-bound
``vram_table``             ``vram_table``          budget per model x quant x GPU x context, checks
``cost_table``             ``cost``                kWh, cost and CO2 per month, saving vs baseline
``recommendations``        ``recommend``           batch size per scenario under SLOs, with reasons
``request_checks``         ``checks``              requests rows vs runs rows agreement
``compare_points``         ``compare``             two sweeps' points matched side by side, with significance
``length_table``           ``request_lengths``     per cell, p50/p90/max of its requests' input/output/cached tokens
``cache_savings``          ``prefix_cache``        cells paired by prefix caching off and on, with both sides' numbers
``distribution_table``     ``request_energy``      per cell, p10/p50/p90 of its requests' attributed energy (prefill, decode)
``typical_requests``       ``request_energy``      per series, its median request's energy and prefill/decode split
=========================  ======================  ==================================================
"""
from importlib import import_module

_API = {
    "read_sweep": "dataset", "batch_points": "dataset", "SweepData": "dataset", "SweepError": "dataset",
    "FLAGS": "dataset", "baseline_sizes": "dataset",
    "REPEAT_METRICS": "repeats", "repeatability_table": "repeats",
    "status_table": "tables", "detail_table": "tables", "summary_table": "tables",
    "energy_table": "energy",
    "PowerLawFit": "scaling", "fit_power_law": "scaling", "fit_with_breakdown": "scaling",
    "scaling_table": "scaling", "local_exponents": "scaling",
    "roofline_table": "roofline_table", "gpu_roofs": "roofline_table", "ridge_batches": "roofline_table",
    "vram_table": "vram_table", "vram_by_batch": "vram_table",
    "CostAssumptions": "cost", "cost_table": "cost", "monthly_kwh": "cost",
    "Slo": "recommend", "recommendations": "recommend",
    "request_checks": "checks",
    "Comparison": "compare", "compare_points": "compare",
    "length_table": "request_lengths", "cache_savings": "prefix_cache", "CacheSaving": "prefix_cache",
    "distribution_table": "request_energy", "typical_requests": "request_energy", "TypicalRequest": "request_energy",
}

__all__ = [
    "FLAGS",
    "REPEAT_METRICS",
    "CacheSaving",
    "Comparison",
    "CostAssumptions",
    "PowerLawFit",
    "Slo",
    "SweepData",
    "SweepError",
    "TypicalRequest",
    "baseline_sizes",
    "batch_points",
    "cache_savings",
    "compare_points",
    "cost_table",
    "detail_table",
    "distribution_table",
    "energy_table",
    "fit_power_law",
    "fit_with_breakdown",
    "gpu_roofs",
    "length_table",
    "local_exponents",
    "monthly_kwh",
    "read_sweep",
    "recommendations",
    "repeatability_table",
    "request_checks",
    "ridge_batches",
    "roofline_table",
    "scaling_table",
    "status_table",
    "summary_table",
    "typical_requests",
    "vram_by_batch",
    "vram_table",
]


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f"{__name__}.{_API[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
