"""The order manager against the embedded exchange over real HTTP (unmodified python-binance)."""

from __future__ import annotations

import asyncio
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.core.intents import Cancel, OrderType, Place, TimeInForce
from executor.core.orders import OrderStatus, Side
from executor.risk.checks import Refused
from executor.sim.faults import OrderFailure
from tests.conftest import SimHandle, build_client
from tests.orders.harness import Harness, build


@pytest.fixture
async def h(sim: SimHandle, tmp_path: Path) -> Any:
    harness = await build(sim, tmp_path)
    try:
        yield harness
    finally:
        await harness.close()


def resting_buy(h: Harness, symbol: str = "BTCUSDT", qty: str = "0.0012345", below_bps: int = 50,
                extra: str = "0.0037") -> Place:
    """A GTC buy far enough below the bid to rest, with a price off the tick grid."""
    bid, _ = h.refresh_market(symbol)
    price = bid * (1 - Decimal(below_bps) / 10000) + Decimal(extra)
    return Place(symbol, Side.BUY, OrderType.LIMIT, Decimal(qty), price, TimeInForce.GTC, reason="test buy")


async def row(h: Harness, cid: str) -> Any:
    rec = await h.store.get_order_by_client_id(cid)
    assert rec is not None, f"no ledger row for {cid}"
    return rec


async def refusals(h: Harness) -> list[dict[str, Any]]:
    async with h.store.engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT symbol, rule, reason, side, price, quantity FROM risk_refusals"))
        return [dict(r._mapping) for r in rows]


async def test_order_is_rounded_to_the_symbols_filters(h: Harness) -> None:
    place = resting_buy(h)
    order = await h.manager.place(place)
    assert not isinstance(order, Refused)
    rules = h.rules["BTCUSDT"]
    tick, step = rules.price_filter.tick_size, rules.lot_size.step_size  # type: ignore[union-attr]
    want_price = (place.price / tick).to_integral_value(ROUND_FLOOR) * tick  # type: ignore[operator]
    want_qty = (place.qty / step).to_integral_value(ROUND_FLOOR) * step
    (on_exchange,) = h.exchange_orders(order.client_id)
    assert on_exchange.price == want_price and on_exchange.orig_qty == want_qty
    rec = await row(h, order.client_id)
    assert (rec.price, rec.quantity, rec.status) == (want_price, want_qty, "NEW")
    assert rec.reason == "test buy" and rec.decision_bid is not None and rec.decision_mark is not None
    assert order.status is OrderStatus.NEW


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(qty=st.decimals("0.00011", "0.004", places=9), off=st.decimals("0.00001", "0.0099", places=5))
def test_rounding_never_makes_an_order_more_aggressive(h: Harness, qty: Decimal, off: Decimal) -> None:
    # Pure part of the same path (no network): the request the manager would send.
    from executor.core.intents import build_order_request

    rules = h.rules["BTCUSDT"]
    for side in (Side.BUY, Side.SELL):
        price = Decimal("60000") + off
        req = build_order_request(Place("BTCUSDT", side, OrderType.LIMIT, qty, price), rules, "bx-t-o1")
        assert req.quantity <= qty and (qty - req.quantity) < rules.lot_size.step_size  # type: ignore[union-attr]
        tick = rules.price_filter.tick_size  # type: ignore[union-attr]
        rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
        assert req.price == (price / tick).to_integral_value(rounding) * tick


async def test_every_risk_refusal_is_recorded_and_nothing_is_sent(h: Harness, tmp_path: Path) -> None:
    sent_before = h.gateway.sent
    bid, _ = h.refresh_market("BTCUSDT")
    far = bid * Decimal("0.9")  # 1000 bps from the mark: fat finger
    cases = [
        (Place("BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.001"), far, TimeInForce.GTC), "price_band"),
        (Place("BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.04"), bid, TimeInForce.GTC),
         "max_order_notional"),
        (Place("BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.00001"), bid, TimeInForce.GTC),
         "filters:NOTIONAL"),
        (Place("DOGEUSDT", Side.BUY, OrderType.LIMIT, Decimal("1"), Decimal("1"), TimeInForce.GTC),
         "order_sanity"),
    ]
    for place, _ in cases:
        assert isinstance(h.manager.submit(place), Refused)
    # Stale market data: the ETH book is pushed 10 s into the past.
    st_eth = h.market["ETHUSDT"]
    st_eth.book_recv_mono -= 10  # type: ignore[operator]
    eth = Place("ETHUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.01"), st_eth.bid, TimeInForce.GTC)
    assert isinstance(h.manager.submit(eth), Refused)
    # Kill switch engaged: every new order refused.
    h.risk.kill_switch.engage("test")
    kill = h.manager.submit(resting_buy(h))
    assert isinstance(kill, Refused) and kill.check == "kill_switch"
    await h.manager.drain(5)
    rows = await refusals(h)
    rules = [r["rule"] for r in rows]
    for _, rule in cases:
        assert any(r.startswith(rule) for r in rules), (rule, rules)
    assert "stale_data" in rules and "kill_switch" in rules
    assert len(rows) == len(cases) + 2 and all(r["reason"] for r in rows)
    assert h.exchange_orders() == []
    assert h.gateway.sent == sent_before  # no request at all was made
    assert await h.store.list_orders() == []
    assert h.tracker.all() == []


async def test_503_on_an_order_that_was_placed_ends_with_one_order_known_to_the_bot(h: Harness) -> None:
    h.sim.exchange.faults.order_failures.append(OrderFailure(http_status=503, placed=True))
    order = await h.manager.place(resting_buy(h))
    assert not isinstance(order, Refused)
    assert order.status is OrderStatus.NEW  # resolved by querying its client id
    matches = h.exchange_orders(order.client_id)
    assert len(matches) == 1 and len(h.exchange_orders()) == 1
    rec = await row(h, order.client_id)
    assert rec.status == "NEW" and rec.resolved_from_unknown and rec.exchange_order_id == matches[0].order_id
    assert h.manager.counts["unknown"] == 1 and h.manager.counts["resolved_found"] == 1
    assert h.manager.counts["sent"] == 1  # never re-sent


async def test_503_on_a_filled_ioc_order_stores_its_fill_once(h: Harness) -> None:
    _, ask = h.refresh_market("BTCUSDT")
    h.sim.exchange.faults.order_failures.append(OrderFailure(http_status=503, placed=True))
    place = Place("BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.001"), ask, TimeInForce.IOC, reason="take")
    order = await h.manager.place(place)
    assert not isinstance(order, Refused)
    (ex,) = h.exchange_orders(order.client_id)
    trades = [t for t in h.sim.exchange.engine.trades["BTCUSDT"] if t.order_id == ex.order_id]
    # The query says FILLED; the reconciler fetches the trades the query did not carry. The
    # position is net of the commission the exchange charged in BTC.
    net = ex.executed_qty - sum((t.commission for t in trades if t.commission_asset == "BTC"), Decimal(0))
    await asyncio.wait_for(_until(lambda: h.tracker.inventory("BTC") == net), 5)
    fills = await h.store.fills_for_order(order.client_id)
    assert sorted(f.trade_id for f in fills) == sorted(t.id for t in trades)
    assert (await row(h, order.client_id)).status == ex.status


async def test_minus_1007_not_placed_becomes_never_placed_and_is_not_resent(h: Harness) -> None:
    h.sim.exchange.faults.order_failures.append(OrderFailure(http_status=408, code=-1007, placed=False))
    order = await h.manager.place(resting_buy(h))
    assert not isinstance(order, Refused)
    # First NOT_FOUND after the grace, then NOT_PLACED once a later query confirms it.
    assert order.status is OrderStatus.NOT_PLACED
    assert h.exchange_orders() == []
    rec = await row(h, order.client_id)
    assert rec.status == "NOT_PLACED" and rec.sent_ms is not None and "-2013" in (rec.reject_reason or "")
    statuses = [e["status"] for e in await h.store.order_events(order.client_id)]
    assert "NOT_PLACED" in statuses or rec.resolved_from_unknown
    assert h.manager.counts["sent"] == 1 and h.manager.counts["never_placed"] == 1
    await asyncio.sleep(0.3)
    assert h.exchange_orders() == []


async def test_rejected_order_records_code_and_message(h: Harness) -> None:
    _, ask = h.refresh_market("BTCUSDT")
    # A post-only buy through the ask would take liquidity: the exchange refuses it (-2010).
    # 50 bps through, not one tick: the book keeps moving while the order is on its way.
    price = (ask * Decimal("1.005")).quantize(Decimal("0.01"))
    place = Place("BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.001"), price, post_only=True)
    order = await h.manager.place(place)
    assert not isinstance(order, Refused)
    rec = await row(h, order.client_id)
    assert rec.status == "REJECTED" and "-2010" in (rec.reject_reason or "")
    assert order.status is OrderStatus.REJECTED and h.manager.counts["rejected"] == 1
    assert h.exchange_orders() == []


async def test_record_before_send(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    reached = asyncio.Event()
    seen: dict[str, Any] = {}

    async def stuck_send(params: Any) -> Any:
        # The request is "on its way": the ledger must already explain it.
        seen["row"] = await h.store.get_order_by_client_id(params["newClientOrderId"])
        reached.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(h.gateway, "place_order", stuck_send)
    assert not isinstance(h.manager.submit(resting_buy(h)), Refused)
    await asyncio.wait_for(reached.wait(), 5)
    rec = seen["row"]
    assert rec is not None and rec.status in ("PENDING_SEND", "SENT")
    assert rec.decision_bid is not None and rec.decision_ask is not None and rec.reason == "test buy"
    # Kill the send path mid-way: the order stays explained, as UNKNOWN (to resolve by query).
    await h.manager.stop(0.1)
    after = await row(h, rec.client_order_id)
    assert after.status == "UNKNOWN"
    assert h.exchange_orders() == []


async def test_an_order_that_cannot_be_recorded_is_not_sent(h: Harness,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("disk full")

    sent: list[Any] = []

    async def place_order(params: Any) -> Any:
        sent.append(params)
        raise AssertionError("must not be sent")

    monkeypatch.setattr(h.store, "record_order_intent", broken)
    monkeypatch.setattr(h.gateway, "place_order", place_order)
    order = await h.manager.place(resting_buy(h))
    assert not isinstance(order, Refused) and order.status is OrderStatus.NOT_PLACED
    assert sent == [] and h.exchange_orders() == []


async def test_kill_switch_cancels_only_our_orders(h: Harness) -> None:
    bid, _ = h.refresh_market("BTCUSDT")
    external = build_client(h.sim.creds, h.sim.endpoints)
    try:
        price = str((bid * Decimal("0.99")).quantize(Decimal("0.01")))
        await external.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                    quantity="0.001", price=price, newClientOrderId="manual-order-1")
    finally:
        await external.close_connection()
    ours = [await h.manager.place(resting_buy(h, below_bps=b)) for b in (40, 60)]
    assert all(not isinstance(o, Refused) and o.status is OrderStatus.NEW for o in ours)
    h.risk.kill_switch.engage("test kill")
    for cancel in h.risk.kill_switch_cancels(h.ctx):
        assert isinstance(cancel, Cancel)
        h.manager.submit(cancel)
    await h.manager.drain(5)
    assert await h.manager.cancel_all_ours("kill switch") == 0  # nothing of ours left open
    statuses = {o.client_order_id: o.status for o in h.exchange_orders()}
    assert statuses["manual-order-1"] == "NEW"
    assert all(statuses[o.client_id] == "CANCELED" for o in ours)  # type: ignore[union-attr]
    for o in ours:
        assert (await row(h, o.client_id)).status == "CANCELED"  # type: ignore[union-attr]
    assert isinstance(h.manager.submit(resting_buy(h)), Refused)


async def test_cancel_all_ours_also_finds_our_orders_from_an_earlier_run(h: Harness) -> None:
    bid, _ = h.refresh_market("BTCUSDT")
    client = build_client(h.sim.creds, h.sim.endpoints)
    price = str((bid * Decimal("0.99")).quantize(Decimal("0.01")))
    try:
        for cid in ("bx-earlier-o7", "someone-else-1"):
            await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                      quantity="0.001", price=price, newClientOrderId=cid)
    finally:
        await client.close_connection()
    assert await h.manager.cancel_all_ours("shutdown") == 1
    statuses = {o.client_order_id: o.status for o in h.exchange_orders()}
    assert statuses == {"bx-earlier-o7": "CANCELED", "someone-else-1": "NEW"}


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


async def test_replace_cancels_first_then_places(h: Harness) -> None:
    from executor.core.intents import Replace

    old = await h.manager.place(resting_buy(h, below_bps=60))
    assert not isinstance(old, Refused) and old.status is OrderStatus.NEW
    new_place = resting_buy(h, below_bps=40)
    assert not isinstance(h.manager.submit(Replace(old.client_id, new_place, reason="requote")), Refused)
    await h.manager.drain(5)
    statuses = {o.client_order_id: o.status for o in h.exchange_orders()}
    assert statuses.pop(old.client_id) == "CANCELED"
    assert list(statuses.values()) == ["NEW"]
    cancels = [c for c in h.sim.exchange.engine.orders["BTCUSDT"] if c.client_order_id == old.client_id]
    assert cancels[0].cancel_client_id.startswith("bx-test1-c")  # the cancel carried its own id


def test_the_not_found_grace_is_at_least_the_request_timeout() -> None:
    from executor.orders.manager import ResolveTiming

    assert ResolveTiming(not_found_grace_s=3.0, request_timeout_s=10.0).grace_s == 10.0
    assert ResolveTiming(not_found_grace_s=3.0, request_timeout_s=2.0).grace_s == 3.0


async def test_the_grace_runs_from_the_unknown_outcome_not_from_the_send(h: Harness) -> None:
    # The answer takes 1 s (longer than the 0.3 s grace) and is a 503 for an order that was
    # never placed. Counted from the send, the grace would be over at the first query; it
    # must run from the moment the outcome became unknown.
    seen: list[tuple[OrderStatus, float]] = []
    h.tracker.on_change = lambda o: seen.append((o.status, asyncio.get_running_loop().time()))
    h.sim.exchange.faults.order_failures.append(OrderFailure(http_status=503, placed=False))
    h.sim.exchange.faults.hold(1, 1.0)
    order = await h.manager.place(resting_buy(h))
    assert not isinstance(order, Refused) and order.status is OrderStatus.NOT_PLACED
    at = {status: t for status, t in reversed(seen)}  # first time each status was reached
    grace = h.manager.timing.grace_s
    assert at[OrderStatus.NOT_FOUND] - at[OrderStatus.UNKNOWN] >= grace
    # ...and the absence is confirmed only a grace after it was first not found.
    assert at[OrderStatus.NOT_PLACED] - at[OrderStatus.NOT_FOUND] >= grace
    assert h.exchange_orders() == []
