"""Spot market streams: bookTicker frames, combined wrapper, control methods, connection rules."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import websockets
from binance import BinanceSocketManager

from executor.venue.endpoints import apply_to_socket_manager
from tests.conftest import start_sim

TICKER_KEYS = {"u", "s", "b", "B", "a", "A"}


def check_ticker(payload: dict[str, Any], symbol: str) -> None:
    assert set(payload) == TICKER_KEYS
    assert payload["s"] == symbol and isinstance(payload["u"], int)
    for key in ("b", "B", "a", "A"):
        assert isinstance(payload[key], str)
    assert float(payload["a"]) > float(payload["b"])


async def recv_json(ws: Any, timeout: float = 3.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def test_raw_stream_with_plain_websockets(sim: Any) -> None:
    async with websockets.connect(sim.urls.spot_stream + "ws/btcusdt@bookTicker") as ws:
        frames = [await recv_json(ws) for _ in range(3)]
    for frame in frames:
        check_ticker(frame, "BTCUSDT")
    assert [f["u"] - frames[0]["u"] for f in frames] == [0, 1, 2]   # continuity: +1 per update


async def test_combined_stream_wrapper(sim: Any) -> None:
    url = sim.urls.spot_stream + "stream?streams=btcusdt@bookTicker/ethusdt@bookTicker"
    seen: set[str] = set()
    async with websockets.connect(url) as ws:
        while seen != {"btcusdt@bookTicker", "ethusdt@bookTicker"}:
            frame = await recv_json(ws)
            assert set(frame) == {"stream", "data"}
            check_ticker(frame["data"], frame["stream"].split("@")[0].upper())
            seen.add(frame["stream"])


async def test_subscribe_list_unsubscribe(sim: Any) -> None:
    async with websockets.connect(sim.urls.spot_stream + "ws") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@bookTicker"], "id": 1}))
        assert await recv_json(ws) == {"result": None, "id": 1}
        check_ticker(await recv_json(ws), "ETHUSDT")
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        while (reply := await recv_json(ws)).get("id") != 2:
            pass
        assert reply == {"result": ["ethusdt@bookTicker"], "id": 2}
        await ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["ethusdt@bookTicker"], "id": 3}))
        while (reply := await recv_json(ws)).get("id") != 3:
            pass
        assert reply == {"result": None, "id": 3}
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 4}))
        assert await recv_json(ws) == {"result": [], "id": 4}


async def test_bad_requests_get_binance_error_replies(sim: Any) -> None:
    async with websockets.connect(sim.urls.spot_stream + "ws") as ws:
        await ws.send("{not json")
        reply = await recv_json(ws)
        assert reply["error"]["code"] == 3 and reply["error"]["msg"].startswith("Invalid JSON")
        await ws.send(json.dumps({"method": "SUBSCRIBX", "params": [], "id": 1}))
        reply = await recv_json(ws)
        assert reply["error"]["code"] == 2 and "unknown variant" in reply["error"]["msg"] and reply["id"] == 1
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["x"], "id": -1}))
        assert (await recv_json(ws))["error"] == {
            "code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}
        await ws.send(json.dumps({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 2}))
        assert (await recv_json(ws))["error"] == {"code": 1, "msg": "Invalid value type: expected Boolean"}


async def test_set_property_combined_switches_to_wrapper(sim: Any) -> None:
    async with websockets.connect(sim.urls.spot_stream + "ws") as ws:
        await ws.send(json.dumps({"method": "SET_PROPERTY", "params": ["combined", True], "id": 1}))
        assert await recv_json(ws) == {"result": None, "id": 1}
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 2}))
        assert await recv_json(ws) == {"result": None, "id": 2}
        frame = await recv_json(ws)
        assert frame["stream"] == "btcusdt@bookTicker"
        check_ticker(frame["data"], "BTCUSDT")


async def test_python_binance_socket_manager(sim: Any, client: Any) -> None:
    bsm = BinanceSocketManager(client)
    apply_to_socket_manager(bsm, sim.endpoints)
    async with bsm.symbol_book_ticker_socket("BTCUSDT") as stream:
        msg = await asyncio.wait_for(stream.recv(), 5)
    check_ticker(msg, "BTCUSDT")
    async with bsm.multiplex_socket(["btcusdt@bookTicker", "ethusdt@bookTicker"]) as stream:
        msg = await asyncio.wait_for(stream.recv(), 5)
    assert set(msg) == {"stream", "data"}
    check_ticker(msg["data"], msg["stream"].split("@")[0].upper())


async def test_forced_book_is_published(sim: Any) -> None:
    async with websockets.connect(sim.urls.spot_stream + "ws/ethusdt@bookTicker") as ws:
        await recv_json(ws)
        sim.exchange.market.set_book("ETHUSDT", bid="2999.50", ask="2999.60", bid_qty="1.5", ask_qty="2")
        while (frame := await recv_json(ws))["b"] != "2999.50000000":
            pass
    assert frame["a"] == "2999.60000000" and frame["B"] == "1.50000000" and frame["A"] == "2.00000000"


async def test_taken_liquidity_shows_in_the_next_frame(sim: Any, client: Any) -> None:
    sim.exchange.market.set_book("ETHUSDT", bid="2999.50", ask="2999.60", ask_qty="2")
    async with websockets.connect(sim.urls.spot_stream + "ws/ethusdt@bookTicker") as ws:
        await client.order_market_buy(symbol="ETHUSDT", quantity="0.5")
        frame = await recv_json(ws)
        assert (frame["a"], frame["A"]) == ("2999.60000000", "1.50000000")
        await client.order_market_buy(symbol="ETHUSDT", quantity="1.5")
        nxt = await recv_json(ws)
        assert nxt["u"] == frame["u"] + 1
        assert Decimal(nxt["a"]) > Decimal("2999.60")     # the top level is gone: next level shows


async def test_server_shutdown_event_then_close(sim: Any) -> None:
    async with websockets.connect(sim.urls.spot_stream + "ws/btcusdt@bookTicker") as ws:
        await recv_json(ws)
        assert sim.exchange.faults.connections.count("market") == 1
        await sim.exchange.faults.connections.shutdown("market")
        frames = []
        try:
            while True:
                frames.append(await recv_json(ws))
        except websockets.ConnectionClosed:
            pass
    shutdown = [f for f in frames if f.get("e") == "serverShutdown"]
    assert len(shutdown) == 1 and set(shutdown[0]) == {"e", "E"}
    assert frames[-1] is shutdown[0]


async def test_server_shutdown_on_combined_stream_is_wrapped(sim: Any) -> None:
    async with websockets.connect(sim.urls.spot_stream + "stream?streams=btcusdt@bookTicker") as ws:
        await recv_json(ws)
        await sim.exchange.faults.connections.shutdown("market")
        frames = []
        try:
            while True:
                frames.append(await recv_json(ws))
        except websockets.ConnectionClosed:
            pass
    assert frames[-1]["stream"] == "!serverShutdown" and frames[-1]["data"]["e"] == "serverShutdown"


async def test_max_connection_age_on_the_sim_clock(sim: Any) -> None:
    async with websockets.connect(sim.urls.spot_stream + "ws/btcusdt@bookTicker") as ws:
        await recv_json(ws)
        sim.exchange.clock.advance(86_400_000 + 1000)
        closed = asyncio.Event()

        async def drain() -> None:
            try:
                while True:
                    await ws.recv()
            except websockets.ConnectionClosed:
                closed.set()

        await asyncio.wait_for(drain(), 3)
    assert closed.is_set()


@pytest.mark.sim_options(time_scale=0.000001)   # the sim second cannot roll over mid-test
async def test_more_than_five_messages_per_second_disconnects(sim: Any) -> None:
    async with websockets.connect(sim.urls.spot_stream + "ws") as ws:
        for i in range(7):
            try:
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
            except websockets.ConnectionClosed:
                break
        replies = []
        try:
            while True:
                replies.append(await recv_json(ws))
        except websockets.ConnectionClosed as exc:
            assert exc.rcvd is not None and exc.rcvd.code == 1008
        assert len(replies) == 5


async def test_server_pings_every_20_sim_seconds() -> None:
    from executor.sim.exchange import SimExchange

    handle = await start_sim(SimExchange.for_tests(time_scale=100))
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(
            handle.urls.spot_stream + "ws/btcusdt@bookTicker", autoping=False
        ) as ws:
            while (msg := await asyncio.wait_for(ws.receive(), 3)).type != aiohttp.WSMsgType.PING:
                pass
            await ws.pong(msg.data)
    finally:
        await handle.server.stop()


async def test_too_many_streams_rejected(sim: Any) -> None:
    async with websockets.connect(sim.urls.spot_stream + "ws") as ws:
        names = [f"s{i}usdt@bookTicker" for i in range(1025)]
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": names, "id": 1}))
        reply = await recv_json(ws)
        assert reply["error"]["code"] == 2 and reply["id"] == 1
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": names[:1024], "id": 2}))
        assert await recv_json(ws) == {"result": None, "id": 2}


async def test_stalled_market_socket_stays_open_but_silent(sim: Any) -> None:
    url = sim.urls.spot_stream + "ws/btcusdt@bookTicker"
    async with websockets.connect(url) as stalled, websockets.connect(url) as healthy:
        await recv_json(stalled)
        await recv_json(healthy)
        assert sim.exchange.faults.connections.stall("market") == 2
        async with websockets.connect(url) as fresh:   # opened after the stall: not stalled
            # Drain what was already on the wire, then publish and expect nothing more.
            for _ in range(50):                            # a live feed would never go quiet
                try:
                    await recv_json(stalled, timeout=0.2)
                except TimeoutError:
                    break
            else:
                pytest.fail("the stalled socket kept delivering frames")
            sim.exchange.market.set_book("BTCUSDT", bid=Decimal("50000"), ask=Decimal("50000.5"))
            frame = await recv_json(fresh)
            while Decimal(frame["b"]) != Decimal("50000"):
                frame = await recv_json(fresh)
            with pytest.raises(TimeoutError):
                while True:
                    if Decimal((await recv_json(stalled, timeout=0.3))["b"]) == Decimal("50000"):
                        break
            pong = await stalled.ping()
            await asyncio.wait_for(pong, 2)             # the socket itself is alive
