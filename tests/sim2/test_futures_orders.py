"""USDⓈ-M futures orders on the embedded exchange, over real HTTP with python-binance."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from binance.exceptions import BinanceAPIException

from tests.conftest import wait_for
from tests.fixtures import load

FIX = load()


def _events(sim: Any) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    sim.exchange.bus.subscribe("default", "futures", got.append)
    return got


async def _code(call: Any) -> int:
    with pytest.raises(BinanceAPIException) as err:
        await call
    return int(err.value.code)


async def test_market_order_fills_at_touch_with_position_trades_income_events(sim: Any, client: Any) -> None:
    events = _events(sim)
    side = sim.exchange.futures
    touch = side.market.touch("BTCUSDT")
    resp = await client.futures_create_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.010",
                                             newClientOrderId="fut-1", newOrderRespType="RESULT")
    assert resp["status"] == "FILLED" and resp["clientOrderId"] == "fut-1"
    assert resp["executedQty"] == "0.010"
    fill_price = Decimal(resp["avgPrice"])
    assert abs(fill_price - touch.bid) <= Decimal("100")      # at the touch (the mark may have moved)
    assert client.response.headers["X-MBX-ORDER-COUNT-10S"] == "1"
    assert client.response.headers["X-MBX-ORDER-COUNT-1M"] == "1"
    assert "X-MBX-USED-WEIGHT-1M" in client.response.headers
    pos = [p for p in await client.futures_position_information(symbol="BTCUSDT")]
    assert pos[0]["positionAmt"] == "-0.010"
    v2 = await client.futures_position_information(symbol="BTCUSDT", version=2)
    assert v2[0]["positionAmt"] == "-0.010" and v2[0]["leverage"] == "20" and v2[0]["marginType"] == "cross"
    trades = await client.futures_account_trades(symbol="BTCUSDT")
    assert len(trades) == 1 and trades[0]["side"] == "SELL" and not trades[0]["maker"]
    commission = Decimal(trades[0]["commission"])
    assert commission == (Decimal("0.010") * Decimal(trades[0]["price"]) * Decimal("0.0004")).quantize(
        Decimal("0.00000001"))
    income = await client.futures_income_history(symbol="BTCUSDT")
    assert [(r["incomeType"], Decimal(r["income"])) for r in income] == [("COMMISSION", -commission)]
    # close it: realized PnL booked
    await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010",
                                      reduceOnly="true", newClientOrderId="fut-2")
    assert (await client.futures_position_information(symbol="BTCUSDT"))[0]["positionAmt"] == "0.000"
    kinds = [e["e"] + ":" + (e["o"]["x"] if "o" in e else e["a"]["m"]) for e in events]
    assert kinds == ["ORDER_TRADE_UPDATE:NEW", "ORDER_TRADE_UPDATE:TRADE", "ACCOUNT_UPDATE:ORDER"] * 2
    # key sets exactly as Binance documents them (fixture: a TRADE event)
    trade_keys = set(FIX["ORDER_TRADE_UPDATE"]["o"])
    for e in events:
        if e["e"] == "ORDER_TRADE_UPDATE":
            assert set(e) == set(FIX["ORDER_TRADE_UPDATE"])
            expected = trade_keys if e["o"]["x"] == "TRADE" else trade_keys - {"N", "n"}
            assert set(e["o"]) == expected
        else:
            assert set(e) == set(FIX["ACCOUNT_UPDATE"])
            assert set(e["a"]) == set(FIX["ACCOUNT_UPDATE"]["a"])
            assert set(e["a"]["P"][0]) == set(FIX["ACCOUNT_UPDATE"]["a"]["P"][0])
            assert set(e["a"]["B"][0]) == set(FIX["ACCOUNT_UPDATE"]["a"]["B"][0])
    assert Decimal(events[-1]["a"]["P"][0]["pa"]) == 0


async def test_limit_rests_query_cancel_and_unknown(sim: Any, client: Any) -> None:
    touch = sim.exchange.futures.market.touch("BTCUSDT")
    price = (touch.bid * Decimal("0.98")).quantize(Decimal("0.01"))
    ack = await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                            quantity="0.005", price=str(price), newClientOrderId="rest-1")
    assert ack["status"] == "NEW" and ack["executedQty"] == "0.000"
    opens = await client.futures_get_open_orders(symbol="BTCUSDT")
    assert [o["clientOrderId"] for o in opens] == ["rest-1"]
    by_client = await client.futures_get_order(symbol="BTCUSDT", origClientOrderId="rest-1")
    assert by_client["orderId"] == ack["orderId"] and by_client["status"] == "NEW"
    assert await _code(client.futures_create_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.005", price=str(price),
        newClientOrderId="rest-1")) == -4116
    canceled = await client.futures_cancel_order(symbol="BTCUSDT", origClientOrderId="rest-1")
    assert canceled["status"] == "CANCELED"
    assert await client.futures_get_open_orders(symbol="BTCUSDT") == []
    assert await _code(client.futures_get_order(symbol="BTCUSDT", origClientOrderId="nope")) == -2013
    assert await _code(client.futures_cancel_order(symbol="BTCUSDT", origClientOrderId="rest-1")) == -2011


async def test_resting_order_fills_when_touch_crosses(sim: Any, client: Any) -> None:
    market = sim.exchange.futures.market
    market.set_basis("BTCUSDT", Decimal("0.001"))
    touch = market.touch("BTCUSDT")
    price = (touch.bid * Decimal("0.999")).quantize(Decimal("0.01"))     # below the bid: rests
    await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTX",
                                      quantity="0.004", price=str(price), newClientOrderId="mk-1")
    market.set_basis("BTCUSDT", Decimal("-0.003"))                       # the ask drops through it
    await wait_for(lambda: sim.exchange.futures.orders.find("default", "BTCUSDT", None, "mk-1").status
                   == "FILLED", 5.0)
    trades = await client.futures_account_trades(symbol="BTCUSDT")
    assert trades[0]["maker"] and Decimal(trades[0]["price"]) == price


async def test_rejections(sim: Any, client: Any) -> None:
    touch = sim.exchange.futures.market.touch("BTCUSDT")
    # GTX that would take
    assert await _code(client.futures_create_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTX", quantity="0.005",
        price=str(touch.ask))) == -5022
    # reduce-only with no position
    assert await _code(client.futures_create_order(
        symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.005", reduceOnly="true")) == -2022
    # margin: 10,000 USDT at 1x cannot carry 1 BTC (~60,000)
    assert (await client.futures_change_leverage(symbol="BTCUSDT", leverage=1))["leverage"] == 1
    assert await _code(client.futures_create_order(
        symbol="BTCUSDT", side="SELL", type="MARKET", quantity="1")) == -2019
    # filters
    assert await _code(client.futures_create_order(
        symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.0015")) == -4023
    assert await _code(client.futures_create_order(
        symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.001")) == -4164
    assert sim.exchange.futures.orders.trades == []


async def test_settings(sim: Any, client: Any) -> None:
    assert await client.futures_get_position_mode() == {"dualSidePosition": False}
    assert await _code(client.futures_change_position_mode(dualSidePosition="false")) == -4059
    assert await client.futures_change_margin_type(symbol="BTCUSDT", marginType="ISOLATED") == {
        "code": 200, "msg": "success"}
    assert await _code(client.futures_change_margin_type(symbol="BTCUSDT", marginType="ISOLATED")) == -4046
    changed = await client.futures_change_position_mode(dualSidePosition="true")
    assert changed == {"code": 200, "msg": "success"}
    assert await _code(client.futures_create_order(
        symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.005")) == -4061


async def test_order_failure_fault_applies_to_futures(sim: Any, client: Any) -> None:
    sim.exchange.faults.fail_orders(1, http_status=503, placed=True, venue="futures")
    with pytest.raises(BinanceAPIException) as err:
        await client.futures_create_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.005",
                                          newClientOrderId="unk-1")
    assert err.value.status_code == 503
    found = await client.futures_get_order(symbol="BTCUSDT", origClientOrderId="unk-1")
    assert found["status"] == "FILLED"
    sim.exchange.faults.fail_orders(1, http_status=400, code=-1007, placed=False)
    assert await _code(client.futures_create_order(symbol="BTCUSDT", side="SELL", type="MARKET",
                                                   quantity="0.005", newClientOrderId="unk-2")) == -1007
    assert await _code(client.futures_get_order(symbol="BTCUSDT", origClientOrderId="unk-2")) == -2013


async def test_partial_fill_ioc_expires_remainder(sim: Any, client: Any) -> None:
    sim.exchange.futures.orders.liquidity_cap["BTCUSDT"] = Decimal("0.003")
    resp = await client.futures_create_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.010",
                                             newOrderRespType="RESULT")
    assert resp["status"] == "EXPIRED" and resp["executedQty"] == "0.003"
