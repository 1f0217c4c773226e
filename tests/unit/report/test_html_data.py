"""What the HTML page's data says about its key answers and points, without a sweep."""
from __future__ import annotations

import pandas as pd

from orchestrator.report.html_data import POINT_COLUMNS, SHORT_ANSWERS, records, short_answers


def test_the_short_answers_are_measured_ones_first_in_the_reports_order():
    items = ["**a** (offline): 1 mJ. †", "**b** (offline): 2 mJ.", "**c** (chat): 3 mJ. †", "**d** (chat): 4 mJ."]
    assert short_answers(items, 2) == [1, 3]  # both measured, though simulated ones come first
    assert short_answers(items, 3) == [0, 1, 3]  # then simulated ones, shown in the report's order
    assert short_answers(items[:1], 2) == [0]
    assert short_answers([], 2) == []
    assert SHORT_ANSWERS == 2


def test_the_points_carry_the_batch_knob_and_the_device_where_the_store_has_them():
    assert {"batch_knob", "device"} <= set(POINT_COLUMNS)
    new = pd.DataFrame({"series": ["s"], "batch_knob": ["batch size"], "device": ["cpu"]})
    assert records(new, POINT_COLUMNS) == {"series": ["s"], "batch_knob": ["batch size"], "device": ["cpu"]}
    old = pd.DataFrame({"series": ["s"]})  # a store from before the columns: nothing invented
    assert records(old, POINT_COLUMNS) == {"series": ["s"]}
