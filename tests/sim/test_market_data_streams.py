"""Market-data streams on the spot stream host: trade, aggTrade, kline (with the closing
``x``), miniTicker, ticker, avgPrice, partial depth and diff depth, over real websockets.
Payload key sets (and order) are those of Binance's documented examples; values agree with
the exchange's tape and book; a local order book kept from ``depth`` plus the diff stream,
the way web-socket-streams.md prescribes, equals the exchange's after 10,000 updates."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
import websockets

from tests.fixtures import load

FX = load()
D = Decimal
pytestmark = pytest.mark.sim_options(book_update_hz=0)


def same_keys(got: dict[str, Any], name: str) -> None:
    want = FX[name]
    assert list(got) == list(want), f"{name}: {list(got)} != {list(want)}"


async def recv_until(ws: Any, predicate: Any, timeout: float = 5.0) -> dict[str, Any]:
    async def loop() -> dict[str, Any]:
        while True:
            msg = json.loads(await ws.recv())
            if predicate(msg):
                return msg
    return await asyncio.wait_for(loop(), timeout)


def ticks(sim: Any, n: int) -> None:
    for _ in range(n):
        sim.exchange.market.tick()


async def test_trade_and_agg_trade_streams_follow_the_tape(sim: Any) -> None:
    url = sim.urls.spot_stream + "stream?streams=btcusdt@trade/btcusdt@aggTrade"
    async with websockets.connect(url) as ws:
        await recv_until_registered(sim)
        ticks(sim, 100)
        tape = sim.exchange.tape
        want_trades = len(tape.recent("BTCUSDT", 1000))
        want_aggs = len(tape.agg_trades("BTCUSDT", limit=1000))
        trades: list[dict[str, Any]] = []
        aggs: list[dict[str, Any]] = []

        def collect(msg: dict[str, Any]) -> bool:
            (trades if msg["stream"].endswith("@trade") else aggs).append(msg["data"])
            return len(trades) == want_trades and len(aggs) == want_aggs

        await recv_until(ws, collect)
    same_keys(trades[0], "stream_trade")
    same_keys(aggs[0], "stream_aggTrade")
    rows = tape.recent("BTCUSDT", 1000)
    assert [t["t"] for t in trades] == [r.id for r in rows]
    assert all(D(t["p"]) == r.price and D(t["q"]) == r.qty and t["m"] is r.buyer_maker
               for t, r in zip(trades, rows, strict=True))
    by_id = {r.id: r for r in rows}
    for a in aggs:
        assert D(a["q"]) == sum(by_id[i].qty for i in range(a["f"], a["l"] + 1))
    assert aggs[0]["f"] == rows[0].id and aggs[-1]["l"] == rows[-1].id


async def recv_until_registered(sim: Any, stream: str | None = None, timeout: float = 5.0) -> None:
    """Wait until the stream host has attached our connection (listening to ``stream``)."""
    feed = sim.exchange.feed

    async def loop() -> None:
        while not (feed.is_subscribed(stream) if stream else feed.subscriber_count):
            await asyncio.sleep(0.005)
    await asyncio.wait_for(loop(), timeout)


async def test_kline_stream_updates_then_closes_with_x(sim: Any) -> None:
    ex = sim.exchange
    async with websockets.connect(sim.urls.spot_stream + "ws/btcusdt@kline_1s") as ws:
        await recv_until_registered(sim)
        # The open 1 s candle is pushed once a second, by the pusher's first round in that
        # second (``MarketFeed.push``): trades show in an update of a still-open candle only
        # if they come before that round. So the exchange clock is moved to 1 ms into the
        # next second and the trades made at once (the sim runs on this event loop: nothing
        # runs in between); the round then has ~999 ms of wall time to come. Trading at
        # whatever point of a second the test reached passed only when the trades happened
        # to precede that second's round, and retries two seconds apart kept the same phase.
        first: dict[str, Any] | None = None
        for _ in range(3):
            ex.clock.advance(1000 - ex.clock.now_ms() % 1000 + 1)
            ticks(sim, 60)
            try:
                first = await recv_until(ws, lambda m: m["e"] == "kline" and m["k"]["n"] > 0
                                         and not m["k"]["x"], timeout=2.0)
                break
            except TimeoutError:
                continue
        assert first is not None, "no kline update with trades"
        same_keys(first, "stream_kline")
        assert list(first["k"]) == list(FX["stream_kline"]["k"])
        k = first["k"]
        assert k["x"] is False and k["i"] == "1s" and k["T"] == k["t"] + 999
        ex.clock.advance(1500)                       # the candle ends
        closed = await recv_until(ws, lambda m: m["k"]["t"] == k["t"] and m["k"]["x"])
    rows = ex.tape.candles("BTCUSDT", "1s", start=k["t"], end=k["t"], limit=1)
    c = closed["k"]
    assert c["n"] == rows[0].count and D(c["v"]) == rows[0].volume and D(c["c"]) == rows[0].close
    assert c["f"] == rows[0].first_id and c["L"] == rows[0].last_id


async def test_kline_stream_in_a_time_zone(sim: Any) -> None:
    async with websockets.connect(sim.urls.spot_stream + "ws/btcusdt@kline_1d@+08:00") as ws:
        await recv_until_registered(sim)
        ticks(sim, 30)
        msg = await recv_until(ws, lambda m: m["e"] == "kline" and m["k"]["n"] > 0)
    assert msg["k"]["t"] % 86_400_000 == 16 * 3_600_000      # the +08:00 day starts at 16:00 UTC


async def test_tickers_and_avg_price_streams(sim: Any, client: Any) -> None:
    names = "btcusdt@miniTicker/btcusdt@ticker/btcusdt@avgPrice"
    async with websockets.connect(sim.urls.spot_stream + "stream?streams=" + names) as ws:
        await recv_until_registered(sim)
        ticks(sim, 80)
        tape = sim.exchange.tape.recent("BTCUSDT", 1000)
        volume = sum(t.qty for t in tape)
        got: dict[str, dict[str, Any]] = {}

        def collect(msg: dict[str, Any]) -> bool:
            # Frames pushed before the trades above may still be in flight: wait for current ones.
            got[msg["stream"].split("@")[1]] = msg["data"]
            return len(got) == 3 and got["ticker"]["n"] == len(tape) and \
                D(got["miniTicker"]["v"]) == volume and got["avgPrice"]["T"] == tape[-1].time
        await recv_until(ws, collect)
    same_keys(got["miniTicker"], "stream_miniTicker")
    same_keys(got["ticker"], "stream_ticker")
    same_keys(got["avgPrice"], "stream_avgPrice")
    rest = await client.get_ticker(symbol="BTCUSDT")
    t = got["ticker"]
    assert (t["c"], t["o"], t["h"], t["l"], t["v"], t["n"]) == (rest["lastPrice"], rest["openPrice"],
                                                               rest["highPrice"], rest["lowPrice"],
                                                               rest["volume"], rest["count"])
    assert got["miniTicker"]["q"] == rest["quoteVolume"]
    assert got["avgPrice"]["w"] == (await client.get_avg_price(symbol="BTCUSDT"))["price"]


@pytest.mark.sim_options(book_update_hz=0, time_scale=5)
async def test_partial_depth_and_1000ms_diff_depth_streams(sim: Any) -> None:
    url = sim.urls.spot_stream + "stream?streams=btcusdt@depth5@100ms/btcusdt@depth"
    async with websockets.connect(url) as ws:
        await recv_until_registered(sim)
        ticks(sim, 3)
        got: dict[str, dict[str, Any]] = {}

        def both(m: dict[str, Any]) -> bool:
            got.setdefault(m["stream"], m["data"])      # the first frame of each stream
            return len(got) == 2
        await recv_until(ws, both)
        msg, first = got["btcusdt@depth5@100ms"], got["btcusdt@depth"]
        ticks(sim, 2)
        second = (await recv_until(ws, lambda m: m["stream"] == "btcusdt@depth"))["data"]
    same_keys(first, "stream_depthUpdate")
    assert first["e"] == "depthUpdate" and first["s"] == "BTCUSDT" and first["U"] <= first["u"]
    assert second["U"] == first["u"] + 1 and second["u"] == sim.exchange.market.book("BTCUSDT").u
    same_keys(msg, "stream_depth_partial")
    prices = [D(p) for p, _ in msg["bids"]]
    assert prices == sorted(prices, reverse=True) and 1 <= len(prices) <= 5
    assert [D(p) for p, _ in msg["asks"]] == sorted(D(p) for p, _ in msg["asks"])


@pytest.mark.sim_options(book_update_hz=0, time_scale=10, symbols=("BTCUSDT",))
async def test_local_book_from_diff_stream_equals_the_exchange_after_10000_updates(sim: Any,
                                                                                   client: Any) -> None:
    ex = sim.exchange
    buffered: list[dict[str, Any]] = []
    local_u = -1
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}
    synced = False

    def apply(event: dict[str, Any]) -> None:
        nonlocal local_u
        if event["u"] < local_u:
            return
        assert event["U"] <= local_u + 1, f"gap: U {event['U']} after {local_u}"
        for side, rows in ((bids, event["b"]), (asks, event["a"])):
            for p, q in rows:
                if D(q) == 0:
                    side.pop(D(p), None)
                else:
                    side[D(p)] = D(q)
        local_u = event["u"]

    async with websockets.connect(sim.urls.spot_stream + "ws/btcusdt@depth@100ms") as ws:
        await recv_until_registered(sim)

        async def reader() -> None:
            nonlocal synced
            async for raw in ws:
                event = json.loads(raw)
                if synced:
                    apply(event)
                else:
                    buffered.append(event)

        task = asyncio.create_task(reader())
        ticks(sim, 5)
        await asyncio.wait_for(_until(lambda: bool(buffered)), 5)
        # The documented procedure: snapshot, drop buffered events it already covers, apply the rest.
        snap = await client.get_order_book(symbol="BTCUSDT", limit=5000)
        assert snap["lastUpdateId"] >= buffered[0]["U"]
        local_u = snap["lastUpdateId"]
        bids.update({D(p): D(q) for p, q in snap["bids"]})
        asks.update({D(p): D(q) for p, q in snap["asks"]})
        pending = [e for e in buffered if e["u"] > local_u]
        if pending:
            assert pending[0]["U"] <= local_u + 1 <= pending[0]["u"]
        for event in pending:
            apply(event)
        synced = True
        start_u = ex.market.book("BTCUSDT").u
        for i in range(10_000):
            ex.market.tick()
            if i % 2000 == 0:
                # An order of ours takes liquidity too: the book changes between market updates.
                await client.order_market_buy(symbol="BTCUSDT", quantity="0.001")
            elif i % 250 == 0:
                await asyncio.sleep(0)
        final_u = ex.market.book("BTCUSDT").u
        assert final_u - start_u >= 10_000
        await asyncio.wait_for(_until(lambda: local_u == final_u), 10)
        task.cancel()
    snap = await client.get_order_book(symbol="BTCUSDT", limit=5000)
    assert snap["lastUpdateId"] == local_u
    assert [[f"{p:.8f}", f"{q:.8f}"] for p, q in sorted(bids.items(), reverse=True)] == snap["bids"]
    assert [[f"{p:.8f}", f"{q:.8f}"] for p, q in sorted(asks.items())] == snap["asks"]


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.005)


@pytest.mark.sim_options(book_update_hz=0, time_scale=10)
async def test_subscribe_control_message_starts_diff_depth_and_trades(sim: Any) -> None:
    async with websockets.connect(sim.urls.spot_stream + "ws") as ws:
        await recv_until_registered(sim)
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@depth@100ms", "ethusdt@trade"],
                                  "id": 1}))
        assert await recv_until(ws, lambda m: m.get("id") == 1) == {"result": None, "id": 1}
        start_u = sim.exchange.market.book("ETHUSDT").u
        ticks(sim, 40)
        first: dict[str, dict[str, Any]] = {}

        def both(m: dict[str, Any]) -> bool:
            first.setdefault(m.get("e", ""), m)
            return "depthUpdate" in first and "trade" in first
        await recv_until(ws, both)
        event, trade = first["depthUpdate"], first["trade"]
    assert event["s"] == "ETHUSDT" and event["U"] == start_u + 1
    assert trade["s"] == "ETHUSDT"


async def test_python_binance_socket_manager_reads_the_new_streams(sim: Any, client: Any) -> None:
    from binance import BinanceSocketManager

    from executor.venue.endpoints import apply_to_socket_manager

    bsm = BinanceSocketManager(client)
    apply_to_socket_manager(bsm, sim.endpoints)
    async with bsm.kline_socket("BTCUSDT", interval="1m") as stream:
        await recv_until_registered(sim, "btcusdt@kline_1m")
        ticks(sim, 40)
        msg = await asyncio.wait_for(stream.recv(), 5)
    assert msg["e"] == "kline" and msg["k"]["i"] == "1m"
    async with bsm.aggtrade_socket("BTCUSDT") as stream:
        await recv_until_registered(sim, "btcusdt@aggTrade")
        ticks(sim, 40)
        msg = await asyncio.wait_for(stream.recv(), 5)
    assert msg["e"] == "aggTrade" and msg["s"] == "BTCUSDT"
    async with bsm.depth_socket("BTCUSDT", depth="5") as stream:
        await recv_until_registered(sim, "btcusdt@depth5")
        msg = await asyncio.wait_for(stream.recv(), 5)
    assert set(msg) == {"lastUpdateId", "bids", "asks"}
