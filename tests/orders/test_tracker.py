"""The tracker: statuses only move forward, fills count into inventory once, finals are pruned."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from executor.core.intents import OrderRequest, OrderType, TimeInForce
from executor.core.orders import OrderStatus, Side
from executor.core.reports import Fill, FillSource
from executor.orders.tracker import OrderTracker

BASES = {"BTCUSDT": "BTC", "ETHUSDT": "ETH"}
D = Decimal


def request(cid: str = "bx-r1-o1", symbol: str = "BTCUSDT", side: Side = Side.BUY) -> OrderRequest:
    return OrderRequest(cid, symbol, side, OrderType.LIMIT, Decimal("0.002"), Decimal("60000"),
                        TimeInForce.GTC, reason="why")


def fill(trade_id: int, qty: str, side: Side = Side.BUY, symbol: str = "BTCUSDT") -> Fill:
    q = Decimal(qty)
    return Fill(symbol, trade_id, 1, side, Decimal("60000"), q, q * 60000, Decimal(0), "BNB", False, 1,
                FillSource.STREAM, "bx-r1-o1")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


LEDGER_SEQUENCE = ["PENDING_SEND", "SENT", "UNKNOWN", "NEW", "PARTIALLY_FILLED", "FILLED"]


@given(st.permutations(LEDGER_SEQUENCE))
def test_status_never_moves_backwards_whatever_the_order_of_facts(order: list[str]) -> None:
    t = OrderTracker(BASES)
    t.add(request())
    for status in order:
        t.set_status("bx-r1-o1", status)
    got = t.get("bx-r1-o1")
    assert got is not None and got.status is OrderStatus.FILLED and not got.working


def test_exchange_facts_overrule_never_placed_but_nothing_overrules_a_final_status() -> None:
    t = OrderTracker(BASES)
    t.add(request())
    t.set_status("bx-r1-o1", "NOT_PLACED")
    assert t.get("bx-r1-o1").status is OrderStatus.NOT_PLACED  # type: ignore[union-attr]
    t.set_status("bx-r1-o1", "NEW")  # the exchange had it after all: never lose a live order
    assert t.get("bx-r1-o1").status is OrderStatus.NEW  # type: ignore[union-attr]
    t.set_status("bx-r1-o1", "CANCELED")
    t.set_status("bx-r1-o1", "NEW")
    t.set_status("bx-r1-o1", "NOT_PLACED")
    assert t.get("bx-r1-o1").status is OrderStatus.CANCELED  # type: ignore[union-attr]


def test_fills_count_into_inventory_once() -> None:
    t = OrderTracker(BASES)
    t.add_fills([fill(1, "0.001"), fill(2, "0.002")])
    t.add_fills([fill(2, "0.002"), fill(3, "0.001", Side.SELL)])  # trade 2 again: a duplicate
    assert t.inventory("BTC") == Decimal("0.002")
    assert t.stats.fills == 3
    assert t.inventory("ETH") == 0


def test_views_show_working_orders_and_prune_forgets_old_finals() -> None:
    clock = Clock()
    t = OrderTracker(BASES, clock=clock, keep_final_s=10)
    t.add(request("bx-r1-o1"))
    t.add(request("bx-r1-o2", side=Side.SELL))
    changes: list[str] = []
    t.on_change = lambda o: changes.append(f"{o.client_id}:{o.status.value}")
    t.set_status("bx-r1-o1", "NEW", filled=Decimal("0.001"))
    assert changes == ["bx-r1-o1:PARTIALLY_FILLED"]
    t.set_status("bx-r1-o2", "EXPIRED")
    assert [v.client_id for v in t.views()] == ["bx-r1-o1"]
    clock.t += 11
    assert t.prune() == 1 and t.get("bx-r1-o2") is None and t.get("bx-r1-o1") is not None


STATUSES = [s.value for s in OrderStatus]


@given(st.lists(st.tuples(st.integers(0, 4), st.sampled_from(STATUSES), st.booleans()), max_size=40))
def test_working_index_always_equals_a_full_scan(steps: list[tuple[int, str, bool]]) -> None:
    clock = Clock()
    tracker = OrderTracker(BASES, clock=clock, keep_final_s=5.0)
    symbols = ["BTCUSDT", "ETHUSDT"]
    for i in range(5):
        tracker.add(request(f"bx-r1-o{i}", symbols[i % 2]))
    for n, status, prune in steps:
        tracker.set_status(f"bx-r1-o{n}", status)
        if prune:
            clock.t += 3.0
            tracker.prune()
        scan = [o for o in tracker.all() if o.working]
        assert sorted(o.client_id for o in tracker.working()) == sorted(o.client_id for o in scan)
        for sym in symbols:
            expected = {o.client_id for o in scan if o.symbol == sym}
            assert {o.client_id for o in tracker.working(sym)} == expected
        assert {v.client_id for v in tracker.views()} == {o.client_id for o in scan}


async def test_load_derives_the_position_from_our_fills_then_adds_only_newer_ones(tmp_path: Path) -> None:
    from executor.persistence.store import Store
    from executor.persistence.store_records import ExternalOrderIn, FillIn

    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'l.db'}")
    try:
        await store.start_run("t", "sim", "x")
        await store.record_order_intent("bx-r1-o1", "BTCUSDT", "BUY", "LIMIT", quantity=D("0.01"),
                                        price=D("60000"), time_in_force="GTC")
        await store.update_order_status("bx-r1-o1", "NEW", source="stream", exchange_order_id=11)

        def stored(trade_id: int, qty: str, fee: str, asset: str, order_id: int = 11,
                   cid: str | None = "bx-r1-o1") -> FillIn:
            return FillIn("BTCUSDT", trade_id, D("60000"), D(qty), "stream", quote_qty=D(qty) * 60000,
                          commission=D(fee), commission_asset=asset, is_maker=False, trade_ms=trade_id,
                          side="BUY", client_order_id=cid, exchange_order_id=order_id)

        external = ExternalOrderIn("BTCUSDT", 99, "by-hand-1", "BUY", "LIMIT", "FILLED", "stream",
                                   executed_qty=D("1"), cum_quote_qty=D("60000"))
        await store.apply_batch([stored(1, "0.002", "0.000002", "BTC"), stored(2, "0.001", "0.06", "USDT"),
                                 external, stored(3, "1", "0.001", "BTC", order_id=99, cid=None)])
        t = OrderTracker(BASES)
        await t.load(store)
        assert t.inventory("BTC") == D("0.002998")  # ours only, net of the BTC commission
        # One fill reaches the tracker through an order update, another only the ledger
        # (stored by a gap fill from myTrades): the next load adds the second, once.
        await store.apply_batch([stored(4, "0.001", "0", "BTC"), stored(5, "0.004", "0.000004", "BTC")])
        t.add_fills([Fill("BTCUSDT", 4, 11, Side.BUY, D("60000"), D("0.001"), D("60"), D(0), None, False, 4,
                          FillSource.STREAM, "bx-r1-o1")])
        await t.load(store)
        assert t.inventory("BTC") == D("0.002998") + D("0.001") + D("0.003996")
        await t.load(store)
        assert t.inventory("BTC") == D("0.007994")
        fresh = OrderTracker(BASES)
        await fresh.load(store)
        assert fresh.inventories() == t.inventories()
    finally:
        await store.close()
