"""The futures gateway against the embedded exchange over real HTTP."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from executor.core.orders import Side
from executor.exchange.futures_rest import FuturesGateway, FuturesSetupError, LedgerFuturesGateway
from executor.exchange.outcome import Accepted, Rejected, Unknown
from executor.exchange.rest import RestGateway


@pytest.fixture
async def gateways(sim: Any, client: Any) -> tuple[RestGateway, FuturesGateway]:
    spot = RestGateway(client)
    await spot.start()
    return spot, FuturesGateway(client, spot=spot)


async def test_configure_account_sets_and_checks(sim: Any, gateways: Any) -> None:
    _, fut = gateways
    orders = sim.exchange.futures.orders
    orders.set_dual_side("default", True)                      # start from hedge mode
    found = await fut.configure_account(["BTCUSDT", "ETHUSDT"], leverage=3, margin_type="isolated")
    assert not found.dual_side
    assert found.leverage == {"BTCUSDT": 3, "ETHUSDT": 3}
    assert found.margin_type == {"BTCUSDT": "ISOLATED", "ETHUSDT": "ISOLATED"}
    again = await fut.configure_account(["BTCUSDT"], leverage=3, margin_type="isolated")   # -4046/-4059 fine
    assert again.leverage == {"BTCUSDT": 3}
    assert orders.leverage("default", "BTCUSDT") == 3
    with pytest.raises(FuturesSetupError):
        await fut.load_rules(["NOPEUSDT"])


async def test_rules_orders_unknown_and_gap_fill_reads(sim: Any, gateways: Any) -> None:
    _, fut = gateways
    rules = (await fut.load_rules(["BTCUSDT"]))["BTCUSDT"]
    assert rules.round_qty(Decimal("0.0129")) == Decimal("0.012")
    violations = rules.check(Side.SELL, "MARKET", None, Decimal("0.001"), ref_price=Decimal(60000))
    names = {v.filter for v in violations}
    assert names == {"MIN_NOTIONAL"}                          # futures MIN_NOTIONAL "notional" is read
    outcome = await fut.place_order({"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET",
                                     "quantity": Decimal("0.010"), "newClientOrderId": "g-1",
                                     "newOrderRespType": "RESULT"})
    assert isinstance(outcome, Accepted) and outcome.response["status"] == "FILLED"
    rejected = await fut.place_order({"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET",
                                      "quantity": "0.001", "newClientOrderId": "g-2"})
    assert isinstance(rejected, Rejected) and rejected.code == -4164
    sim.exchange.faults.fail_orders(1, http_status=503, placed=True, venue="futures")
    unknown = await fut.place_order({"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET",
                                     "quantity": "0.002", "newClientOrderId": "g-3"})
    assert isinstance(unknown, Unknown)
    assert (await fut.get_order("BTCUSDT", "g-3"))["status"] == "FILLED"    # resolved by query
    assert await fut.get_order("BTCUSDT", "never") is None
    assert [p["positionAmt"] for p in await fut.position_risk("BTCUSDT")] == ["-0.012"]
    trades = await fut.trades_since("BTCUSDT", 0, page_size=1)            # paging, one per page
    assert len(trades) == 2 and trades[0]["id"] < trades[1]["id"]
    income = await fut.income()
    assert {r["incomeType"] for r in income} == {"COMMISSION"}
    assert fut.budget.used("ORDERS", 10) == 1     # X-MBX-ORDER-COUNT-10S of the one accepted order


async def test_ledger_gateway_speaks_ledger_symbols(sim: Any, gateways: Any) -> None:
    _, fut = gateways
    ledger = LedgerFuturesGateway(fut)
    touch = sim.exchange.futures.market.touch("BTCUSDT")
    price = (touch.ask * Decimal("1.002")).quantize(Decimal("0.01"))
    outcome = await ledger.place_order({"symbol": "UM:BTCUSDT", "side": "SELL", "type": "LIMIT_MAKER",
                                        "quantity": "0.005", "price": str(price), "newClientOrderId": "l-1",
                                        "newOrderRespType": "FULL"})
    assert isinstance(outcome, Accepted) and outcome.response["symbol"] == "UM:BTCUSDT"
    assert outcome.response["timeInForce"] == "GTX"
    assert [o["symbol"] for o in await ledger.open_orders()] == ["UM:BTCUSDT"]
    assert (await ledger.get_order("UM:BTCUSDT", "l-1"))["symbol"] == "UM:BTCUSDT"
    cancel = await ledger.cancel_order("UM:BTCUSDT", "l-1", "ignored")
    assert isinstance(cancel, Accepted) and cancel.response["status"] == "CANCELED"


async def test_orders_since_lists_windows_then_pages(sim: Any, gateways: Any) -> None:
    """GET /fapi/v1/allOrders through ``orders_since``: an empty first 7-day window is
    skipped, then the orders are paged by orderId (one a page here); an order by orderId too."""
    _, fut = gateways
    clock = sim.exchange.clock
    since = clock.now_ms()
    clock.advance(8 * 86_400_000)                              # the first window holds nothing
    for n in range(3):
        out = await fut.place_order({"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET",
                                     "quantity": "0.002", "newClientOrderId": f"os-{n}"})
        assert isinstance(out, Accepted)
    rows = await fut.orders_since("BTCUSDT", since, now_ms=clock.now_ms(), limit=1)
    assert [r["clientOrderId"] for r in rows] == ["os-0", "os-1", "os-2"]
    assert await fut.orders_since("ETHUSDT", since, now_ms=clock.now_ms()) == []
    first = await fut.get_order_by_id("BTCUSDT", int(rows[0]["orderId"]))
    assert first is not None and first["clientOrderId"] == "os-0"
    assert await fut.get_order_by_id("BTCUSDT", 999_999_999) is None


async def test_the_futures_request_cap_follows_the_spot_gateways(sim: Any, client: Any) -> None:
    # The bot configures one cap (BotOptions.max_requests_per_s) on its spot gateway; the
    # futures gateway sharing its gate and clock was left at 50/s whatever that was, so above
    # 50 hedged decisions a second the perpetual legs queued in the throttle.
    spot = RestGateway(client, max_requests_per_s=400)
    assert FuturesGateway(client, spot=spot).max_requests_per_s == 400
    assert FuturesGateway(client, spot=spot, max_requests_per_s=20).max_requests_per_s == 20
    assert FuturesGateway(client).max_requests_per_s == 50
    # And it is the cap the calls meet: 60 reads at once pass within one 1-second window
    # (at 50/s the 51st would wait for the next window).
    await spot.start()
    fut = FuturesGateway(client, spot=spot)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.gather(*(fut.position_risk("BTCUSDT") for _ in range(60)))
    assert loop.time() - t0 < 1.0
