"""The embedded exchange's liquidation: a short whose margin balance falls below its
maintenance margin at the mark is closed at the mark by an "autoclose-" order; positionRisk
serves the liquidation price of the same formula; the payloads have Binance's key sets
(``tests/fixtures/binance_futures.json``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from executor.core.liquidation import FIRST_BRACKET, PositionRisk, liquidation_price
from tests.conftest import wait_for
from tests.fixtures import load_futures

FIX = load_futures()
D = Decimal


def _events(sim: Any) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    sim.exchange.bus.subscribe("default", "futures", got.append)
    return got


def _pin(sim: Any, mid: Decimal) -> None:
    """Spot mid (the index) at ``mid``, basis 0: the mark is ``mid``."""
    sim.exchange.futures.market.set_basis("BTCUSDT", D(0))
    sim.exchange.market.set_book("BTCUSDT", bid=str(mid - D("0.01")), ask=str(mid + D("0.01")))


def test_formula_matches_the_definition() -> None:
    """At the liquidation price the margin balance equals the maintenance margin."""
    for amount, entry, wallet in ((D("-0.05"), D(60000), D(200)), (D("0.05"), D(60000), D(150)),
                                  (D("0.3"), D(2000), D(100))):
        lp = liquidation_price(PositionRisk("X", amount, entry, entry), wallet)
        assert lp is not None
        balance = wallet + amount * (lp - entry)
        maint = abs(amount) * lp * FIRST_BRACKET.maint_margin_ratio
        assert abs(balance - maint) < D("0.000001")
    assert liquidation_price(PositionRisk("X", D("0.01"), D(60000), D(60000)), D(10000)) is None


async def test_short_is_liquidated_at_the_mark_with_binance_shaped_events(sim: Any, client: Any) -> None:
    side = sim.exchange.futures
    _pin(sim, D(60000))
    side.transfer("default", "USDT", -(side.wallet("default").balance("USDT") - D(200)))   # 200 USDT left
    events = _events(sim)
    await client.futures_create_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.050",
                                      newClientOrderId="short-1")
    rows = await client.futures_position_information(symbol="BTCUSDT")
    lp = D(rows[0]["liquidationPrice"])
    entry = D(rows[0]["entryPrice"])
    wallet = side.wallet("default").balance("USDT")
    assert lp == liquidation_price(PositionRisk("BTCUSDT", D("-0.05"), entry, D(60000)), wallet)
    assert D(60000) < lp < D(64000)
    v2 = await client.futures_position_information(symbol="BTCUSDT", version=2)
    assert D(v2[0]["liquidationPrice"]) == lp
    assert set(rows[0]) == set(FIX["positionRisk_v3"][0])
    assert D(rows[0]["maintMargin"]) > 0

    _pin(sim, (lp - D(5)).quantize(D("0.01")))        # just short of it: nothing happens
    side.tick()
    assert side.wallet("default").positions["BTCUSDT"].amount == D("-0.05")
    mark = (lp + D(5)).quantize(D("0.01"))
    _pin(sim, mark)
    await wait_for(lambda: side.wallet("default").positions["BTCUSDT"].amount == 0)   # the host's tick

    liq = [e for e in events if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["c"].startswith("autoclose-")]
    assert [(e["o"]["x"], e["o"]["X"]) for e in liq] == [("NEW", "NEW"), ("CALCULATED", "FILLED")]
    fill = liq[1]["o"]
    assert (fill["S"], fill["o"], fill["f"], fill["z"]) == ("BUY", "LIMIT", "IOC", "0.050")
    assert D(fill["L"]) == mark
    assert D(fill["rp"]) == (entry - mark) * D("0.05")
    assert set(liq[0]) == set(FIX["ORDER_TRADE_UPDATE_liquidation_NEW"])
    assert set(liq[0]["o"]) == set(FIX["ORDER_TRADE_UPDATE_liquidation_NEW"]["o"])
    assert set(liq[1]["o"]) == set(FIX["ORDER_TRADE_UPDATE_liquidation_CALCULATED"]["o"])
    after = events[events.index(liq[1]) + 1]
    assert after["e"] == "ACCOUNT_UPDATE" and after["a"]["m"] == "ORDER"
    assert D(after["a"]["P"][0]["pa"]) == 0
    assert set(after["a"]["P"][0]) == set(FIX["ACCOUNT_UPDATE"]["a"]["P"][0])
    # the wallet keeps what the maintenance margin held, less the taker fee: never negative
    assert D(0) < side.wallet("default").balance("USDT") < D(200)

    forced = await client.futures_liquidation_orders(symbol="BTCUSDT")
    assert [r["clientOrderId"] for r in forced] == [fill["c"]]
    assert set(forced[0]) == set(FIX["forceOrders"][0])
    trades = await client.futures_account_trades(symbol="BTCUSDT")
    assert trades[-1]["orderId"] == fill["i"] and D(trades[-1]["realizedPnl"]) == D(fill["rp"])
    income = await client.futures_income_history(symbol="BTCUSDT")
    assert ("REALIZED_PNL", fill["rp"]) in [(r["incomeType"], r["income"]) for r in income]
    assert (await client.futures_position_information(symbol="BTCUSDT"))[0]["liquidationPrice"] == "0"


async def test_open_orders_expire_with_reason_5_and_brackets_are_served(sim: Any, client: Any) -> None:
    side = sim.exchange.futures
    _pin(sim, D(60000))
    side.transfer("default", "USDT", -(side.wallet("default").balance("USDT") - D(300)))
    await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.050")
    resting = await client.futures_create_order(symbol="BTCUSDT", side="SELL", type="LIMIT",
                                                timeInForce="GTC", quantity="0.010", price="62000.00",
                                                reduceOnly="true")
    events = _events(sim)
    _pin(sim, D(54000))
    await wait_for(lambda: side.wallet("default").positions["BTCUSDT"].amount == 0)
    expired = [e["o"] for e in events if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["i"] == resting["orderId"]]
    assert [(o["x"], o["X"], o["er"]) for o in expired] == [("EXPIRED", "EXPIRED", "5")]
    brackets = await client.futures_leverage_bracket(symbol="BTCUSDT")
    want = FIX["leverageBracket"][0]
    assert set(brackets) == set(want) - {"notionalCoef"}           # notionalCoef: only when adjusted
    assert set(brackets["brackets"][0]) == set(want["brackets"][0])
    assert brackets["brackets"][0]["maintMarginRatio"] == 0.0065
