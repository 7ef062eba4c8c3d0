"""Public market-data, fee and status REST endpoints of the embedded exchange, over real HTTP
with python-binance's AsyncClient: the answers have the key sets of Binance's documented
examples (``tests/fixtures/binance.json``), agree with the exchange's trade tape and book,
count their documented weight, and refuse bad parameters with the documented codes."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from binance.exceptions import BinanceAPIException

from tests.fixtures import load

FX = load()
D = Decimal
# No background book updates: each test prints the trades it looks at.
pytestmark = pytest.mark.sim_options(book_update_hz=0)


def same_keys(got: dict[str, Any], name: str) -> None:
    want = FX[name]
    want = want[0] if isinstance(want, list) else want
    assert set(got) == set(want), f"{name}: extra {set(got) - set(want)}, missing {set(want) - set(got)}"
    assert list(got) == list(want), f"{name}: key order {list(got)} != {list(want)}"


def trade_some(sim: Any, n: int = 120) -> None:
    """Book updates: the tape prints simulated market trades on them."""
    for _ in range(n):
        sim.exchange.market.tick()
    sim.exchange.tape.flush_aggs()


async def weight_of(client: Any, call: Any) -> int:
    """The REQUEST_WEIGHT one call added (X-MBX-USED-WEIGHT-1M before and after)."""
    await client.ping()
    before = int(client.response.headers["X-MBX-USED-WEIGHT-1M"])
    await call()
    return int(client.response.headers["X-MBX-USED-WEIGHT-1M"]) - before


async def code_of(call: Any) -> int:
    with pytest.raises(BinanceAPIException) as err:
        await call()
    return int(err.value.code)


async def test_tape_moves_without_our_orders_and_trades_match_it(sim: Any, client: Any) -> None:
    ex = sim.exchange
    trade_some(sim)
    tape = ex.tape.recent("BTCUSDT", 1000)
    assert len(tape) > 10 and not ex.engine.my_trades("default", "BTCUSDT")
    recent = await client.get_recent_trades(symbol="BTCUSDT", limit=5)
    same_keys(recent[0], "trades")
    assert [r["id"] for r in recent] == [t.id for t in tape[-5:]]
    for row, t in zip(recent, tape[-5:], strict=True):
        assert D(row["price"]) == t.price and D(row["qty"]) == t.qty
        assert D(row["quoteQty"]) == t.price * t.qty and row["isBuyerMaker"] is t.buyer_maker
    hist = await client.get_historical_trades(symbol="BTCUSDT", fromId=tape[3].id, limit=4)
    same_keys(hist[0], "historicalTrades")
    assert [r["id"] for r in hist] == [t.id for t in tape[3:7]]


async def test_our_fill_is_on_the_public_tape_with_its_trade_id(sim: Any, client: Any) -> None:
    ex = sim.exchange
    ex.market.set_price("BTCUSDT", "60000")
    order = await client.order_market_buy(symbol="BTCUSDT", quantity="0.001")
    fill_id = order["fills"][0]["tradeId"]
    recent = await client.get_recent_trades(symbol="BTCUSDT", limit=1)
    assert recent[0]["id"] == fill_id and recent[0]["price"] == order["fills"][0]["price"]
    assert recent[0]["isBuyerMaker"] is False           # we bought as taker: the seller was the maker


async def test_agg_trades_rules(sim: Any, client: Any) -> None:
    trade_some(sim, 200)
    aggs = await client.get_aggregate_trades(symbol="BTCUSDT", limit=1000)
    same_keys(aggs[0], "aggTrades")
    trades = {t.id: t for t in sim.exchange.tape.recent("BTCUSDT", 1000)}
    assert any(a["l"] > a["f"] for a in aggs), "some taker printed several fills"
    for a in aggs:
        parts = [trades[i] for i in range(a["f"], a["l"] + 1)]
        assert sum(p.qty for p in parts) == D(a["q"]) and {p.price for p in parts} == {D(a["p"])}
    mid = aggs[len(aggs) // 2]
    from_id = await client.get_aggregate_trades(symbol="BTCUSDT", fromId=mid["a"], limit=3)
    assert [a["a"] for a in from_id] == [mid["a"], mid["a"] + 1, mid["a"] + 2]
    t0 = mid["T"]
    since = await client.get_aggregate_trades(symbol="BTCUSDT", startTime=t0, limit=2)
    assert since[0]["T"] >= t0 and since == [a for a in aggs if a["T"] >= t0][:2]
    until = await client.get_aggregate_trades(symbol="BTCUSDT", endTime=t0, limit=2)
    assert until == [a for a in aggs if a["T"] <= t0][-2:]
    both = {"fromId": 1, "startTime": t0}                     # fromId with a time window: refused
    assert await code_of(lambda: client.get_aggregate_trades(symbol="BTCUSDT", **both)) == -1128
    assert await code_of(lambda: client.get_aggregate_trades(symbol="BTCUSDT", limit=1001)) == -1130
    assert await weight_of(client, lambda: client.get_aggregate_trades(symbol="BTCUSDT")) == 4


async def test_klines_every_interval_and_time_zone(sim: Any, client: Any) -> None:
    trade_some(sim)
    tape = sim.exchange.tape.recent("BTCUSDT", 1000)
    for interval in ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d",
                     "1w", "1M"):
        rows = await client.get_klines(symbol="BTCUSDT", interval=interval)
        assert len(rows) >= 1 and len(rows[0]) == len(FX["klines"][0])
        assert sum(r[8] for r in rows) == len(tape), interval
        last = rows[-1]
        assert D(last[4]) == tape[-1].price and last[0] <= tape[-1].time <= last[6]
    utc = await client.get_klines(symbol="BTCUSDT", interval="1d")
    plus8 = await client.get_klines(symbol="BTCUSDT", interval="1d", timeZone="+08:00")
    assert plus8[-1][0] % 86_400_000 == 16 * 3_600_000 and utc[-1][0] % 86_400_000 == 0
    ui = await client.get_ui_klines(symbol="BTCUSDT", interval="1m")
    assert [len(r) for r in ui] == [len(FX["uiKlines"][0])] * len(ui)
    assert await code_of(lambda: client.get_klines(symbol="BTCUSDT", interval="2m")) == -1120
    assert await code_of(lambda: client.get_klines(symbol="BTCUSDT", interval="1m", timeZone="15")) == -1130
    assert await code_of(lambda: client.get_klines(symbol="BTCUSDT", interval="1m", limit=1001)) == -1130
    assert await weight_of(client, lambda: client.get_klines(symbol="BTCUSDT", interval="1m")) == 2


async def test_tickers_full_mini_windows_and_weights(sim: Any, client: Any) -> None:
    trade_some(sim)
    tape = sim.exchange.tape.recent("BTCUSDT", 1000)
    one = await client.get_ticker(symbol="BTCUSDT")
    same_keys(one, "ticker_24hr_FULL")
    assert one["count"] == len(tape) and one["firstId"] == tape[0].id and one["lastId"] == tape[-1].id
    assert one["closeTime"] - one["openTime"] == 86_400_000
    assert D(one["lastPrice"]) == tape[-1].price and D(one["volume"]) == sum(t.qty for t in tape)
    assert D(one["highPrice"]) == max(t.price for t in tape) and D(one["openPrice"]) == tape[0].price
    mini = await client.get_ticker(symbol="BTCUSDT", type="MINI")
    same_keys(mini, "ticker_24hr_MINI")
    all_rows = await client.get_ticker()
    assert {r["symbol"] for r in all_rows} == {"BTCUSDT", "ETHUSDT"}
    some = await client.get_ticker(symbols=json.dumps(["ETHUSDT"]))
    assert [r["symbol"] for r in some] == ["ETHUSDT"]
    assert await weight_of(client, lambda: client.get_ticker(symbol="BTCUSDT")) == 2
    assert await weight_of(client, lambda: client.get_ticker()) == 80
    assert await weight_of(client, lambda: client.get_ticker(symbols='["BTCUSDT"]')) == 2
    assert await code_of(lambda: client.get_ticker(symbol="BTCUSDT", type="HUGE")) == -1139
    assert await code_of(lambda: client.get_ticker(symbol="BTCUSDT", symbols='["BTCUSDT"]')) == -1128
    assert await code_of(lambda: client.get_ticker(symbols='["BTCUSDT","BTCUSDT"]')) == -1151
    assert await code_of(lambda: client.get_ticker(symbol="NOPEUSDT")) == -1121
    sim.exchange.set_symbol_status("ETHUSDT", "HALT")
    assert await code_of(lambda: client.get_ticker(symbol="ETHUSDT", symbolStatus="TRADING")) == -1220
    assert [r["symbol"] for r in await client.get_ticker(symbolStatus="TRADING")] == ["BTCUSDT"]

    price = await client.get_symbol_ticker(symbol="BTCUSDT")
    same_keys(price, "ticker_price")
    assert D(price["price"]) == tape[-1].price
    assert await weight_of(client, lambda: client.get_symbol_ticker()) == 4

    window = await client.get_symbol_ticker_window(symbol="BTCUSDT", windowSize="15m")
    same_keys(window, "ticker_window_FULL")
    assert window["openTime"] % 60_000 == 0 and window["count"] == len(tape)
    win_mini = await client.get_symbol_ticker_window(symbol="BTCUSDT", type="MINI")
    same_keys(win_mini, "ticker_window_MINI")
    window_call = client.get_symbol_ticker_window
    for bad in ("1d2h", "60m", "8d", "0h"):
        assert await code_of(lambda b=bad: window_call(symbol="BTCUSDT", windowSize=b)) == -1130
    assert await code_of(lambda: client.get_symbol_ticker_window()) == -1102
    assert await weight_of(client, lambda: client.get_symbol_ticker_window(
        symbols='["BTCUSDT","ETHUSDT"]')) == 8

    day = await client.v3_get_ticker_trading_day(symbol="BTCUSDT", timeZone="-1:00")
    same_keys(day, "ticker_tradingDay_FULL")
    assert (day["openTime"] - 3_600_000) % 86_400_000 == 0          # midnight at UTC-1
    assert day["closeTime"] == day["openTime"] + 86_399_999
    day_mini = await client.v3_get_ticker_trading_day(symbol="BTCUSDT", type="MINI")
    same_keys(day_mini, "ticker_tradingDay_MINI")


async def test_avg_price_and_depth_limits(sim: Any, client: Any) -> None:
    trade_some(sim)
    tape = sim.exchange.tape.recent("BTCUSDT", 1000)
    avg = await client.get_avg_price(symbol="BTCUSDT")
    same_keys(avg, "avgPrice")
    quote = sum(t.price * t.qty for t in tape)
    vol = sum(t.qty for t in tape)
    assert D(avg["price"]) == (quote / vol).quantize(D("0.00000001")) and avg["closeTime"] == tape[-1].time
    book = await client.get_order_book(symbol="BTCUSDT", limit=5000)
    same_keys(book, "depth")
    assert book["lastUpdateId"] == sim.exchange.market.book("BTCUSDT").u
    deep = await client.get_order_book(symbol="BTCUSDT", limit=6000)      # served as 5000, no error
    assert deep["bids"] == book["bids"]
    assert await weight_of(client, lambda: client.get_order_book(symbol="BTCUSDT")) == 5
    assert await weight_of(client, lambda: client.get_order_book(symbol="BTCUSDT", limit=101)) == 25
    assert await weight_of(client, lambda: client.get_order_book(symbol="BTCUSDT", limit=1000)) == 50
    assert await weight_of(client, lambda: client.get_order_book(symbol="BTCUSDT", limit=5000)) == 250
    assert await code_of(lambda: client.get_order_book(symbol="BTCUSDT", limit=0)) == -1130


async def test_account_fee_and_status_endpoints(sim: Any, client: Any) -> None:
    acct = sim.exchange.default_account
    acct.maker_rate, acct.taker_rate = D("0.0002"), D("0.0004")
    rates = await client.v3_get_account_commission(symbol="BTCUSDT")
    same_keys(rates, "account_commission")
    for part in ("standardCommission", "specialCommission", "taxCommission", "discount"):
        assert set(rates[part]) == set(FX["account_commission"][part])
    assert rates["standardCommission"]["maker"] == "0.00020000"
    assert rates["standardCommission"]["taker"] == "0.00040000"
    assert await weight_of(client, lambda: client.v3_get_account_commission(symbol="BTCUSDT")) == 20

    fees = await client.get_trade_fee(symbol="BTCUSDT")
    same_keys(fees[0], "sapi_tradeFee")
    assert fees == [{"symbol": "BTCUSDT", "makerCommission": "0.0002", "takerCommission": "0.0004"}]
    assert {f["symbol"] for f in await client.get_trade_fee()} == {"BTCUSDT", "ETHUSDT"}

    status = await client.get_system_status()
    same_keys(status, "sapi_system_status")
    assert status == {"status": 0, "msg": "normal"}
    sim.exchange.system_status = 1
    assert await client.get_system_status() == {"status": 1, "msg": "system_maintenance"}

    sim.exchange.market.set_price("BTCUSDT", "60000")
    await client.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="50000.00")
    counts = await client.get_current_order_count()
    for row, want in zip(counts, FX["rateLimit_order"], strict=True):
        assert set(row) == set(want)
    assert [(r["interval"], r["count"]) for r in counts] == [("SECOND", 1), ("DAY", 1)]
    assert await weight_of(client, lambda: client.get_current_order_count()) == 40

    assert await client.get_prevented_matches(symbol="BTCUSDT", orderId=1) == []
    assert await client.get_prevented_matches(symbol="BTCUSDT", preventedMatchId=1) == []
    assert await weight_of(client, lambda: client.get_prevented_matches(symbol="BTCUSDT", orderId=1)) == 20
    assert await weight_of(client, lambda: client.get_prevented_matches(symbol="BTCUSDT",
                                                                         preventedMatchId=1)) == 2
    assert await code_of(lambda: client.get_prevented_matches(symbol="BTCUSDT")) == -1128


def test_prevented_match_fixture_keys_are_what_the_sim_would_send() -> None:
    # The sim never prevents a self-trade (every fill is against the market), so the list is
    # always empty; the documented row shape is kept for when it is not.
    assert set(FX["myPreventedMatches"][0]) == {
        "symbol", "preventedMatchId", "takerOrderId", "makerSymbol", "makerOrderId", "tradeGroupId",
        "selfTradePreventionMode", "price", "makerPreventedQuantity", "transactTime"}
