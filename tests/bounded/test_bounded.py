"""Bounded caches: each structure that would grow with orders or fills stays within its
cap across 100,000 synthetic orders, driven through the real classes, and what is
forgotten is found again in the ledger."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executor.core.bounded import BoundedDict, BoundedSet
from executor.core.ids import ClientIdFactory
from executor.core.intents import OrderRequest, OrderType, TimeInForce
from executor.core.orders import Side
from executor.core.reports import Fill, FillSource
from executor.exchange.binance_reports import SPOT
from executor.orders import manager as manager_mod
from executor.orders import tracker as tracker_mod
from executor.orders.manager import OrderManager, ResolveTiming
from executor.orders.tracker import OrderTracker
from executor.reconcile import reconciler as reconciler_mod
from executor.reconcile.reconciler import OrderUpdate, Reconciler

N = 100_000
ONE = Decimal(1)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------- the structures


def test_bounded_set_keeps_the_newest_and_counts_what_it_forgot() -> None:
    s: BoundedSet[int] = BoundedSet(3)
    s.update(range(5))
    assert list(s) == [2, 3, 4] and s.evicted == 2
    s.add(2)  # touched: now the newest
    s.add(5)
    assert list(s) == [4, 2, 5] and 3 not in s
    s.discard(4)
    assert len(s) == 2 and (s & {2, 9}) == {2}


def test_bounded_dict_by_size_and_by_age() -> None:
    clock = Clock()
    d: BoundedDict[str, int] = BoundedDict(3, max_age_s=10.0, clock=clock)
    for i in range(5):
        d[f"k{i}"] = i
    assert list(d) == ["k2", "k3", "k4"] and d.evicted == 2
    clock.now = 5.0
    d["k5"] = 5
    clock.now = 12.0
    assert d.prune() == 2 and list(d) == ["k5"]  # k3, k4 aged out (k2 went for size)
    assert d.setdefault("k6", 6) == 6 and d.pop("k6") == 6 and d.pop("nope", -1) == -1
    with pytest.raises(KeyError):
        d.pop("nope")


@given(cap=st.integers(1, 20), ops=st.lists(st.tuples(st.booleans(), st.integers(0, 30)), max_size=200))
def test_bounded_set_never_exceeds_its_cap_and_holds_the_newest(cap: int,
                                                                ops: list[tuple[bool, int]]) -> None:
    s: BoundedSet[int] = BoundedSet(cap)
    model: list[int] = []  # oldest first
    for add, x in ops:
        if x in model:
            model.remove(x)
        if add:
            model.append(x)
            s.add(x)
            del model[:-cap]
        else:
            s.discard(x)
        assert list(s) == model and len(s) <= cap


# ---------------------------------------------------------------------- 100,000 orders


def test_order_manager_send_times_stay_bounded() -> None:
    clock = Clock()
    tracker = OrderTracker({"BTCUSDT": "BTC"}, clock=clock)
    manager = OrderManager(gateway=None, store=None, reconciler=None, tracker=tracker,  # type: ignore[arg-type]
                           risk=None, view=None, rules={}, ids=ClientIdFactory("bx", "t1"),  # type: ignore[arg-type]
                           market=None, timing=ResolveTiming(not_found_grace_s=3.0), clock=clock)  # type: ignore[arg-type]
    sent_at = manager._unknown_at  # the manager's own structure (when each outcome became unknown)
    peak = 0
    for i in range(N):
        clock.now = i * 0.5  # 120 orders a minute
        sent_at[f"bx-t1-o{i}"] = clock()
        peak = max(peak, len(sent_at))
    assert peak <= manager_mod.SENT_AT_MEMORY
    # Bounded by age: what is kept is within the -2013 grace window's horizon.
    assert sent_at.max_age_s is not None and sent_at.max_age_s >= 3.0  # never shorter than the grace
    assert peak <= sent_at.max_age_s / 0.5 + 1
    assert sent_at.get(f"bx-t1-o{N - 1}") == clock()  # the newest is always there


def _request(i: int) -> OrderRequest:
    return OrderRequest(f"bx-t1-o{i}", "BTCUSDT", Side.BUY if i % 2 else Side.SELL, OrderType.LIMIT,
                        ONE, Decimal(100), TimeInForce.GTC, reason="soak")


def _fill(i: int, side: Side) -> Fill:
    return Fill("BTCUSDT", i, i, side, Decimal(100), ONE, Decimal(100), Decimal(0), None, True, i,
                FillSource.STREAM, f"bx-t1-o{i}")


def test_tracker_orders_and_counted_fills_stay_bounded() -> None:
    clock = Clock()
    tracker = OrderTracker({"BTCUSDT": "BTC"}, clock=clock)
    peak_orders = peak_counted = 0
    for i in range(N):
        clock.now = i * 0.5
        req = _request(i)
        tracker.add(req)
        tracker.apply_update(OrderUpdate(req.client_order_id, "BTCUSDT", i, "FILLED", ONE, Decimal(100),
                                         (_fill(i, req.side),), "stream"))
        if i % 2 == 0:  # the app's timer prunes about once a second
            tracker.prune()
        peak_orders = max(peak_orders, len(tracker))
        peak_counted = max(peak_counted, len(tracker._counted))
    assert peak_orders <= tracker.max_final + 1
    assert peak_counted <= tracker_mod.COUNTED_MEMORY
    assert tracker.stats.fills == N and tracker.inventory("BTC") == 0  # every fill counted once
    # A replay of a recent fill is still recognised.
    assert tracker.add_fills([_fill(N - 1, Side.SELL)]) == 0


class Ledger:
    """What the reconciler asks when its caches do not know an id: the orders we recorded."""

    def __init__(self) -> None:
        self.ours: set[str] = set()
        self.asked = 0

    async def get_order_by_client_id(self, cid: str) -> Any:
        self.asked += 1
        if cid in self.ours:
            return type("Rec", (), {"external": False})()
        return None


async def test_reconciler_owner_and_fill_caches_stay_bounded_and_fall_back_to_the_ledger() -> None:
    ledger = Ledger()
    rec = Reconciler(ledger, prefix="bx", translate=SPOT)  # type: ignore[arg-type]
    for i in range(N):
        cid = f"bx-t1-o{i}"
        rec.remember_ours(cid)  # the manager does this for every order it records
        rec.note_fills_known(("BTCUSDT", i), {i: ONE})
        rec.known_orders.add(("BTCUSDT", i))
    assert len(rec._ours) <= reconciler_mod.OWNERS_MEMORY
    assert len(rec._known_fills) <= reconciler_mod.KNOWN_FILLS_MEMORY
    assert len(rec.known_orders) <= reconciler_mod.KNOWN_ORDERS_MEMORY

    # Ids without our prefix (hand-named, or someone else's): decided once, cached, bounded.
    hand = [f"manual-{i}" for i in range(reconciler_mod.OWNERS_MEMORY * 3)]
    ledger.ours.update(hand[: len(hand) // 2])
    await rec.resolve_owners(hand)
    assert len(rec._external) <= reconciler_mod.OWNERS_MEMORY
    assert len(rec._ours) <= reconciler_mod.OWNERS_MEMORY
    # The first hand-named ids were forgotten; asking again goes to the ledger and agrees.
    assert rec.is_ours_by_id(hand[0]) is None
    before = ledger.asked
    await rec.resolve_owners([hand[0], hand[-1]])
    assert ledger.asked == before + 1  # the recent one is still cached
    assert rec.is_ours(hand[0]) is True and rec.is_ours(hand[-1]) is False
    assert rec.is_ours("bx-t1-o0") is True  # our prefix needs no cache at all
