"""The futures stream host's three routes with every one of Binance's access modes: a raw
``/ws/<streams>``, a combined ``/stream?streams=``, and a bare ``/ws`` or ``/stream`` that
takes SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS; markPrice on ``/market``, bookTicker on
``/public``, user data on ``/private`` (a listenKey in the URL, or SUBSCRIBEd). A stream of
another route is refused. Payloads have the documented key sets."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import websockets

from tests.fixtures import load_futures
from tests.sim2.conftest import FIXTURES, recv_json, recv_until

FUT = load_futures()
MARK = "btcusdt@markPrice@1s"
BOOK = "btcusdt@bookTicker"


def url(sim: Any, path: str) -> str:
    return sim.urls.futures_stream + path


async def call(ws: Any, method: str, params: list[str] | None = None, req_id: int = 1) -> Any:
    await ws.send(json.dumps({"method": method, **({"params": params} if params is not None else {}),
                              "id": req_id}))
    return await recv_until(ws, lambda m: m.get("id") == req_id)


def is_event(msg: Any) -> bool:
    return "id" not in msg


@pytest.fixture(autouse=True)
def fast_clock(sim: Any) -> None:
    sim.exchange.clock.set_time_scale(10)  # markPrice@1s every 0.1 s of wall time


@pytest.mark.parametrize(("route", "stream", "event"), [("market", MARK, "markPriceUpdate"),
                                                       ("public", BOOK, "bookTicker")])
async def test_raw_combined_and_bare_modes(sim: Any, route: str, stream: str, event: str) -> None:
    async with websockets.connect(url(sim, f"{route}/ws/{stream}")) as ws:
        raw = await recv_until(ws, is_event)
        assert raw["e"] == event and raw["s"] == "BTCUSDT"
    async with websockets.connect(url(sim, f"{route}/stream?streams={stream}")) as ws:
        wrapped = await recv_until(ws, is_event)
        assert wrapped["stream"] == stream and wrapped["data"]["e"] == event
    for bare, combined in (("ws", False), ("stream", True)):
        async with websockets.connect(url(sim, f"{route}/{bare}")) as ws:
            assert (await call(ws, "LIST_SUBSCRIPTIONS"))["result"] == []
            assert await call(ws, "SUBSCRIBE", [stream], 2) == {"result": None, "id": 2}
            assert (await call(ws, "LIST_SUBSCRIPTIONS", None, 3))["result"] == [stream]
            frame = await recv_until(ws, is_event)
            assert (frame["data"] if combined else frame)["e"] == event
            assert await call(ws, "UNSUBSCRIBE", [stream], 4) == {"result": None, "id": 4}
            assert (await call(ws, "LIST_SUBSCRIPTIONS", None, 5))["result"] == []


@pytest.mark.parametrize(("route", "foreign"), [("market", BOOK), ("public", MARK)])
async def test_a_stream_of_another_route_is_refused(sim: Any, route: str, foreign: str) -> None:
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(url(sim, f"{route}/ws/{foreign}")):
            pass
    async with websockets.connect(url(sim, f"{route}/stream")) as ws:
        answer = await call(ws, "SUBSCRIBE", [foreign])
        assert answer["error"]["code"] == 2 and answer["id"] == 1


async def test_book_ticker_payload_has_the_documented_keys_and_moves_with_the_mark(sim: Any) -> None:
    # The spot book stands still, so the touch moves only with the basis: a frame whose bid
    # changed is one after set_basis (not an ordinary spot move), and the mark stays put.
    sim.exchange.market.set_book("BTCUSDT")
    async with websockets.connect(url(sim, f"public/ws/{BOOK}")) as ws:
        first = await recv_until(ws, is_event)
        assert set(first) == set(FUT["bookTicker"])
        sim.exchange.futures.market.set_basis("BTCUSDT", Decimal("0.01"))
        later = await recv_until(ws, lambda m: m["u"] > first["u"] and m["b"] != first["b"])
    assert Decimal(later["a"]) > Decimal(later["b"])
    mark = sim.exchange.futures.market.state("BTCUSDT").mark
    assert Decimal(later["b"]) < mark < Decimal(later["a"])


async def test_private_route_forms(sim: Any, client: Any) -> None:
    ex = sim.exchange
    key = await client.futures_stream_get_listen_key()
    async with websockets.connect(url(sim, f"private/ws/{key}")) as by_path, \
            websockets.connect(url(sim, f"private/ws?listenKey={key}")) as by_query, \
            websockets.connect(url(sim, "private/stream")) as combined, \
            websockets.connect(url(sim, "private/ws")) as bare:
        assert await call(combined, "SUBSCRIBE", [key]) == {"result": None, "id": 1}
        assert await call(bare, "SUBSCRIBE", [key]) == {"result": None, "id": 1}
        assert (await call(combined, "LIST_SUBSCRIPTIONS", None, 2))["result"] == [key]
        bad = await call(bare, "SUBSCRIBE", ["notakey"], 3)
        assert bad["error"]["code"] == 2
        ex.futures.transfer("default", "USDT", Decimal("3"))
        for ws in (by_path, by_query, bare):
            update = await recv_json(ws)
            assert update["e"] == "ACCOUNT_UPDATE" and set(update) == set(FIXTURES["ACCOUNT_UPDATE"])
        wrapped = await recv_until(combined, is_event)
        assert wrapped["stream"] == key and wrapped["data"]["e"] == "ACCOUNT_UPDATE"
        # The key lapses: each subscriber hears listenKeyExpired once, then nothing more of it.
        ex.futures.listen_keys.expire_now(key)
        expired = await recv_until(combined, is_event)
        assert expired["data"] == {"e": "listenKeyExpired", "E": expired["data"]["E"], "listenKey": key}
        assert (await call(combined, "LIST_SUBSCRIPTIONS", None, 4))["result"] == []


async def test_exchange_info_symbols_have_the_documented_keys(sim: Any, client: Any) -> None:
    info = await client.futures_exchange_info()
    sym = info["symbols"][0]
    assert set(FUT["exchangeInfo_symbol_keys"]) <= set(sym)
    assert sym["settlePlan"] == 0
