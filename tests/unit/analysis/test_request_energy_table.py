"""``analysis.request_energy`` on hand-made rows: the per-cell percentiles are numpy's, the typical
request is the lower-median request (with its own split) of the series' cell with the most
attributed requests, and no attribution gives an empty table and no typical request."""
from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.analysis import request_energy as re

CELLS = pd.DataFrame({
    "cell_id": ["a", "b", "c"], "workload": ["w", "w", "w"], "gpu": ["h100"] * 3, "model": ["m"] * 3,
    "quantization": ["none"] * 3, "series": ["s1", "s1", "s2"], "batch_size": [1, 8, 4], "repeat": [0, 0, 0],
    "engine": ["simulated"] * 3, "simulated": [True] * 3, "step_source": ["simulated", "simulated", "engine"],
})


def _requests(cell: str, energies: list[float]) -> pd.DataFrame:
    e = np.asarray(energies, dtype=float)
    return pd.DataFrame({"cell_id": cell, "input_tokens": 10.0, "output_tokens": 5.0, "energy_j": e,
                         "energy_prefill_j": e * 0.25, "energy_decode_j": e * 0.75, "net_energy_j": e * 0.5,
                         "net_energy_prefill_j": e * 0.1, "net_energy_decode_j": e * 0.4})


REQUESTS = pd.concat([_requests("a", [1, 2, 3]), _requests("b", [4, 8, 2, 6]), _requests("c", [5])],
                     ignore_index=True)


def test_percentiles_per_cell_are_numpys():
    table = re.distribution_table(REQUESTS, CELLS).set_index("cell_id")
    for cell, req in REQUESTS.groupby("cell_id"):
        assert table.loc[cell, re.N_ATTRIBUTED] == len(req)
        for column in re.DISTRIBUTED:
            for (name, q) in re.STATS:
                assert np.isclose(table.loc[cell, f"{column}_{name}"], np.percentile(req[column], q * 100))
    assert table.loc["c", "step_source"] == "engine"


def test_the_typical_request_is_the_lower_median_of_the_busiest_cell():
    typical = {t.series: t for t in re.typical_requests(REQUESTS, CELLS)}
    s1 = typical["s1"]  # cell b (4 requests > 3): sorted 2, 4, 6, 8 -> rank 2 is 4 J
    assert (s1.cell_id, s1.batch_size, s1.n_requests, s1.energy_j) == ("b", 8, 4, 4.0)
    assert (s1.prefill_j, s1.decode_j, s1.net_j, s1.prefill_pct) == (1.0, 3.0, 2.0, 25.0)
    assert typical["s2"].energy_j == 5.0 and typical["s2"].step_source == "engine"


def test_without_attribution_there_is_nothing():
    empty = REQUESTS.iloc[0:0]
    assert re.distribution_table(empty, CELLS).empty and re.typical_requests(empty, CELLS) == []
    assert re.cdf_points(np.array([])) == []
    assert re.cdf_points(np.array([1.0, 3.0]), 3) == [1.0, 2.0, 3.0]
