"""An unmodified python-binance AsyncClient trades on the embedded exchange over real HTTP."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from binance.exceptions import BinanceAPIException

D = Decimal


def events(sim: Any) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    sim.exchange.bus.subscribe("default", "spot", got.append)
    return got


def reports(evs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["x"], e["X"]) for e in evs if e["e"] == "executionReport"]


async def test_server_time_follows_the_sim_clock(sim: Any, client: Any) -> None:
    before = sim.exchange.clock.now_ms()
    got = (await client.get_server_time())["serverTime"]
    assert before <= got <= sim.exchange.clock.now_ms()
    sim.exchange.clock.advance(3_600_000)
    assert (await client.get_server_time())["serverTime"] >= before + 3_600_000


async def test_exchange_info_lists_symbols_filters_and_limits(client: Any) -> None:
    info = await client.get_exchange_info()
    assert {s["symbol"] for s in info["symbols"]} == {"BTCUSDT", "ETHUSDT"}
    assert {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
            "limit": 6000} in info["rateLimits"]
    btc = await client.get_symbol_info("BTCUSDT")
    filters = {f["filterType"]: f for f in btc["filters"]}
    for name in ("PRICE_FILTER", "LOT_SIZE", "MARKET_LOT_SIZE", "NOTIONAL", "MAX_NUM_ORDERS"):
        assert name in filters
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    assert filters["NOTIONAL"]["minNotional"] == "5.00000000"


async def test_account_balances_and_commissions(client: Any) -> None:
    acct = await client.get_account()
    bal = {b["asset"]: b for b in acct["balances"]}
    assert bal["USDT"] == {"asset": "USDT", "free": "10000.00000000", "locked": "0.00000000"}
    assert bal["BTC"]["free"] == "0.10000000"
    assert acct["canTrade"] is True
    assert acct["commissionRates"]["maker"] == "0.00100000"


async def test_limit_gtc_rests_then_is_cancelled(sim: Any, client: Any) -> None:
    evs = events(sim)
    book = sim.exchange.market.set_book("BTCUSDT", bid="60000.00", ask="60000.01")
    order = await client.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="59000.00",
                                         newClientOrderId="rest-1")
    assert order["status"] == "NEW" and order["fills"] == [] and order["clientOrderId"] == "rest-1"
    assert book.bid == D("60000.00")
    acct = sim.exchange.default_account
    assert acct.locked("USDT") == D("59.00000") and acct.free("USDT") == D("9941")
    opened = await client.get_open_orders(symbol="BTCUSDT")
    assert [o["orderId"] for o in opened] == [order["orderId"]]
    cancelled = await client.cancel_order(symbol="BTCUSDT", orderId=order["orderId"],
                                          newClientOrderId="cxl-1")
    assert cancelled["status"] == "CANCELED"
    assert cancelled["origClientOrderId"] == "rest-1" and cancelled["clientOrderId"] == "cxl-1"
    assert acct.locked("USDT") == 0 and acct.free("USDT") == D("10000")
    assert await client.get_open_orders(symbol="BTCUSDT") == []
    queried = await client.get_order(symbol="BTCUSDT", origClientOrderId="rest-1")
    assert queried["status"] == "CANCELED"
    assert reports(evs) == [("NEW", "NEW"), ("CANCELED", "CANCELED")]
    cancel_ev = next(e for e in evs if e.get("x") == "CANCELED")
    assert cancel_ev["c"] == "cxl-1" and cancel_ev["C"] == "rest-1"
    positions = [e for e in evs if e["e"] == "outboundAccountPosition"]
    assert positions[-1]["B"] == [{"a": "USDT", "f": "10000.00000000", "l": "0.00000000"}]


async def test_marketable_limit_full_response_walks_levels(sim: Any, client: Any) -> None:
    sim.exchange.market.set_book("BTCUSDT", bid="59999.99", ask="60000.00", ask_qty="0.001")
    evs = events(sim)
    order = await client.order_limit_buy(symbol="BTCUSDT", quantity="0.003", price="60100.00")
    assert order["status"] == "FILLED" and order["executedQty"] == "0.00300000"
    fills = order["fills"]
    assert len(fills) == 2
    assert fills[0] == {"price": "60000.00000000", "qty": "0.00100000", "commission": "0.00000100",
                        "commissionAsset": "BTC", "tradeId": fills[0]["tradeId"]}
    assert D(fills[1]["price"]) > D("60000") and fills[1]["qty"] == "0.00200000"
    assert fills[1]["tradeId"] == fills[0]["tradeId"] + 1
    cost = sum(D(f["price"]) * D(f["qty"]) for f in fills)
    assert D(order["cummulativeQuoteQty"]) == cost
    acct = sim.exchange.default_account
    assert acct.free("USDT") == D(10000) - cost and acct.locked("USDT") == 0
    assert acct.free("BTC") == D("0.1") + D("0.003") - D("0.000003")
    trades = await client.get_my_trades(symbol="BTCUSDT")
    assert [t["id"] for t in trades] == [f["tradeId"] for f in fills]
    assert all(t["isBuyer"] and not t["isMaker"] for t in trades)
    assert reports(evs) == [("NEW", "NEW"), ("TRADE", "PARTIALLY_FILLED"), ("TRADE", "FILLED")]
    ids = [e["I"] for e in evs if e["e"] == "executionReport"]
    assert ids == sorted(ids) and len(set(ids)) == 3


async def test_market_buy_by_quote_order_qty(sim: Any, client: Any) -> None:
    sim.exchange.market.set_book("BTCUSDT", bid="59999.99", ask="60000.00", ask_qty="1")
    order = await client.order_market_buy(symbol="BTCUSDT", quoteOrderQty="100")
    assert order["status"] == "FILLED" and order["type"] == "MARKET"
    assert order["origQuoteOrderQty"] == "100.00000000"
    assert order["executedQty"] == "0.00166000" == order["origQty"]
    assert order["cummulativeQuoteQty"] == "99.60000000"
    acct = sim.exchange.default_account
    assert acct.free("USDT") == D("9900.4") and acct.locked("USDT") == 0


async def test_market_sell_by_quantity(sim: Any, client: Any) -> None:
    sim.exchange.market.set_book("BTCUSDT", bid="60000.00", ask="60000.01", bid_qty="1")
    order = await client.order_market_sell(symbol="BTCUSDT", quantity="0.01")
    assert order["status"] == "FILLED" and order["fills"][0]["commissionAsset"] == "USDT"
    assert order["fills"][0]["commission"] == "0.60000000"
    acct = sim.exchange.default_account
    assert acct.free("USDT") == D(10000) + D(600) - D("0.6") and acct.free("BTC") == D("0.09")


async def test_ioc_partially_filled_then_expired(sim: Any, client: Any) -> None:
    sim.exchange.market.set_book("BTCUSDT", bid="59999.99", ask="60000.00", ask_qty="0.001")
    evs = events(sim)
    order = await client.order_limit_buy(symbol="BTCUSDT", quantity="0.003", price="60000.00",
                                         timeInForce="IOC")
    assert order["status"] == "EXPIRED" and order["executedQty"] == "0.00100000"
    assert len(order["fills"]) == 1
    assert reports(evs) == [("NEW", "NEW"), ("TRADE", "PARTIALLY_FILLED"), ("EXPIRED", "EXPIRED")]
    acct = sim.exchange.default_account
    assert acct.locked("USDT") == 0 and acct.free("USDT") == D(10000) - D(60)


async def test_fok_not_filled(sim: Any, client: Any) -> None:
    sim.exchange.market.set_book("BTCUSDT", bid="59999.99", ask="60000.00", ask_qty="0.001")
    evs = events(sim)
    order = await client.order_limit_buy(symbol="BTCUSDT", quantity="0.003", price="60000.00",
                                         timeInForce="FOK")
    assert order["status"] == "EXPIRED" and order["executedQty"] == "0.00000000" and order["fills"] == []
    assert reports(evs) == [("NEW", "NEW"), ("EXPIRED", "EXPIRED")]
    assert sim.exchange.default_account.free("USDT") == D(10000)


async def test_fok_filled_when_liquidity_suffices(sim: Any, client: Any) -> None:
    sim.exchange.market.set_book("BTCUSDT", bid="59999.99", ask="60000.00", ask_qty="0.005")
    order = await client.order_limit_buy(symbol="BTCUSDT", quantity="0.003", price="60000.00",
                                         timeInForce="FOK")
    assert order["status"] == "FILLED"


async def test_limit_maker_that_would_cross_is_rejected(sim: Any, client: Any) -> None:
    sim.exchange.market.set_book("BTCUSDT", bid="59999.99", ask="60000.00")
    with pytest.raises(BinanceAPIException) as err:
        await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT_MAKER", quantity="0.001",
                                  price="60000.00")
    assert (err.value.code, err.value.message) == (-2010, "Order would immediately match and take.")
    assert err.value.status_code == 400
    ok = await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT_MAKER", quantity="0.001",
                                   price="59999.99")
    assert set(ok) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}  # ACK default


async def test_resting_order_fills_as_maker_when_market_trades_through(sim: Any, client: Any) -> None:
    market = sim.exchange.market
    market.set_book("BTCUSDT", bid="60000.00", ask="60000.01")
    evs = events(sim)
    order = await client.order_limit_buy(symbol="BTCUSDT", quantity="0.002", price="59000.00")
    market.set_book("BTCUSDT", bid="58900.00", ask="58999.00", ask_qty="0.001")   # partial through
    got = await client.get_order(symbol="BTCUSDT", orderId=order["orderId"])
    assert got["status"] == "PARTIALLY_FILLED" and got["executedQty"] == "0.00100000"
    market.set_book("BTCUSDT", bid="58800.00", ask="58900.00", ask_qty="5")
    got = await client.get_order(symbol="BTCUSDT", orderId=order["orderId"])
    assert got["status"] == "FILLED" and got["cummulativeQuoteQty"] == "118.00000000"
    trades = await client.get_my_trades(symbol="BTCUSDT", orderId=order["orderId"])
    assert [t["isMaker"] for t in trades] == [True, True]
    assert all(t["price"] == "59000.00000000" for t in trades)
    fills = [e for e in evs if e.get("x") == "TRADE"]
    assert [e["m"] for e in fills] == [True, True]
    assert [e["X"] for e in fills] == ["PARTIALLY_FILLED", "FILLED"]
    acct = sim.exchange.default_account
    assert acct.locked("USDT") == 0 and acct.free("USDT") == D(10000) - D(118)


async def test_history_queries(sim: Any, client: Any) -> None:
    sim.exchange.market.set_book("BTCUSDT", bid="59999.99", ask="60000.00", ask_qty="10")
    first = await client.order_market_buy(symbol="BTCUSDT", quantity="0.001")
    second = await client.order_market_buy(symbol="BTCUSDT", quantity="0.001")
    assert second["orderId"] == first["orderId"] + 1
    assert [o["orderId"] for o in await client.get_all_orders(symbol="BTCUSDT")] == \
        [first["orderId"], second["orderId"]]
    assert [o["orderId"] for o in await client.get_all_orders(symbol="BTCUSDT", orderId=second["orderId"])] \
        == [second["orderId"]]
    trades = await client.get_my_trades(symbol="BTCUSDT", fromId=second["fills"][0]["tradeId"])
    assert [t["orderId"] for t in trades] == [second["orderId"]]
    assert len(await client.get_my_trades(symbol="BTCUSDT", limit=1)) == 1
    now = sim.exchange.clock.now_ms()
    assert len(await client.get_my_trades(symbol="BTCUSDT", startTime=now - 60_000, endTime=now)) == 2


async def test_depth_and_book_ticker_agree(sim: Any, client: Any) -> None:
    sim.exchange.market.set_book("ETHUSDT", bid="3000.00", ask="3000.01", bid_qty="2", ask_qty="3")
    depth = await client.get_order_book(symbol="ETHUSDT", limit=5)
    assert depth["bids"][0] == ["3000.00000000", "2.00000000"]
    assert depth["asks"][0] == ["3000.01000000", "3.00000000"]
    assert len(depth["asks"]) == 5 and all(D(a[0]) > D("3000.01") for a in depth["asks"][1:])
    ticker = await client.get_orderbook_ticker(symbol="ETHUSDT")
    assert ticker == {"symbol": "ETHUSDT", "bidPrice": "3000.00000000", "bidQty": "2.00000000",
                      "askPrice": "3000.01000000", "askQty": "3.00000000"}


@pytest.mark.parametrize("kind", ["Ed25519", "RSA"])
async def test_asymmetric_key_signatures(sim: Any, make_client: Any, kind: str) -> None:
    creds = sim.ed25519_creds if kind == "Ed25519" else sim.rsa_creds
    client = make_client(creds)
    assert (await client.get_account())["uid"] == sim.exchange.default_account.uid
    order = await client.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="50000.00")
    assert (await client.get_order(symbol="BTCUSDT", orderId=order["orderId"]))["status"] == "NEW"
    assert (await client.cancel_order(symbol="BTCUSDT", orderId=order["orderId"]))["status"] == "CANCELED"


async def test_order_test_endpoint_validates_without_placing(sim: Any, client: Any) -> None:
    assert await client.create_test_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                          quantity="0.001", price="50000.00") == {}
    with pytest.raises(BinanceAPIException) as err:
        await client.create_test_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                       quantity="0.001", price="50000.001")
    assert err.value.message == "Filter failure: PRICE_FILTER"
    assert sim.exchange.engine.orders["BTCUSDT"] == []


async def test_cancel_all_open_orders(sim: Any, client: Any) -> None:
    for price in ("50000.00", "51000.00"):
        await client.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price=price)
    done = await client.cancel_all_open_orders(symbol="BTCUSDT")
    assert [o["status"] for o in done] == ["CANCELED", "CANCELED"]
    assert sim.exchange.engine.open_orders("default") == []
    with pytest.raises(BinanceAPIException) as err:
        await client.cancel_all_open_orders(symbol="BTCUSDT")
    assert err.value.code == -2011
