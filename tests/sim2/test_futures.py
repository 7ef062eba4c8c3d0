"""USDⓈ-M futures: REST, listenKey lifecycle, markPrice streams and the private stream."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal
from typing import Any

import pytest
import websockets
from binance.exceptions import BinanceAPIException

from executor.sim.futures_market import FUNDING_INTERVAL_MS, next_funding_time
from tests.sim2.conftest import FIXTURES, close_quickly, expect_silence, recv_json

HOUR_MS = 3600 * 1000


async def test_market_rest(sim: Any, client: Any) -> None:
    assert await client.futures_ping() == {}
    assert abs((await client.futures_time())["serverTime"] - sim.exchange.clock.now_ms()) < 2000
    info = await client.futures_exchange_info()
    assert {s["symbol"] for s in info["symbols"]} == {"BTCUSDT", "ETHUSDT"}
    row = await client.futures_mark_price(symbol="BTCUSDT")
    # The index is the spot market's fair price: the book's mid without the venue's dislocation.
    fair = sim.exchange.market.index("BTCUSDT")
    assert abs(Decimal(row["indexPrice"]) - fair) < Decimal("0.01")
    assert abs(Decimal(row["markPrice"]) / Decimal(row["indexPrice"]) - 1) < Decimal("0.01")
    assert row["nextFundingTime"] % FUNDING_INTERVAL_MS == 0
    assert len(await client.futures_mark_price()) == 2
    with pytest.raises(BinanceAPIException) as err:
        await client.futures_mark_price(symbol="NOPEUSDT")
    assert err.value.code == -1121


async def test_account_and_balance(sim: Any, client: Any) -> None:
    account = await client.futures_account()
    assert account["totalWalletBalance"] == "10000.00000000"
    balances = await client.futures_account_balance()
    assert [(b["asset"], b["balance"]) for b in balances] == [("USDT", "10000.00000000")]
    sim.exchange.futures.set_position("default", "BTCUSDT", Decimal("0.010"), Decimal("60000"))
    positions = await client.futures_position_information()
    assert [(p["symbol"], p["positionAmt"]) for p in positions] == [("BTCUSDT", "0.010")]


async def test_signed_futures_rest_checks_signature(sim: Any, make_client: Any) -> None:
    from executor.exchange.credentials import Credentials

    wrong = make_client(Credentials(api_key=sim.creds.api_key, api_secret="0" * 64))
    with pytest.raises(BinanceAPIException) as err:
        await wrong.futures_account()
    assert err.value.code == -1022


async def test_listen_key_lifecycle(sim: Any, client: Any) -> None:
    clock = sim.exchange.clock
    key = await client.futures_stream_get_listen_key()
    assert await client.futures_stream_get_listen_key() == key     # POST returns the same key
    clock.advance(50 * 60 * 1000)
    assert await client.futures_stream_keepalive(key) == {"listenKey": key}
    clock.advance(50 * 60 * 1000)                                   # 100 min since POST, 50 since PUT
    assert sim.exchange.futures.listen_keys.account_of(key) == "default"
    clock.advance(11 * 60 * 1000)
    with pytest.raises(BinanceAPIException) as err:
        await client.futures_stream_keepalive(key)
    assert (err.value.code, err.value.message) == (-1125, "This listenKey does not exist.")
    with pytest.raises(BinanceAPIException):
        await client.futures_stream_keepalive("unknownkey")
    fresh = await client.futures_stream_get_listen_key()
    assert fresh != key
    assert await client.futures_stream_close(fresh) == {}
    with pytest.raises(BinanceAPIException):
        await client.futures_stream_keepalive(fresh)


async def test_mark_price_socket_python_binance(sim: Any, bsm: Any) -> None:
    # python-binance 1.0.37 builds <FSTREAM_URL>market/stream?streams=btcusdt@markPrice@1s.
    expected = FIXTURES["markPrice"]
    sim.exchange.clock.set_time_scale(5)
    async with bsm.symbol_mark_price_socket("BTCUSDT") as sock:
        msg = await asyncio.wait_for(sock.recv(), 5)
    assert msg["stream"] == "btcusdt@markPrice@1s"
    assert set(msg["data"]) == set(expected)
    assert all(isinstance(msg["data"][k], type(v)) for k, v in expected.items())


async def test_mark_price_plain_websockets_cadence(sim: Any) -> None:
    sim.exchange.clock.set_time_scale(20)
    url = sim.urls.futures_stream + "market/stream?streams=btcusdt@markPrice@1s/ethusdt@markPrice"
    async with websockets.connect(url) as ws:
        frames = [await recv_json(ws) for _ in range(8)]
    fast = [f["data"]["E"] for f in frames if f["stream"] == "btcusdt@markPrice@1s"]
    slow = [f["data"]["E"] for f in frames if f["stream"] == "ethusdt@markPrice"]
    assert all(set(f["data"]) == set(FIXTURES["markPrice"]) for f in frames)
    assert len(fast) >= 4 and all(b - a >= 1000 for a, b in itertools.pairwise(fast))
    assert all(b - a >= 3000 for a, b in itertools.pairwise(slow))
    async with websockets.connect(sim.urls.futures_stream + "market/ws/btcusdt@markPrice") as ws:
        raw = await recv_json(ws)
    assert set(raw) == set(FIXTURES["markPrice"]) and raw["s"] == "BTCUSDT"


async def test_market_stream_subscribe_and_bad_names(sim: Any) -> None:
    sim.exchange.clock.set_time_scale(10)
    async with websockets.connect(sim.urls.futures_stream + "market/ws/btcusdt@markPrice@1s") as ws:
        await ws.send('{"method":"SUBSCRIBE","params":["ethusdt@markPrice@1s"],"id":1}')
        await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":2}')
        seen: set[str] = set()
        replies = {}
        while len(seen) < 2 or len(replies) < 2:
            msg = await recv_json(ws)
            if "id" in msg:
                replies[msg["id"]] = msg
            else:
                seen.add(msg["s"])
    assert replies[1] == {"result": None, "id": 1}
    assert replies[2]["result"] == ["btcusdt@markPrice@1s", "ethusdt@markPrice@1s"]
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(sim.urls.futures_stream + "market/ws/btcusdt@bookTicker"):
            pass


async def test_futures_user_socket_listen_key_expired(sim: Any, client: Any, bsm: Any) -> None:
    ex = sim.exchange
    sock = bsm.futures_user_socket()
    await sock.__aenter__()
    key = sock._listen_key
    ex.futures.transfer("default", "USDT", Decimal("5"))
    update = await asyncio.wait_for(sock.recv(), 5)
    assert update["e"] == "ACCOUNT_UPDATE" and update["a"]["m"] == "DEPOSIT"
    ex.clock.advance(60 * 60 * 1000 + 1)
    expired = await asyncio.wait_for(sock.recv(), 5)
    assert expired == {"e": "listenKeyExpired", "E": expired["E"], "listenKey": key}
    assert set(expired) == set(FIXTURES["listenKeyExpired"])
    ex.futures.transfer("default", "USDT", Decimal("1"))          # then silence on that socket
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(sock._queue.get(), 0.3)
    await close_quickly(sim, "private", sock, sock.__aexit__(None, None, None))


async def test_futures_user_socket_kept_alive_with_put(sim: Any, client: Any, bsm: Any) -> None:
    ex = sim.exchange
    sock = bsm.futures_user_socket()
    await sock.__aenter__()
    key = sock._listen_key
    for _ in range(3):                                   # 150 sim-minutes, a PUT every 50
        ex.clock.advance(50 * 60 * 1000)
        await client.futures_stream_keepalive(key)
    ex.futures.transfer("default", "USDT", Decimal("2"))
    event = await asyncio.wait_for(sock.recv(), 5)        # the first frame is the update, not an expiry
    assert event["e"] == "ACCOUNT_UPDATE"
    await close_quickly(sim, "private", sock, sock.__aexit__(None, None, None))


async def test_private_route_forms_and_account_update_keys(sim: Any, client: Any) -> None:
    ex = sim.exchange
    key = await client.futures_stream_get_listen_key()
    base = sim.urls.futures_stream + "private/ws"
    async with websockets.connect(f"{base}/{key}") as a, websockets.connect(f"{base}?listenKey={key}") as b:
        ex.futures.set_position("default", "BTCUSDT", Decimal("-0.5"), Decimal("60000"))
        ex.futures.market.set_basis("BTCUSDT", Decimal("0.001"))
        ex.futures.settle_funding()
        for ws in (a, b):
            funding = await recv_json(ws)
            assert funding["a"]["m"] == "FUNDING_FEE" and funding["a"]["P"] == []
            fx = FIXTURES["ACCOUNT_UPDATE"]
            assert set(funding) == set(fx) and set(funding["a"]) == set(fx["a"])
            assert set(funding["a"]["B"][0]) == set(fx["a"]["B"][0])
    # A short position receives funding when the rate is positive.
    assert ex.futures.wallet("default").balance("USDT") > Decimal("10000")
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(f"{base}/notakey"):
            pass


async def test_funding_settles_on_the_8h_boundary(sim: Any) -> None:
    ex = sim.exchange
    side = ex.futures
    side.set_position("default", "ETHUSDT", Decimal("2"), Decimal("3000"))
    side.market.set_basis("ETHUSDT", Decimal("0.0008"))     # premium 8 bps → rate 0.0005 (clamped)
    before = side.wallet("default").balance("USDT")
    events: list[dict[str, Any]] = []
    ex.bus.subscribe("default", "futures", events.append)
    ex.clock.advance(next_funding_time(ex.clock.now_ms()) - ex.clock.now_ms() + 10)
    side.tick()
    assert [e["a"]["m"] for e in events] == ["FUNDING_FEE"]
    paid = before - side.wallet("default").balance("USDT")
    mark = side.market.state("ETHUSDT").mark
    assert paid == (Decimal(2) * mark * Decimal("0.0003")).quantize(Decimal("0.00000001"))
    side.tick()
    assert len(events) == 1                                   # once per boundary


async def test_basis_is_deterministic_and_mean_reverting() -> None:
    from executor.sim.futures_market import FuturesMarket

    now = [1_700_000_000_000]

    def make() -> FuturesMarket:
        return FuturesMarket(lambda: now[0], lambda s: Decimal(100), ["BTCUSDT"], seed=3)

    a, b = make(), make()
    path_a, path_b = [], []
    for step in range(1, 200):
        t = 1_700_000_000_000 + step * 60_000
        path_a.append(a.basis("BTCUSDT", t))
        path_b.append(b.basis("BTCUSDT", t))
    assert path_a == path_b
    assert abs(sum(path_a) / len(path_a) - Decimal("0.0005")) < Decimal("0.001")
    assert max(abs(x) for x in path_a) < Decimal("0.01")
    silent = FuturesMarket(lambda: now[0], lambda s: None, ["BTCUSDT"])
    assert silent.state("BTCUSDT") is None and silent.state("XUSDT") is None


async def test_expired_key_socket_stays_silent(sim: Any, client: Any) -> None:
    key = await client.futures_stream_get_listen_key()
    async with websockets.connect(sim.urls.futures_stream + f"private/ws/{key}") as ws:
        sim.exchange.futures.listen_keys.expire_now(key)
        assert (await recv_json(ws))["e"] == "listenKeyExpired"
        sim.exchange.futures.transfer("default", "USDT", Decimal("1"))
        await expect_silence(ws)


async def test_futures_fill_events_have_fixture_keys(sim: Any, client: Any) -> None:
    ex = sim.exchange
    key = await client.futures_stream_get_listen_key()
    async with websockets.connect(sim.urls.futures_stream + f"private/ws?listenKey={key}") as ws:
        fill = ex.futures.fill
        fill("default", "BTCUSDT", "BUY", Decimal("0.010"), Decimal("60000"), client_order_id="f-1")
        fill("default", "BTCUSDT", "SELL", Decimal("0.020"), Decimal("60100"), client_order_id="f-2",
             maker=True)
        frames = [await recv_json(ws) for _ in range(4)]
    assert [f["e"] for f in frames] == ["ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"] * 2
    otu, au = FIXTURES["ORDER_TRADE_UPDATE"], FIXTURES["ACCOUNT_UPDATE"]
    for trade, update in (frames[0:2], frames[2:4]):
        assert set(trade) == set(otu) and set(trade["o"]) == set(otu["o"])
        assert set(update["a"]) == set(au["a"]) and set(update["a"]["P"][0]) == set(au["a"]["P"][0])
        assert update["a"]["m"] == "ORDER"
    closing = frames[2]["o"]
    assert (closing["c"], closing["rp"], closing["m"]) == ("f-2", "1.00000000", True)   # 0.01 × 100
    position = frames[3]["a"]["P"][0]
    assert (Decimal(position["pa"]), Decimal(position["ep"])) == (Decimal("-0.010"), Decimal("60100"))
    fees = Decimal("0.010") * 60000 * Decimal("0.0004") + Decimal("0.020") * 60100 * Decimal("0.0002")
    assert ex.futures.wallet("default").balance("USDT") == Decimal(10000) + 1 - fees


async def test_deleting_the_listen_key_closes_its_socket(sim: Any, client: Any) -> None:
    key = await client.futures_stream_get_listen_key()
    async with websockets.connect(sim.urls.futures_stream + f"private/ws/{key}") as ws:
        await client.futures_stream_close(key)
        with pytest.raises(websockets.ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), 5)
