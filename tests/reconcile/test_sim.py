"""The reconciler against the embedded exchange, over real HTTP with the real python-binance
client: whatever the stream did (lost, duplicated, reordered events; an order whose send
failed; the bot down for a while), once reconciled the ledger equals the exchange's ground
truth exactly: every order with its status and quantities, every fill once, every balance.

User events come from an in-process subscription to the sim's event bus (the WebSocket
transport is the user-stream supervisor's); lost events are dropped with ``bus.filter``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from executor.exchange.binance_reports import SPOT
from executor.exchange.client import make_client
from executor.exchange.rest import Accepted, RestGateway, Unknown
from executor.persistence.store import Store
from executor.reconcile import Reconciler
from executor.sim.accounts import DEFAULT_ID
from tests.conftest import SimHandle
from tests.reconcile.conftest import PREFIX, Updates

SYMBOLS = ("BTCUSDT", "ETHUSDT")
Drop = Callable[[dict[str, Any]], bool]


@dataclass
class Rig:
    sim: SimHandle
    gateway: RestGateway
    store: Store
    rec: Reconciler
    updates: Updates
    drop: Drop | None = None
    seq: int = 0
    unsubscribe: Callable[[], None] | None = None
    dropped: list[dict[str, Any]] = field(default_factory=list)

    def next_id(self) -> str:
        self.seq += 1
        return f"{PREFIX}-t{id(self) % 10_000}-o{self.seq}"

    def connect(self, rec: Reconciler) -> None:
        """Subscribe ``rec`` to the account's spot events (what the user stream would deliver)."""
        if self.unsubscribe is not None:
            self.unsubscribe()
        self.rec = rec
        self.unsubscribe = self.sim.exchange.bus.subscribe(DEFAULT_ID, "spot", rec.submit)

    def disconnect(self) -> None:
        if self.unsubscribe is not None:
            self.unsubscribe()
            self.unsubscribe = None

    async def place(self, *, symbol: str = "BTCUSDT", side: str = "BUY", qty: str, price: str | None,
                    tif: str | None = "GTC", cid: str | None = None) -> Any:
        """What the order manager does: record, mark sent, send, hand the answer over."""
        cid = cid or self.next_id()
        otype = "LIMIT" if price is not None else "MARKET"
        await self.store.record_order_intent(cid, symbol, side, otype, quantity=Decimal(qty),
                                             price=Decimal(price) if price else None,
                                             time_in_force=tif if price else None, reason="test")
        await self.store.mark_order_sent(cid)
        params: dict[str, Any] = {"symbol": symbol, "side": side, "type": otype, "quantity": qty,
                                  "newClientOrderId": cid, "newOrderRespType": "FULL"}
        if price is not None:
            params.update(price=price, timeInForce=tif)
        out = await self.gateway.place_order(params)
        if isinstance(out, Accepted):
            await self.rec.apply_order_response(out.response)
        elif isinstance(out, Unknown):
            await self.store.update_order_status(cid, "UNKNOWN", source="local")
        return cid, out

    async def cancel(self, symbol: str, cid: str) -> None:
        cancel_id = cid.replace("-o", "-c")
        await self.store.record_cancel(cancel_id, cid, symbol)
        out = await self.gateway.cancel_order(symbol, cid, cancel_id)
        assert isinstance(out, Accepted)
        await self.rec.apply_order_response(out.response)


@pytest.fixture
async def rig(sim: SimHandle, store: Store) -> AsyncIterator[Rig]:
    client = make_client(sim.endpoints, sim.creds, timeout_s=2.0)
    gateway = RestGateway(client)
    await gateway.start()
    updates = Updates()
    rec = Reconciler(store, gateway, prefix=PREFIX, translate=SPOT, symbols=SYMBOLS, on_order_update=updates,
                     not_found_grace_ms=0, suspect_delay_s=0.05)
    r = Rig(sim, gateway, store, rec, updates)
    bus = sim.exchange.bus
    inner = bus.filter

    def lossy(account: str, channel: str, event: dict[str, Any]) -> list[dict[str, Any]]:
        if r.drop is not None and r.drop(event):
            r.dropped.append(event)
            return []
        return inner(account, channel, event) if inner is not None else [event]

    bus.filter = lossy
    r.connect(rec)
    await rec.start()
    await rec.gap_fill("start")  # as the bot does: opening balances and open orders
    yield r
    r.disconnect()
    await r.rec.stop()
    await gateway.close()


def drop_all(_: dict[str, Any]) -> bool:
    return True


async def assert_ledger_equals_exchange(r: Rig) -> None:
    ex = r.sim.exchange
    acct = ex.default_account
    for sym in SYMBOLS:
        truth = [o for o in ex.engine.orders[sym] if o.account_id == acct.id]
        assert max(Counter(o.client_order_id for o in truth).values(), default=1) == 1  # nothing sent twice
        for o in truth:
            rec = await r.store.get_order_by_exchange_id(sym, o.order_id)
            assert rec is not None, f"{o.client_order_id} missing from the ledger"
            want = (o.status, o.executed_qty, o.cum_quote)
            assert (rec.status, rec.executed_qty, rec.cum_quote_qty) == want, rec.client_order_id
            assert rec.external == (not o.client_order_id.startswith(PREFIX + "-"))
        stored = [o for o in await r.store.list_orders(symbol=sym) if o.exchange_order_id is not None]
        assert len(stored) == len(truth)
        trades = {t.id: (t.order_id, t.price, t.qty, t.commission, t.commission_asset)
                  for t in ex.engine.trades[sym] if t.account_id == acct.id}
        fills = await r.store.fills(symbol=sym)
        assert len(fills) == len({f.trade_id for f in fills})  # each fill once
        assert {f.trade_id: (f.exchange_order_id, f.price, f.qty, f.commission, f.commission_asset)
                for f in fills} == trades
    balances = await r.store.get_balances()
    for asset in set(balances) | set(acct.balances):
        have = balances.get(asset)
        want = (acct.free(asset), acct.locked(asset))
        assert (have.free if have else 0, have.locked if have else 0) == want, asset


async def trade_some(r: Rig) -> list[str]:
    """Fills, a resting order, a maker fill, a cancel, a deposit and someone else's order."""
    book = r.sim.exchange.market.book("BTCUSDT")
    taker, _ = await r.place(qty="0.0010", price=str(book.ask + 100), tif="IOC")
    resting, _ = await r.place(qty="0.0010", price="59000.00")
    maker, _ = await r.place(qty="0.0020", price="58000.00")
    seller, _ = await r.place(symbol="ETHUSDT", side="SELL", qty="0.5000", price=None)
    r.sim.exchange.market.set_price("BTCUSDT", "57000")  # the 58000 and 59000 bids fill as makers
    await r.cancel("BTCUSDT", (await r.place(qty="0.0010", price="50000.00"))[0])
    r.sim.exchange.engine.adjust_balance(r.sim.exchange.default_account, "USDT", Decimal("25"))
    # Someone placing an order by hand on the same account.
    other = await r.gateway.place_order({"symbol": "ETHUSDT", "side": "BUY", "type": "LIMIT",
                                         "timeInForce": "GTC", "quantity": "0.1000", "price": "2000.00",
                                         "newClientOrderId": f"manual-web-{r.seq}"})
    assert isinstance(other, Accepted)
    return [taker, resting, maker, seller]


async def test_live_stream_keeps_the_ledger_equal_to_the_exchange(rig: Rig) -> None:
    ids = await trade_some(rig)
    await rig.rec.drain()
    await assert_ledger_equals_exchange(rig)
    assert {u.client_order_id for u in rig.updates} >= set(ids)
    assert all(not u.client_order_id.startswith("manual") for u in rig.updates)
    report = await rig.rec.gap_fill("periodic")  # nothing to find
    assert report.discrepancies == [] and report.counts["fills_added"] == 0
    await assert_ledger_equals_exchange(rig)


async def test_gap_fill_after_lost_events_restores_the_truth(rig: Rig) -> None:
    await rig.place(qty="0.0010", price=str(rig.sim.exchange.market.book("BTCUSDT").ask + 100), tif="IOC")
    await rig.rec.drain()
    rig.drop = drop_all  # the stream goes dark; the answers of our own requests still arrive
    await trade_some(rig)
    rig.drop = None
    assert rig.dropped
    report = await rig.rec.gap_fill("stream_gap")
    await assert_ledger_equals_exchange(rig)
    assert report.counts["external_orders_added"] == 1
    assert any(d["kind"] == "balance" for d in report.discrepancies)  # lost balance events, corrected
    run = (await rig.store.reconciliation_runs())[-1]
    assert run["reason"] == "stream_gap" and run["outcome"] == "ok" and run["fixed"] > 0


async def test_lost_order_responses_and_events_are_found_per_order(rig: Rig) -> None:
    # Nothing of ours is stored yet, so no "last trade id": the fills come from per-order queries.
    rig.drop = drop_all
    book = rig.sim.exchange.market.book("BTCUSDT")
    cid = rig.next_id()
    await rig.store.record_order_intent(cid, "BTCUSDT", "BUY", "LIMIT", quantity=Decimal("0.0010"),
                                        price=book.ask + 100, time_in_force="IOC")
    out = await rig.gateway.place_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                         "timeInForce": "IOC", "quantity": "0.0010",
                                         "price": str(book.ask + 100), "newClientOrderId": cid})
    assert isinstance(out, Accepted)  # the bot "crashed" before handing the answer over
    rig.drop = None
    report = await rig.rec.gap_fill("start")
    await assert_ledger_equals_exchange(rig)
    assert report.counts["order_trade_queries"] == 1


async def test_a_lost_stream_fill_is_covered_by_the_order_response(rig: Rig) -> None:
    rig.sim.exchange.market.set_book("BTCUSDT", bid="59999.85", ask="60000.15", ask_qty="0.0002")
    first_trade = True

    def lose_first_trade(event: dict[str, Any]) -> bool:
        nonlocal first_trade
        if event.get("x") == "TRADE" and first_trade:
            first_trade = False
            return True
        return False

    rig.drop = lose_first_trade
    cid, out = await rig.place(qty="0.0010", price="60010.00", tif="IOC")
    rig.drop = None
    assert isinstance(out, Accepted) and len(out.response["fills"]) == 2
    await rig.rec.drain()
    fills = await rig.store.fills_for_order(cid)
    # The lost one came from the response; the other from whichever path was first.
    assert fills[0].source == "order_response" and len(fills) == 2
    assert rig.rec.suspects == {}
    await assert_ledger_equals_exchange(rig)


async def test_targeted_gap_fill_when_response_and_event_are_both_lost(rig: Rig) -> None:
    rig.sim.exchange.market.set_book("BTCUSDT", bid="59999.85", ask="60000.15", ask_qty="0.0002")
    cid = rig.next_id()
    await rig.store.record_order_intent(cid, "BTCUSDT", "BUY", "LIMIT", quantity=Decimal("0.0010"),
                                        price=Decimal("60010.00"), time_in_force="IOC")
    seen_trade = False

    def lose_first_trade(event: dict[str, Any]) -> bool:
        nonlocal seen_trade
        if event.get("x") == "TRADE" and not seen_trade:
            seen_trade = True
            return True
        return False

    rig.drop = lose_first_trade
    out = await rig.gateway.place_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                         "timeInForce": "IOC", "quantity": "0.0010", "price": "60010.00",
                                         "newClientOrderId": cid})
    assert isinstance(out, Accepted)  # its answer is not applied: only the stream is
    await rig.rec.drain()
    assert len(await rig.store.fills_for_order(cid)) == 1
    await asyncio.wait_for(_until(lambda: not rig.rec.suspects and rig.rec._suspect_task is not None
                                  and rig.rec._suspect_task.done()), 5)
    assert len(await rig.store.fills_for_order(cid)) == 2
    await assert_ledger_equals_exchange(rig)
    run = (await rig.store.reconciliation_runs())[-1]
    assert run["reason"] == "missing_fill" and run["counts"]["fills_added"] == 1


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(("http_status", "code", "placed"),
                         [(503, None, True), (503, None, False), (400, -1007, True), (400, -1007, False)])
async def test_unknown_send_outcome_ends_with_exactly_one_order(rig: Rig, http_status: int, code: int | None,
                                                                placed: bool) -> None:
    rig.drop = drop_all  # the stream cannot tell us either
    rig.sim.exchange.faults.fail_orders(1, http_status=http_status, code=code, placed=placed)
    cid, out = await rig.place(qty="0.0010", price="59000.00")
    assert isinstance(out, Unknown)
    rig.drop = None
    await rig.rec.gap_fill("stream_gap")
    order = await rig.store.get_order_by_client_id(cid)
    on_exchange = [o for o in rig.sim.exchange.engine.orders["BTCUSDT"] if o.client_order_id == cid]
    assert len(on_exchange) == (1 if placed else 0)
    assert order is not None and order.resolved_from_unknown
    # Not placed: NOT_FOUND first (still counted against the limits), then a later
    # reconciliation confirms it never existed.
    assert order.status == ("NEW" if placed else "NOT_FOUND")
    if not placed:
        await rig.rec.gap_fill("periodic")
        order = await rig.store.get_order_by_client_id(cid)
        assert order is not None and order.status == "NOT_PLACED"
    await assert_ledger_equals_exchange(rig)


async def test_duplicated_and_reordered_events(rig: Rig) -> None:
    faults = rig.sim.exchange.faults
    faults.duplicate_events(6, channel="spot")
    await trade_some(rig)
    faults.reorder_events(6, channel="spot")
    await trade_some(rig)
    faults.flush_events()
    await rig.rec.drain()
    await asyncio.wait_for(_until(lambda: not rig.rec.suspects), 5)
    await assert_ledger_equals_exchange(rig)


async def test_restart_catches_up_trades_made_while_down(rig: Rig, make_store: Callable[..., Any]) -> None:
    book = rig.sim.exchange.market.book("BTCUSDT")
    await rig.place(qty="0.0010", price=str(book.ask + 100), tif="IOC")
    resting, _ = await rig.place(qty="0.0020", price="59000.00")
    await rig.rec.drain()
    await assert_ledger_equals_exchange(rig)
    # The bot stops: nobody listens while the exchange keeps trading.
    rig.disconnect()
    await rig.rec.stop()
    rig.sim.exchange.market.set_price("BTCUSDT", "58000")  # the resting bid fills
    out = await rig.gateway.place_order({"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET",
                                         "quantity": "0.0005", "newClientOrderId": "manual-2"})
    assert isinstance(out, Accepted)
    # Start again: a new reconciler on the same database file, gap fill at start.
    store2 = await make_store("ledger")
    rec2 = Reconciler(store2, rig.gateway, prefix=PREFIX, translate=SPOT, symbols=SYMBOLS)
    rig.store = store2
    rig.connect(rec2)
    await rec2.start()
    report = await rec2.gap_fill("start")
    await assert_ledger_equals_exchange(rig)
    assert report.counts["trades_fetched"] >= 2
    order = await store2.get_order_by_client_id(resting)
    assert order is not None and order.status == "FILLED"


async def test_balance_snapshot_finds_and_fixes_a_discrepancy(rig: Rig) -> None:
    await trade_some(rig)
    await rig.rec.drain()
    rig.drop = drop_all
    rig.sim.exchange.engine.adjust_balance(rig.sim.exchange.default_account, "ETH", Decimal("-0.25"))
    rig.drop = None
    snap = await rig.rec.snapshot_balances()
    assert [d.asset for d in snap.discrepancies] == ["ETH"]
    await assert_ledger_equals_exchange(rig)
    again = await rig.rec.snapshot_balances()
    assert again.discrepancies == []
    runs = await rig.store.reconciliation_runs()
    assert [r["reason"] for r in runs] == ["start", "balance_snapshot", "balance_snapshot"]
    assert runs[1]["discrepancies"][0]["asset"] == "ETH"


async def test_held_order_response_resolved_by_gap_fill(rig: Rig) -> None:
    # The exchange places the order but holds the answer past the client's timeout.
    rig.drop = drop_all
    rig.sim.exchange.faults.hold(1, 2.3)
    book = rig.sim.exchange.market.book("BTCUSDT")
    cid, out = await rig.place(qty="0.0010", price=str(book.ask + 100), tif="IOC")
    assert isinstance(out, Unknown)
    rig.drop = None
    await rig.rec.gap_fill("stream_gap")
    order = await rig.store.get_order_by_client_id(cid)
    assert order is not None and order.status in ("FILLED", "EXPIRED") and order.resolved_from_unknown
    await assert_ledger_equals_exchange(rig)


async def test_a_trade_stored_first_does_not_hide_an_older_one_the_stream_lost(rig: Rig) -> None:
    """During a stream gap someone trades by hand on the account (trade X, its events lost),
    then one of our orders fills and its FULL answer stores trade Y > X at once: the gap fill
    still finds X. Reading myTrades from the newest stored trade skipped it."""
    ask = rig.sim.exchange.market.book("BTCUSDT").ask
    await rig.place(qty="0.0010", price=str(ask + 100), tif="IOC")
    await rig.rec.drain()
    await rig.rec.gap_fill("periodic")                       # a complete scan
    rig.drop = drop_all
    manual = await rig.gateway.place_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                            "timeInForce": "IOC", "quantity": "0.0010",
                                            "price": str(ask + 100), "newClientOrderId": "manual-web-x"})
    assert isinstance(manual, Accepted) and manual.response["status"] == "FILLED"
    await rig.place(qty="0.0010", price=str(ask + 100), tif="IOC")   # its fills stored from the answer
    rig.drop = None
    await rig.rec.gap_fill("stream_gap")
    await assert_ledger_equals_exchange(rig)
