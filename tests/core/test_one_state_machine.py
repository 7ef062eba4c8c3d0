"""One order state machine: the core's statuses and ranks are the ones the tracker and the
ledger's merge use, and no merge ever lowers an order's rank."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from executor.core.intents import OrderRequest, OrderType, TimeInForce
from executor.core.orders import (
    EXCHANGE_FINAL,
    FINAL,
    STATUS_RANK,
    OrderStatus,
    Side,
    may_move,
    rank,
)
from executor.orders.tracker import OrderTracker
from executor.persistence import models
from executor.persistence.status_merge import _OrderState, merge_status
from executor.persistence.store_records import StatusUpdateIn

D = Decimal
ALL = list(OrderStatus)


def _ledger_state(status: str) -> _OrderState:
    return _OrderState(1, "c", "BTCUSDT", "BUY", None, status, "local", D(0), D(0), None, None, False, None,
                       0)


def _tracker_with(status: OrderStatus) -> OrderTracker:
    t = OrderTracker({"BTCUSDT": "BTC"})
    t.add(OrderRequest("c", "BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.001"), D("50000"), TimeInForce.GTC))
    order = t.get("c")
    assert order is not None
    order.status = status  # the starting point under test, whatever path led there
    return t


def test_the_ledger_uses_the_core_names_and_ranks() -> None:
    assert models.STATUS_RANK is STATUS_RANK and models.FINAL_STATUSES == FINAL
    assert set(STATUS_RANK) == set(OrderStatus)
    # Each stored name is one status: no two names share a meaning through aliases.
    assert len({s.value for s in OrderStatus}) == len(OrderStatus)
    # Local inferences rank below every exchange status (the exchange's word wins).
    assert max(rank(s) for s in (OrderStatus.NOT_FOUND, OrderStatus.NOT_PLACED)) < rank(OrderStatus.NEW)
    # PENDING_CANCEL ranks below PARTIALLY_FILLED: a fill seen after it still shows.
    assert rank(OrderStatus.PENDING_CANCEL) < rank(OrderStatus.PARTIALLY_FILLED)
    assert all(rank(s) == max(STATUS_RANK.values()) for s in EXCHANGE_FINAL)


def test_tracker_ledger_and_core_agree_on_every_transition() -> None:
    for old in ALL:
        for new in ALL:
            want = may_move(old, new)
            cur = _ledger_state(old.value)
            merge_status(cur, StatusUpdateIn("c", new.value, "stream"), 1)
            assert (cur.status == new.value) is (want or old is new), (old, new)
            t = _tracker_with(old)
            t.set_status("c", new)
            got = t.get("c")
            assert got is not None and (got.status is new) is (want or old is new), (old, new)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALL), st.lists(st.tuples(st.sampled_from(ALL), st.integers(0, 4)), max_size=15))
def test_the_ledger_merge_never_lowers_rank(start: OrderStatus, seq: list[tuple[OrderStatus, int]]) -> None:
    cur = _ledger_state(start.value)
    seen_rank, seen_qty = rank(start), D(0)
    was_exchange_final = start in EXCHANGE_FINAL
    for status, qty in seq:
        merge_status(cur, StatusUpdateIn("c", status.value, "stream", executed_qty=D(qty),
                                         cum_quote_qty=D(qty) * 10), 1)
        assert rank(cur.status) >= seen_rank, (status, cur.status)
        assert cur.executed_qty >= seen_qty
        if was_exchange_final:
            assert cur.status == start.value  # nothing leaves an exchange-final status
        seen_rank, seen_qty = rank(cur.status), cur.executed_qty
