from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executor.core.orders import (
    AbsenceConfirmed,
    NotFound,
    Observation,
    OrderState,
    OrderStatus,
    SendRejected,
    SendUnknown,
    apply,
    parse_side,
    parse_status,
)

D = Decimal
S = OrderStatus


def run(events: list, state: OrderState | None = None) -> OrderState:
    state = state or OrderState()
    for e in events:
        state = apply(state, e)
    return state


def test_happy_path() -> None:
    s = run([Observation(S.NEW, order_id=7)])
    assert s.status is S.NEW and s.order_id == 7 and s.is_open and not s.is_final
    s = apply(s, Observation(S.PARTIALLY_FILLED, D("0.5"), D("50"), 7))
    assert s.status is S.PARTIALLY_FILLED and s.executed_qty == D("0.5")
    s = apply(s, Observation(S.FILLED, D("1"), D("101"), 7))
    assert s.status is S.FILLED and s.is_final and s.avg_price == D("101")


def test_never_backwards() -> None:
    filled = run([Observation(S.FILLED, D("1"), D("100"), 7)])
    assert run([Observation(S.NEW, order_id=7)], filled) == filled  # late NEW ignored
    assert run([Observation(S.PARTIALLY_FILLED, D("0.4"), D("40"), 7)], filled) == filled
    assert run([Observation(S.CANCELED, D("1"), D("100"), 7)], filled).status is S.FILLED  # final is final
    part = run([Observation(S.PARTIALLY_FILLED, D("0.4"), D("40"), 7)])
    assert run([Observation(S.PARTIALLY_FILLED, D("0.2"), D("20"), 7)], part) == part


def test_new_with_fills_reads_as_partially_filled() -> None:
    s = run([Observation(S.PARTIALLY_FILLED, D("0.4"), D("40")), Observation(S.NEW)])
    assert s.status is S.PARTIALLY_FILLED


def test_unknown_outcome_resolution() -> None:
    unknown = run([SendUnknown("HTTP 503")])
    assert unknown.status is S.UNKNOWN and unknown.is_unresolved
    # resolves to whatever the exchange says...
    assert apply(unknown, Observation(S.FILLED, D(1), D(1), 9)).status is S.FILLED
    # ...or to NOT_FOUND when the client id is unknown to the exchange: not final yet
    missing = apply(unknown, NotFound())
    assert missing.status is S.NOT_FOUND and missing.is_unresolved and not missing.is_final
    # a late appearance wins: the exchange's word beats our inference
    assert apply(missing, Observation(S.NEW, order_id=9)).status is S.NEW
    # absent again at a later reconciliation: confirmed never placed (final)
    gone = apply(missing, AbsenceConfirmed())
    assert gone.status is S.NOT_PLACED and gone.is_final
    # ...and still the exchange's word wins if it shows up after all
    assert apply(gone, Observation(S.NEW, order_id=9)).status is S.NEW
    # confirmation needs a first not-found
    assert apply(unknown, AbsenceConfirmed()).status is S.UNKNOWN


def test_stream_event_beating_the_http_error() -> None:
    # The executionReport NEW arrives before the 503 response: the order is not UNKNOWN.
    s = run([Observation(S.NEW, order_id=1), SendUnknown("503"), NotFound()])
    assert s.status is S.NEW


def test_send_rejected() -> None:
    assert run([SendRejected("-2010 insufficient balance")]).status is S.REJECTED
    assert run([SendUnknown(), SendRejected("x")]).status is S.REJECTED
    assert run([Observation(S.NEW), SendRejected("x")]).status is S.NEW


def test_local_statuses_are_not_observations() -> None:
    for status in (S.PENDING_SEND, S.SENT, S.UNKNOWN, S.NOT_FOUND, S.NOT_PLACED):
        with pytest.raises(ValueError, match="local"):
            Observation(status)
    with pytest.raises(TypeError):
        apply(OrderState(), "FILLED")  # type: ignore[arg-type]


def test_parse_status_and_side() -> None:
    assert parse_status("PENDING_NEW") is S.NEW
    assert parse_status("EXPIRED_IN_MATCH") is S.EXPIRED_IN_MATCH
    with pytest.raises(ValueError, match="X: unknown order status 'NEW_ADL'"):
        parse_status("NEW_ADL", "X")
    assert parse_side("SELL").value == "SELL"
    with pytest.raises(ValueError, match="side"):
        parse_side("sell")


# --- permutation property -------------------------------------------------------------


@st.composite
def lifecycle(draw: st.DrawFn) -> list:
    """A valid ordered event sequence for one order, REST snapshots included."""
    qty = D(draw(st.integers(1, 20)))
    price = D(draw(st.integers(1, 1000)))
    fills = draw(st.lists(st.integers(1, 5), max_size=6))
    events: list = []
    if draw(st.booleans()):
        events.append(SendUnknown("timeout"))
    events.append(Observation(S.NEW, order_id=1))
    z = D(0)
    for size in fills:
        step = min(D(size), qty - z)
        if step <= 0:
            break
        z += step
        events.append(Observation(S.FILLED if z == qty else S.PARTIALLY_FILLED, z, z * price, 1))
    if z < qty:
        ending = draw(st.sampled_from([None, S.CANCELED, S.EXPIRED, S.EXPIRED_IN_MATCH]))
        if ending is not None:
            events.append(Observation(ending, z, z * price, 1))
    return events


@given(st.data())
def test_any_permutation_with_duplicates_ends_the_same(data: st.DataObject) -> None:
    ordered = data.draw(lifecycle())
    expected = run(ordered)
    shuffled = data.draw(st.permutations(ordered))
    dupes = data.draw(st.lists(st.sampled_from(ordered), max_size=6))
    mixed = data.draw(st.permutations(shuffled + dupes))
    assert run(mixed) == expected
    assert run(ordered + ordered) == expected


def test_plain_strings_from_a_database_are_coerced() -> None:
    state = OrderState(status="PENDING_SEND")  # type: ignore[arg-type]
    assert apply(state, SendUnknown()).status is S.UNKNOWN
    assert Observation("FILLED").status is S.FILLED  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        OrderState(status="DONE")  # type: ignore[arg-type]
