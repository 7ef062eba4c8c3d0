"""Market-stream frames written as published (``ServerSocket`` ``send_inline``, what a
max-speed replay turns on): the same bytes in the same order as through the writer task."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import websockets

from executor.sim.exchange import SimExchange
from executor.sim.market import Book
from tests.conftest import start_sim

STREAMS = "stream?streams=btcusdt@bookTicker/ethusdt@bookTicker"


async def _frames_until(ws: Any, last_u: dict[str, int]) -> list[str]:
    """Raw frames until each symbol's frame with ``u`` = ``last_u[symbol]`` has come."""
    out: list[str] = []
    waiting = dict(last_u)
    while waiting:
        raw = await asyncio.wait_for(ws.recv(), 5.0)
        out.append(raw)
        data = json.loads(raw)["data"]
        if waiting.get(data["s"]) == data["u"]:
            del waiting[data["s"]]
    return out


async def test_inline_and_queued_sockets_send_the_same_frames() -> None:
    sim = SimExchange.for_tests(book_update_hz=0)
    handle = await start_sim(sim)
    try:
        url = handle.urls.spot_stream + STREAMS
        async with websockets.connect(url) as queued:
            sim.send_inline = True   # read when a socket opens: the second one is inline
            async with websockets.connect(url) as inline:
                while sim.faults.connections.count("market") < 2:
                    await asyncio.sleep(0.01)
                first = {s: sim.market.books[s].u for s in ("BTCUSDT", "ETHUSDT")}
                # A burst without yielding: the inline socket writes each frame on the spot.
                for i in range(200):
                    sym = "BTCUSDT" if i % 3 else "ETHUSDT"
                    price = Decimal("60000") if sym == "BTCUSDT" else Decimal("3000")
                    sim.market.set_price(sym, price + Decimal(i) / 100)
                last = {s: sim.market.books[s].u for s in ("BTCUSDT", "ETHUSDT")}
                got_inline = await _frames_until(inline, last)
                got_queued = await _frames_until(queued, last)
    finally:
        await handle.server.stop()

    def burst(frames: list[str]) -> list[str]:
        return [f for f in frames if json.loads(f)["data"]["u"] > first[json.loads(f)["data"]["s"]]]

    assert burst(got_inline) == burst(got_queued)
    assert len(burst(got_inline)) == 200
    us = [json.loads(f)["data"]["u"] for f in burst(got_inline) if '"BTCUSDT"' in f]
    assert us == list(range(us[0], us[0] + len(us)))   # in order, none lost


def test_book_ticker_frame_is_what_json_dumps_writes() -> None:
    sim = SimExchange.for_tests(book_update_hz=0)
    frames: list[Any] = []

    class Sock:
        closed = stalled = False

        def enqueue(self, message: Any) -> None:
            frames.append(message)

    from executor.sim.market_ws import MarketConnection

    for combined in (True, False):
        frames.clear()
        conn = MarketConnection(sim, Sock(), ["btcusdt@bookTicker"], combined)  # type: ignore[arg-type]
        for book in (
            sim.market.books["BTCUSDT"],
            Book(symbol="BTCUSDT", bid=Decimal("1.5"), bid_qty=Decimal("0"), ask=Decimal("1.6"),
                 ask_qty=Decimal("2"), u=7, gap=Decimal("0.1"), recorded=True),
        ):
            conn.on_book(book)
            payload = book.ticker()
            expected = {"stream": "btcusdt@bookTicker", "data": payload} if combined else payload
            assert frames[-1] == json.dumps(expected, separators=(",", ":"))
