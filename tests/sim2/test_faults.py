"""Every fault the sim can inject, and what a client observes when it does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import websockets
from binance.exceptions import BinanceAPIException

from tests.conftest import wait_for
from tests.sim2.conftest import WsApi, expect_closed, expect_silence, recv_json, recv_until, signed

Opener = Callable[[Any], Awaitable[tuple[Any, Callable[[Any], bool]]]]


@asynccontextmanager
async def open_kind(sim: Any, client: Any, kind: str) -> AsyncIterator[Any]:
    """An open plain-websockets connection of ``kind``, registered with the sim."""
    urls = sim.urls
    if kind == "market":
        url = urls.spot_stream + "stream?streams=btcusdt@bookTicker"
    elif kind == "ws_api":
        url = urls.spot_ws_api
    elif kind == "futures_market":
        url = urls.futures_stream + "market/stream?streams=btcusdt@markPrice@1s"
    else:
        url = urls.futures_stream + "private/ws/" + await client.futures_stream_get_listen_key()
    async with websockets.connect(url) as ws:
        await wait_for(lambda: sim.exchange.faults.connections.count(kind) == 1, 5)
        yield ws


def _shutdown_frame(kind: str, msg: dict[str, Any]) -> bool:
    if kind == "ws_api":
        return msg.get("event", {}).get("e") == "serverShutdown" and "subscriptionId" not in msg
    if kind in ("market", "futures_market"):           # combined streams
        return msg.get("stream") == "!serverShutdown" and msg["data"]["e"] == "serverShutdown"
    return msg.get("e") == "serverShutdown"


KINDS = ["market", "ws_api", "futures_market", "private"]


@pytest.mark.parametrize("kind", KINDS)
async def test_drop_cuts_the_socket(sim: Any, client: Any, kind: str) -> None:
    async with open_kind(sim, client, kind) as ws:
        assert await sim.exchange.faults.connections.drop(kind) == 1
        await expect_closed(ws)
        assert ws.close_code != 1000        # no clean close handshake: a network drop
    await wait_for(lambda: sim.exchange.faults.connections.count(kind) == 0, 5)


@pytest.mark.parametrize("kind", KINDS)
async def test_server_shutdown_then_close(sim: Any, client: Any, kind: str) -> None:
    async with open_kind(sim, client, kind) as ws:
        assert await sim.exchange.faults.connections.shutdown(kind) == 1
        await recv_until(ws, lambda m: _shutdown_frame(kind, m))
        await expect_closed(ws)
        assert ws.close_code == 1000


async def test_stall_ws_api_subscription_stays_open_but_silent(sim: Any) -> None:
    ex = sim.exchange
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        await api.call("userDataStream.subscribe.signature",
                       signed(sim.creds, {"timestamp": ex.clock.now_ms()}))
        assert ex.faults.connections.stall("ws_api", account="default") == 1
        ex.engine.adjust_balance(ex.default_account, "USDT", Decimal("7"))
        status = await api.call("session.status")          # the socket still answers...
        assert status["result"]["userDataStream"] is True
        assert api.events == []                             # ...but delivered no event
        ex.faults.connections.unstall()
        ex.engine.adjust_balance(ex.default_account, "USDT", Decimal("8"))
        event = await api.next_event()
        assert event["event"]["e"] == "balanceUpdate" and event["event"]["d"] == "8.00000000"


async def test_stall_private_stream(sim: Any, client: Any) -> None:
    ex = sim.exchange
    async with open_kind(sim, client, "private") as ws:
        ex.faults.connections.stall("private")
        ex.futures.transfer("default", "USDT", Decimal("1"))
        ex.faults.connections.unstall("private")
        ex.futures.transfer("default", "USDT", Decimal("2"))
        first = await recv_json(ws)
        assert first["a"]["B"][0]["bc"] == "2.00000000"      # the stalled update never came


async def test_expire_listen_key_now_via_admin(sim: Any, client: Any) -> None:
    async with open_kind(sim, client, "private") as ws, aiohttp.ClientSession() as http:
        async with http.post(sim.urls.admin + "/faults/expire-listen-key", json={"account": "default"}) as r:
            assert r.status == 200 and len((await r.json())["expired"]) == 1
        msg = await recv_json(ws)
        assert set(msg) == {"e", "E", "listenKey"} and msg["e"] == "listenKeyExpired"
        await expect_silence(ws)
    with pytest.raises(BinanceAPIException) as err:
        await client.futures_stream_keepalive(msg["listenKey"])
    assert err.value.code == -1125


async def test_order_503_after_placing_leaves_the_order(sim: Any, client: Any) -> None:
    sim.exchange.faults.fail_orders(1, http_status=503, placed=True)
    with pytest.raises(BinanceAPIException) as err:
        await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                  quantity="0.001", price="50000", newClientOrderId="unk-1")
    assert err.value.status_code == 503
    order = await client.get_order(symbol="BTCUSDT", origClientOrderId="unk-1")
    assert order["status"] == "NEW"


async def test_order_minus_1007_without_placing(sim: Any, client: Any) -> None:
    sim.exchange.faults.fail_orders(1, http_status=503, code=-1007, placed=False)
    with pytest.raises(BinanceAPIException) as err:
        await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                  quantity="0.001", price="50000", newClientOrderId="unk-2")
    assert err.value.code == -1007
    with pytest.raises(BinanceAPIException) as missing:
        await client.get_order(symbol="BTCUSDT", origClientOrderId="unk-2")
    assert missing.value.code == -2013
    # Only the next N requests fail.
    ok = await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                   quantity="0.001", price="50000", newClientOrderId="unk-2")
    assert ok["clientOrderId"] == "unk-2"


async def test_order_failure_via_admin_route(sim: Any, client: Any) -> None:
    async with aiohttp.ClientSession() as http:
        body = {"count": 2, "status": 503, "code": -1007, "placed": True}
        async with http.post(sim.urls.admin + "/faults/orders", json=body) as r:
            assert (await r.json()) == {"pending": 2}
        async with http.post(sim.urls.admin + "/faults/orders", json={"count": 1, "status": 400}) as r:
            assert r.status == 400                 # a 4xx failure must say which code
    for n in range(2):
        with pytest.raises(BinanceAPIException) as err:
            await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                      quantity="0.001", price="50000", newClientOrderId=f"adm-{n}")
        assert (err.value.status_code, err.value.code) == (503, -1007)
    assert len(await client.get_open_orders(symbol="BTCUSDT")) == 2


async def test_hold_response_past_client_timeout(sim: Any) -> None:
    from binance import AsyncClient

    from executor.venue.endpoints import apply_to_client

    client = AsyncClient(sim.creds.api_key, sim.creds.api_secret, requests_params={"timeout": 0.3})
    apply_to_client(client, sim.endpoints)
    try:
        sim.exchange.faults.hold(1, 1.0)
        with pytest.raises(asyncio.TimeoutError):
            await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                      quantity="0.001", price="50000", newClientOrderId="held-1")
        # The request took effect although its answer never reached the client.
        found = sim.exchange.engine.find_order("default", "BTCUSDT", None, "held-1")
        assert found is not None and found.status == "NEW"
    finally:
        await client.close_connection()


async def test_a_hold_on_a_path_holds_only_that_path(sim: Any) -> None:
    """``hold(n, s, path=...)``: only responses under ``path`` wait (here a futures one),
    a spot response passes and leaves the hold armed; without a path, spot REST is held."""
    faults = sim.exchange.faults
    faults.hold(1, 0.4, path="/fapi/v1/time")
    async with aiohttp.ClientSession() as http:
        async with http.get(sim.urls.spot_rest + "/v3/time") as r:
            assert r.status == 200
        assert faults.hold_responses == 1
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with http.get(sim.urls.futures_rest + "/v1/time") as r:
            assert r.status == 200 and "serverTime" in await r.json()
        assert loop.time() - began >= 0.4 and faults.hold_responses == 0


async def test_burst_of_429s(sim: Any, client: Any) -> None:
    async with aiohttp.ClientSession() as http, \
            http.post(sim.urls.admin + "/faults/429", json={"count": 1}) as r:
        assert r.status == 200
    with pytest.raises(BinanceAPIException) as err:
        await client.get_account()
    assert err.value.status_code == 429 and err.value.response.headers.get("Retry-After")


async def test_clock_skew(sim: Any, client: Any) -> None:
    sim.exchange.faults.skew_clock(30_000)
    with pytest.raises(BinanceAPIException) as err:
        await client.get_account()
    assert err.value.code == -1021
    assert (await client.get_server_time())["serverTime"] - sim.exchange.clock.now_ms() < 1000
    sim.exchange.faults.skew_clock(0)
    assert "balances" in await client.get_account()


async def test_duplicate_user_events(sim: Any) -> None:
    ex = sim.exchange
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        await api.call("userDataStream.subscribe.signature",
                       signed(sim.creds, {"timestamp": ex.clock.now_ms()}))
        ex.faults.duplicate_events(1, channel="spot")
        ex.engine.adjust_balance(ex.default_account, "USDT", Decimal("4"))
        frames = [await api.next_event() for _ in range(3)]
    assert [f["event"]["e"] for f in frames] == ["balanceUpdate", "balanceUpdate", "outboundAccountPosition"]
    assert frames[0] == frames[1]


async def test_reorder_user_events(sim: Any, client: Any) -> None:
    ex = sim.exchange
    async with open_kind(sim, client, "private") as ws:
        ex.faults.reorder_events(1, channel="futures")
        for amount in ("1", "2", "3"):
            ex.futures.transfer("default", "USDT", Decimal(amount))
        got = [(await recv_json(ws))["a"]["B"][0]["bc"] for _ in range(3)]
    assert got == ["2.00000000", "1.00000000", "3.00000000"]


async def test_delay_user_events(sim: Any) -> None:
    ex = sim.exchange
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        await api.call("userDataStream.subscribe.signature",
                       signed(sim.creds, {"timestamp": ex.clock.now_ms()}))
        ex.faults.delay_events(1, delay_ms=60_000, channel="spot")
        ex.engine.adjust_balance(ex.default_account, "USDT", Decimal("5"))   # balanceUpdate held
        first = await api.next_event()
        assert first["event"]["e"] == "outboundAccountPosition"
        held_since = ex.clock.now_ms()
        ex.clock.advance(60_000)
        late = await api.next_event()
        assert late["event"]["e"] == "balanceUpdate" and late["event"]["E"] <= held_since
        assert ex.clock.now_ms() - late["event"]["E"] >= 60_000


async def test_flush_and_reset_release_held_events(sim: Any) -> None:
    ex = sim.exchange
    got: list[dict[str, Any]] = []
    ex.bus.subscribe("default", "spot", got.append)
    ex.faults.delay_events(5, delay_ms=10**9)
    ex.faults.connections.stall("ws_api")
    ex.engine.adjust_balance(ex.default_account, "USDT", Decimal("1"))
    assert got == []
    ex.faults.reset()
    assert [e["e"] for e in got] == ["balanceUpdate", "outboundAccountPosition"]
    assert ex.faults.events.delay == 0 and ex.clock.skew_ms == 0


async def test_admin_switches(sim: Any, client: Any) -> None:
    admin = sim.urls.admin
    async with aiohttp.ClientSession() as http, websockets.connect(sim.urls.spot_ws_api) as ws:
        await wait_for(lambda: sim.exchange.faults.connections.count("ws_api") == 1, 5)
        calls = [("stall", {"kind": "ws_api"}, {"stalled": 1}), ("unstall", {}, {}),
                 ("events", {"duplicate": 2, "channel": "spot"}, None),
                 ("skew", {"ms": 1500}, {"skewMs": 1500}),
                 ("hold", {"count": 1, "seconds": 0.01}, {}), ("reset", {}, {})]
        for path, body, expected in calls:
            async with http.post(f"{admin}/faults/{path}", json=body) as r:
                assert r.status == 200, (path, await r.text())
                if expected is not None:
                    assert await r.json() == expected
        async with http.get(f"{admin}/faults/state") as r:
            state = await r.json()
        assert state["connections"]["ws_api"] == 1 and state["skewMs"] == 0
        async with http.post(f"{admin}/faults/stall", json={"kind": "nope"}) as r:
            assert r.status == 400
        async with http.post(f"{admin}/faults/shutdown", json={"kind": "ws_api"}) as r:
            assert await r.json() == {"closed": 1}
        msg = json.loads(await ws.recv())
        assert msg["event"]["e"] == "serverShutdown"


async def test_admin_futures_transfer_from_spot(sim: Any, client: Any) -> None:
    ex = sim.exchange
    spot_events: list[dict[str, Any]] = []
    fut_events: list[dict[str, Any]] = []
    ex.bus.subscribe("default", "spot", spot_events.append)
    ex.bus.subscribe("default", "futures", fut_events.append)
    async with aiohttp.ClientSession() as http:
        body = {"asset": "USDT", "amount": "100", "fromSpot": True}
        async with http.post(sim.urls.admin + "/futures/transfer", json=body) as r:
            assert r.status == 200
        too_much = {"asset": "USDT", "amount": "-1e9"}
        async with http.post(sim.urls.admin + "/futures/transfer", json=too_much) as r:
            assert r.status == 400
    assert [e["e"] for e in spot_events] == ["balanceUpdate", "outboundAccountPosition"]
    assert spot_events[0]["d"] == "-100.00000000"
    assert fut_events[0]["a"]["m"] == "DEPOSIT"
    assert (await client.futures_account())["totalWalletBalance"] == "10100.00000000"


async def test_ws_api_drop_leaves_python_binance_user_socket_silent(sim: Any, client: Any, bsm: Any) -> None:
    """The python-binance 1.0.37 trap the bot must cover: after a ws-api drop its user socket
    reports errors, reconnects the socket, does not resubscribe, and stays silent."""
    from tests.sim2.conftest import close_quickly

    ex = sim.exchange
    sock = bsm.user_socket()
    await sock.__aenter__()
    await ex.faults.connections.drop("ws_api")
    error = await asyncio.wait_for(sock.recv(), 5)
    assert error["e"] == "error"
    await wait_for(lambda: ex.faults.connections.count("ws_api") == 1, 10)   # it reconnected...
    await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                              quantity="0.001", price="50000")
    seen = []
    with pytest.raises(asyncio.TimeoutError):                                # ...without a subscription
        while True:
            seen.append(await asyncio.wait_for(sock._queue.get(), 0.3))
    assert all(m["e"] == "error" for m in seen)
    await close_quickly(sim, "ws_api", client.ws_api, client.close_connection())


async def test_late_order_answer_lost_and_invisible_until_it_arrives(sim: Any, client: Any) -> None:
    """Accepted, the connection cut before an answer, and nothing on the exchange knows the
    order (GET order, openOrders, allOrders, the user stream) until ``delayMs`` later."""
    events: list[dict[str, Any]] = []
    unsubscribe = sim.exchange.bus.subscribe("default", "spot", events.append)
    async with aiohttp.ClientSession() as http:
        async with http.post(sim.urls.admin + "/faults/late-orders", json={"count": 1, "delayMs": 800}) as r:
            assert (await r.json()) == {"pending": 1}
        async with http.post(sim.urls.admin + "/faults/late-orders", json={"count": 1, "delayMs": 5,
                                                                          "status": 400}) as r:
            assert r.status == 400
    started = sim.exchange.clock.now_ms()
    with pytest.raises(aiohttp.ClientConnectionError):  # the answer is lost: a dropped connection
        await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                  quantity="0.001", price="50000", newClientOrderId="late-1")
    with pytest.raises(BinanceAPIException) as missing:
        await client.get_order(symbol="BTCUSDT", origClientOrderId="late-1")
    assert missing.value.code == -2013
    assert await client.get_open_orders(symbol="BTCUSDT") == []
    assert await client.get_all_orders(symbol="BTCUSDT") == []
    assert not [e for e in events if e.get("c") == "late-1"]
    await wait_for(lambda: sim.exchange.faults.late_placed == 1, 5)
    assert sim.exchange.clock.now_ms() - started >= 800
    order = await client.get_order(symbol="BTCUSDT", origClientOrderId="late-1")
    assert order["status"] == "NEW"
    assert [o["clientOrderId"] for o in await client.get_open_orders(symbol="BTCUSDT")] == ["late-1"]
    assert [o["clientOrderId"] for o in await client.get_all_orders(symbol="BTCUSDT")] == ["late-1"]
    await wait_for(lambda: any(e.get("c") == "late-1" for e in events), 5)
    unsubscribe()
    # A 5xx answer instead of a cut connection, in-process.
    sim.exchange.faults.late_order(1, 0, http_status=503)
    with pytest.raises(BinanceAPIException) as err:
        await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                  quantity="0.001", price="50000", newClientOrderId="late-2")
    assert err.value.status_code == 503
    await wait_for(lambda: sim.exchange.faults.late_placed == 2, 5)
