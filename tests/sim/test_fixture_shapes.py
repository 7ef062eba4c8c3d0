"""What the sim produces has exactly the key sets of Binance's documented payloads in
``tests/fixtures/binance.json`` (spot REST responses, stream payloads, user events).

The futures fixtures (markPrice, ORDER_TRADE_UPDATE, ACCOUNT_UPDATE, listenKeyExpired)
belong to the futures part of the sim and are checked with it.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
import websockets
from binance.exceptions import BinanceAPIException

from tests.fixtures import FIXTURES_FILE as FIXTURES


@pytest.fixture(scope="module")
def fixtures() -> dict[str, Any]:
    return json.loads(FIXTURES.read_text())


def inner(fx: dict[str, Any]) -> dict[str, Any]:
    return fx["event"] if "event" in fx and "subscriptionId" in fx else fx


def same_keys(got: dict[str, Any], want: dict[str, Any], where: str) -> None:
    assert set(got) == set(want), f"{where}: extra {set(got) - set(want)}, missing {set(want) - set(got)}"


async def test_rest_responses_match_fixture_keys(sim: Any, client: Any, fixtures: dict[str, Any]) -> None:
    sim.exchange.market.set_book("BTCUSDT", bid="59999.99", ask="60000.00", ask_qty="0.001")
    full = await client.order_limit_buy(symbol="BTCUSDT", quantity="0.002", price="60100.00")
    same_keys(full, fixtures["order_response_FULL"], "order FULL")
    for fill, want in zip(full["fills"], fixtures["order_response_FULL"]["fills"], strict=False):
        same_keys(fill, want, "fill")
    ack = await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                    quantity="0.001", price="50000.00", newOrderRespType="ACK")
    same_keys(ack, fixtures["order_response_ACK"], "order ACK")
    result = await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                       quantity="0.001", price="50000.00", newOrderRespType="RESULT")
    same_keys(result, {k: v for k, v in fixtures["order_response_FULL"].items() if k != "fills"}, "RESULT")

    info = await client.get_exchange_info()
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    want = fixtures["exchangeInfo_symbol_BTCUSDT"]
    same_keys(btc, want, "exchangeInfo symbol")
    want_filters = {f["filterType"]: f for f in want["filters"]}
    for f in btc["filters"]:
        same_keys(f, want_filters[f["filterType"]], f"filter {f['filterType']}")

    acct = await client.get_account()
    same_keys(acct, fixtures["account_response"], "account")
    same_keys(acct["commissionRates"], fixtures["account_response"]["commissionRates"], "commissionRates")
    for bal in acct["balances"]:
        same_keys(bal, fixtures["account_response"]["balances"][0], "balance")

    with pytest.raises(BinanceAPIException) as err:
        await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                  quantity="1", price="59000.00")
    assert json.loads(await err.value.response.text()) == fixtures["error_-2010"]
    client.timestamp_offset = -60_000
    with pytest.raises(BinanceAPIException) as err:
        await client.get_account()
    assert json.loads(await err.value.response.text()) == fixtures["error_-1021"]


async def test_user_events_match_fixture_keys(sim: Any, client: Any, fixtures: dict[str, Any]) -> None:
    got: list[dict[str, Any]] = []
    sim.exchange.bus.subscribe("default", "spot", got.append)
    market = sim.exchange.market
    market.set_book("BTCUSDT", bid="60000.00", ask="60000.01")
    rest = await client.order_limit_buy(symbol="BTCUSDT", quantity="0.002", price="59000.00")
    market.set_book("BTCUSDT", bid="58000.00", ask="58999.00", ask_qty="0.001")
    market.set_book("BTCUSDT", bid="58000.00", ask="58999.00", ask_qty="1")
    other = await client.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="50000.00")
    await client.cancel_order(symbol="BTCUSDT", orderId=other["orderId"], newClientOrderId="cxl")
    sim.exchange.engine.adjust_balance(sim.exchange.default_account, "BTC", Decimal("1"))

    reports = {(e["x"], e["X"]): e for e in got if e["e"] == "executionReport"}
    assert rest["orderId"] == reports[("TRADE", "FILLED")]["i"]
    for (x, status), name in ((("NEW", "NEW"), "executionReport_NEW"),
                              (("TRADE", "PARTIALLY_FILLED"), "executionReport_TRADE_partial"),
                              (("TRADE", "FILLED"), "executionReport_TRADE_fill"),
                              (("CANCELED", "CANCELED"), "executionReport_CANCELED")):
        same_keys(reports[(x, status)], inner(fixtures[name]), name)
        for key, value in inner(fixtures[name]).items():
            if value is not None:
                assert type(reports[(x, status)][key]) is type(value), (name, key)
    position = next(e for e in got if e["e"] == "outboundAccountPosition")
    same_keys(position, inner(fixtures["outboundAccountPosition"]), "outboundAccountPosition")
    same_keys(position["B"][0], inner(fixtures["outboundAccountPosition"])["B"][0], "position balance")
    balance = next(e for e in got if e["e"] == "balanceUpdate")
    same_keys(balance, inner(fixtures["balanceUpdate"]), "balanceUpdate")


async def test_stream_payloads_match_fixture_keys(sim: Any, fixtures: dict[str, Any]) -> None:
    async with websockets.connect(sim.urls.spot_stream + "ws/btcusdt@bookTicker") as ws:
        raw = json.loads(await asyncio.wait_for(ws.recv(), 3))
    same_keys(raw, fixtures["bookTicker"], "bookTicker")
    for key, value in fixtures["bookTicker"].items():
        assert type(raw[key]) is type(value), key
    async with websockets.connect(sim.urls.spot_stream + "stream?streams=btcusdt@bookTicker") as ws:
        wrapped = json.loads(await asyncio.wait_for(ws.recv(), 3))
    same_keys(wrapped, fixtures["bookTicker_combined"], "combined")
    same_keys(wrapped["data"], fixtures["bookTicker_combined"]["data"], "combined data")
