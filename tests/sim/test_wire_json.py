"""sim/wire_json.dumps gives exactly the bytes of json.dumps(..., separators=(",", ":"))."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from executor.sim.wire_json import dumps

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.from_regex(r"[0-9]{1,8}\.[0-9]{8}", fullmatch=True),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
    max_leaves=20,
)


def _std(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


@settings(max_examples=300, deadline=None)
@given(_values)
def test_same_text_as_the_standard_library(data: Any) -> None:
    assert dumps(data) == _std(data)


def test_an_execution_report_and_the_cases_orjson_spells_differently() -> None:
    report = {"e": "executionReport", "E": 1796601600000, "s": "BTCUSDT", "p": "60000.01000000",
              "w": False, "m": True, "g": -1, "C": ""}
    for data in (report, {"x": 1e-05}, {"a": ["é", "\u2028"]}, [1, 2.5, None], {"big": 2**70}):
        assert dumps(data) == _std(data)
