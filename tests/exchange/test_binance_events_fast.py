"""The executionReport fast path must be invisible: same event, same errors, as the strict parser."""

import copy
from dataclasses import fields
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.core.orders import Observation
from executor.exchange import binance_events as events_mod
from executor.exchange.binance_events import (
    ExecutionReport,
    MalformedEvent,
    parse_user_event,
    parse_user_event_strict,
)

from .conftest import load_fixtures

ER_FIXTURES = ["executionReport_NEW", "executionReport_TRADE_partial", "executionReport_TRADE_fill",
               "executionReport_CANCELED"]
FIX = load_fixtures()


def _same(a: object, b: object) -> None:
    """Equal field by field, with the same types (Side/OrderStatus members, Decimal exponents)."""
    assert type(a) is type(b) is ExecutionReport
    for f in fields(ExecutionReport):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert x == y and type(x) is type(y), f.name
        if isinstance(x, Decimal):
            assert x.as_tuple() == y.as_tuple(), f.name
    assert a.raw is b.raw  # type: ignore[attr-defined]
    assert a == b and repr(a) == repr(b)


@pytest.mark.parametrize("name", ER_FIXTURES)
def test_fast_path_agrees_with_strict_on_fixtures(name: str) -> None:
    frame = FIX[name]
    assert events_mod._fast_execution_report(frame) is not None  # the fast path is really taken
    _same(parse_user_event(frame), parse_user_event_strict(frame))
    bare = frame["event"]
    _same(parse_user_event(bare), parse_user_event_strict(bare))


def test_observation_is_the_one_observation_builds() -> None:
    ev = parse_user_event(FIX["executionReport_TRADE_partial"])
    assert isinstance(ev, ExecutionReport)
    obs = ev.observation()
    ref = Observation(ev.status, ev.cum_qty, ev.cum_quote, ev.order_id)
    assert obs == ref and vars(obs) == vars(ref) and type(obs.status) is type(ref.status)


decimal_text = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=8, min_value=-10**12, max_value=10**12)
    .map(lambda d: f"{d:f}"),
    st.from_regex(r"\A[+-]?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})\Z"),
)
ints = st.integers(-2**63, 2**63)
text = st.text(max_size=20)
name_text = st.text(min_size=1, max_size=12)


@st.composite
def valid_execution_reports(draw: st.DrawFn) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "e": "executionReport", "E": draw(ints), "s": draw(name_text), "c": draw(text), "C": draw(text),
        "S": draw(st.sampled_from(["BUY", "SELL"])), "o": draw(name_text), "f": draw(text),
        "x": draw(name_text), "r": draw(text), "i": draw(ints), "T": draw(ints), "t": draw(ints),
        "I": draw(ints), "O": draw(ints), "m": draw(st.booleans()), "w": draw(st.booleans()),
        "X": draw(st.sampled_from(["NEW", "PENDING_NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED",
                                   "PENDING_CANCEL", "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH"])),
    }
    for k in ("q", "p", "l", "z", "L", "n", "Z", "Y"):
        ev[k] = draw(decimal_text)
    for k, strat in (("g", ints), ("N", text), ("W", ints), ("eR", text)):
        choice = draw(st.integers(0, 2))
        if choice == 1:
            ev[k] = None
        elif choice == 2:
            ev[k] = draw(strat)
    if draw(st.booleans()):
        return {"subscriptionId": draw(st.one_of(st.none(), ints)), "event": ev}
    return ev


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(valid_execution_reports())
def test_fast_path_agrees_with_strict_on_generated_events(obj: dict[str, Any]) -> None:
    assert events_mod._fast_execution_report(obj) is not None
    _same(parse_user_event(obj), parse_user_event_strict(obj))


def _outcome(parse: Any, obj: object) -> tuple[str, object]:
    try:
        return ("ok", parse(obj))
    except MalformedEvent as exc:
        return ("malformed", str(exc))


odd_value = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True),
                      st.sampled_from(["", "1E5", "1e-8", " 1", "1_0", "NaN", "Infinity", "٣", "1.2.3", "+-1",
                                       "1,5", "9" * 61, "0." + "0" * 59, "BUY", "FILLED", "DONE"]),
                      st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(),
                                                                            max_size=1))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ER_FIXTURES), st.data())
def test_mutated_reports_fail_exactly_like_strict(name: str, data: st.DataObject) -> None:
    frame = copy.deepcopy(FIX[name])
    event = frame["event"]
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(event)))
        if data.draw(st.booleans()):
            event[key] = data.draw(odd_value)
        else:
            del event[key]
    target = frame if data.draw(st.booleans()) else event
    fast, strict = _outcome(parse_user_event, target), _outcome(parse_user_event_strict, target)
    assert fast[0] == strict[0]
    if fast[0] == "malformed":
        assert fast[1] == strict[1]  # the same one-line message naming the field
    elif isinstance(fast[1], ExecutionReport):
        _same(fast[1], strict[1])
    else:
        assert fast[1] == strict[1]


@pytest.mark.parametrize(("key", "value", "message"), [
    ("z", 0.002, r"^executionReport\.z: expected a decimal string, got float"),
    ("q", "1E-5", r"^executionReport\.q: not a plain decimal number"),
    ("p", "9" * 61, r"^executionReport\.p: not a plain decimal number"),
    ("X", "DONE", r"^executionReport\.X: unknown order status 'DONE'"),
    ("i", True, r"^executionReport\.i: expected an integer, got bool"),
    ("m", 1, r"^executionReport\.m: expected true/false, got int"),
    ("s", "", r"^executionReport\.s: empty"),
])
def test_malformed_fields_still_named(key: str, value: object, message: str) -> None:
    event = copy.deepcopy(FIX["executionReport_TRADE_fill"]["event"])
    event[key] = value
    with pytest.raises(MalformedEvent, match=message):
        parse_user_event(event)


def test_integer_money_is_left_to_the_strict_parser() -> None:
    # The strict parser accepts ints for money (exact); the fast path defers rather than differ.
    event = copy.deepcopy(FIX["executionReport_NEW"]["event"])
    event["q"] = 2
    assert events_mod._fast_execution_report(event) is None
    ev = parse_user_event(event)
    assert isinstance(ev, ExecutionReport) and ev.quantity == Decimal(2)
