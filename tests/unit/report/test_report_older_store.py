"""A store from before the prefix-cache and traffic-source columns (the committed H200 study):
its report gains the request-length summary but claims no hit rate, no J per prompt token, no
traffic source and no prefix-cache answer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from orchestrator.analysis.dataset import read_sweep
from orchestrator.analysis.request_lengths import N_MEASURED_OK
from orchestrator.analysis.tables import PREFIX_CACHE_HIT_PCT
from orchestrator.report import answers, header, lengths
from orchestrator.report.analyse import analyse
from orchestrator.report.options import ReportOptions
from orchestrator.store.schema import ENERGY_PER_1K_PROMPT_TOKENS_J

STUDY_STORE = Path(__file__).resolve().parents[3] / "experiments" / "h200_study" / "store"


def test_an_older_store_claims_nothing_about_the_prefix_cache_or_traffic_sources():
    a = analyse(read_sweep(str(STUDY_STORE)), ReportOptions(str(STUDY_STORE), write_html=False))
    assert a.cache_savings == [] and not any("prefix cache" in g.lead for g in answers.answer_groups(a))
    assert PREFIX_CACHE_HIT_PCT not in a.detail and PREFIX_CACHE_HIT_PCT not in a.energy
    assert ENERGY_PER_1K_PROMPT_TOKENS_J not in a.energy
    text = "\n".join(header.header(a))
    assert "source:" not in text and "workload source" not in text
    assert a.lengths["cached_tokens_max"].isna().all() and a.lengths["prefix_caching"].isin([False, None]).all()
    md = "\n".join(lengths.lengths_section(a))
    assert "cached tok" not in md and "prefix caching" not in md and "| repeat |" in md  # the study repeats cells
    # one cell's summary, recomputed from its Parquet file
    cell = a.lengths.sort_values(N_MEASURED_OK).iloc[-1]
    req = pq.read_table(STUDY_STORE / "requests" / f"{cell['cell_id']}.parquet").to_pandas()
    good = req[(req["phase"] == "measured") & (req["status"] == "ok")]
    assert cell[N_MEASURED_OK] == len(good)
    assert cell["input_tokens_p90"] == np.percentile(good["input_tokens"], 90)
    assert cell["output_tokens_max"] == good["output_tokens"].max()
