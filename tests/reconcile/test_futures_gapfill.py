"""Futures REST gap fill against the embedded exchange: fills the stream never delivered,
orders resolved by client id (or NOT_PLACED), income stored once; a second run adds nothing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from executor.exchange.binance_reports import SPOT, USDM
from executor.exchange.futures_rest import FuturesGateway
from executor.exchange.rest import RestGateway
from executor.reconcile import Reconciler
from executor.reconcile.futures_gapfill import FuturesGapFill
from executor.sim.futures_orders import FuturesOrderRequest

PREFIX = "bx"


async def test_gap_fill_recovers_fills_orders_and_income(sim: Any, client: Any, make_store: Any) -> None:
    store = await make_store()
    spot = RestGateway(client)
    await spot.start()
    gateway = FuturesGateway(client, spot=spot)
    reconciler = Reconciler(store, prefix=PREFIX, translate=SPOT, symbols=["BTCUSDT"])
    for cid in ("bx-t-o1", "bx-t-o2"):
        await store.record_order_intent(cid, "UM:BTCUSDT", "SELL", "MARKET", quantity=Decimal("0.004"))
    side = sim.exchange.futures
    # o1 reached the exchange (its answer and events were lost); o2 never did.
    side.orders.place("default", FuturesOrderRequest("BTCUSDT", "SELL", "MARKET", "GTC", Decimal("0.004"),
                                                     None, False, "bx-t-o1"), Decimal("0.01"))
    side.settle_funding()
    gap = FuturesGapFill(store, gateway, reconciler, ["BTCUSDT"], prefix=PREFIX, not_found_grace_s=0,
                         translate=USDM)
    first = await gap.run("test")
    assert (first.fills_added, first.orders_queried, first.orders_not_placed) == (1, 2, 1)
    assert first.income_added == 2                                   # commission + funding fee
    o1 = await store.get_order_by_client_id("bx-t-o1")
    o2 = await store.get_order_by_client_id("bx-t-o2")
    assert o1 is not None and o1.status == "FILLED" and o1.executed_qty == Decimal("0.004")
    assert o2 is not None and o2.status == "NOT_PLACED"
    fills = await store.fills(symbol="UM:BTCUSDT")
    trade = side.orders.trades[0]
    assert [(f.trade_id, f.qty, f.price, f.commission) for f in fills] == \
        [(trade.trade_id, trade.qty, trade.price, trade.commission)]
    income = await store.futures_income()
    assert {(r["income_type"], r["amount"]) for r in income} == {
        ("COMMISSION", -trade.commission), ("FUNDING_FEE", side.funding_history[0]["amount"])}
    again = await gap.run("again")
    assert (again.fills_added, again.income_added, again.orders_queried) == (0, 0, 0)
    assert len(await store.fills(symbol="UM:BTCUSDT")) == 1
    runs = await store.reconciliation_runs()
    assert [r["reason"] for r in runs][-2:] == ["futures:test", "futures:again"]


async def test_income_is_read_page_by_page(sim: Any, client: Any, make_store: Any, monkeypatch: Any) -> None:
    import executor.reconcile.futures_gapfill as gapfill

    monkeypatch.setattr(gapfill, "INCOME_PAGE", 2)
    store = await make_store()
    spot = RestGateway(client)
    await spot.start()
    side = sim.exchange.futures
    for i in range(5):
        side.transfer("default", "USDT", Decimal(i + 1))
        sim.exchange.clock.advance(1000)
    rec = Reconciler(store, prefix=PREFIX, translate=SPOT)
    gap = FuturesGapFill(store, FuturesGateway(client, spot=spot), rec, ["BTCUSDT"], prefix=PREFIX,
                         translate=USDM)
    assert (await gap.run("pages")).income_added == 5
    assert [r["amount"] for r in await store.futures_income()] == [Decimal(i + 1) for i in range(5)]


async def test_a_not_found_order_is_confirmed_not_placed(sim: Any, client: Any, make_store: Any) -> None:
    """The order manager's first -2013 (NOT_FOUND) is confirmed NOT_PLACED by the next futures
    gap fill, as spot's gap fill does (found by the chaos run: it stayed NOT_FOUND)."""
    store = await make_store()
    spot = RestGateway(client)
    await spot.start()
    gateway = FuturesGateway(client, spot=spot)
    reconciler = Reconciler(store, prefix=PREFIX, symbols=["BTCUSDT"])
    await store.record_order_intent("bx-t-o3", "UM:BTCUSDT", "SELL", "MARKET", quantity=Decimal("0.004"))
    await store.update_order_status("bx-t-o3", "UNKNOWN", source="send")
    await store.update_order_status("bx-t-o3", "NOT_FOUND", source="rest_query", reject_reason="-2013")
    gap = FuturesGapFill(store, gateway, reconciler, ["BTCUSDT"], prefix=PREFIX, not_found_grace_s=0,
                         translate=USDM)
    report = await gap.run("test")
    assert (report.orders_queried, report.orders_not_placed) == (1, 1)
    rec = await store.get_order_by_client_id("bx-t-o3")
    assert rec is not None and rec.status == "NOT_PLACED"


async def test_a_trade_stored_out_of_order_does_not_hide_an_older_one(sim: Any, client: Any,
                                                                       make_store: Any) -> None:
    """The exchange's ADL order closes the position (the stream never delivered it), then one
    of ours fills and reaches the ledger first (the stream, an adoption): the next gap fill
    still stores the older trade. Reading from the newest stored trade skipped it (chaos)."""
    store = await make_store()
    spot = RestGateway(client)
    await spot.start()
    gateway = FuturesGateway(client, spot=spot)
    reconciler = Reconciler(store, prefix=PREFIX, translate=SPOT, symbols=["BTCUSDT"])
    gap = FuturesGapFill(store, gateway, reconciler, ["BTCUSDT"], prefix=PREFIX, translate=USDM)
    side = sim.exchange.futures
    await store.record_order_intent("bx-t-o1", "UM:BTCUSDT", "SELL", "MARKET", quantity=Decimal("0.004"))
    side.orders.place("default", FuturesOrderRequest("BTCUSDT", "SELL", "MARKET", "GTC", Decimal("0.004"),
                                                     None, False, "bx-t-o1"), Decimal("0.01"))
    assert (await gap.run("first")).fills_added == 1                 # a complete scan
    sim.exchange.clock.advance(1000)
    adl = side.orders.auto_deleverage("default", "BTCUSDT")           # never delivered
    await store.record_order_intent("bx-t-o2", "UM:BTCUSDT", "SELL", "MARKET", quantity=Decimal("0.004"))
    side.orders.place("default", FuturesOrderRequest("BTCUSDT", "SELL", "MARKET", "GTC", Decimal("0.004"),
                                                     None, False, "bx-t-o2"), Decimal("0.01"))
    ours = side.orders.trades[-1]
    assert ours.trade_id > side.orders.trades[-2].trade_id and side.orders.trades[-2].order_id == adl.order_id
    await reconciler.apply_fills([USDM.trade(ours.row())], source="stream")  # the newer one first
    report = await gap.run("after")
    assert report.fills_added == 1
    fills = await store.fills(symbol="UM:BTCUSDT")
    assert sorted(f.trade_id for f in fills) == sorted(t.trade_id for t in side.orders.trades)
    rec = await store.get_order_by_exchange_id("UM:BTCUSDT", adl.order_id)
    assert rec is not None and rec.client_order_id.startswith("adl_autoclose") and rec.external
    # A second ADL: Binance names it adl_autoclose too; the ledger keeps both orders.
    side.orders.auto_deleverage("default", "BTCUSDT")
    assert (await gap.run("second adl")).fills_added == 1
    adls = [r for r in await store.list_orders() if r.client_order_id.startswith("adl_autoclose")]
    assert len(adls) == 2 and len({r.client_order_id for r in adls}) == 2 and all(r.external for r in adls)
