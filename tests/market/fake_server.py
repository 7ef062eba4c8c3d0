"""A scriptable loopback websockets server standing in for Binance's stream hosts.

Each accepted connection is handed to a test-supplied coroutine as a ``FakeConn`` (the
socket, its combined-stream list, its index), so a test can script silence, closes,
serverShutdown notices or a broadcast feed without the embedded exchange.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve


@dataclass(eq=False)
class FakeConn:
    ws: ServerConnection
    path: str
    streams: list[str]
    index: int
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, obj: Any) -> None:
        await self.ws.send(orjson.dumps(obj).decode())


Handler = Callable[[FakeConn], Awaitable[None]]


class FakeStreamServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.conns: list[FakeConn] = []
        self._server: Server | None = None
        self.base_url = ""

    async def _serve(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        query = parse_qs(urlsplit(path).query)
        streams = [s for s in query.get("streams", [""])[0].split("/") if s]
        conn = FakeConn(ws, path, streams, len(self.conns))
        self.conns.append(conn)
        try:
            await self.handler(conn)
        finally:
            conn.closed.set()

    async def __aenter__(self) -> FakeStreamServer:
        self._server = await serve(self._serve, "127.0.0.1", 0, compression=None)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.base_url = f"ws://127.0.0.1:{port}/"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


def book(symbol: str, u: int, bid: str = "100.10", bid_qty: str = "1.5", ask: str = "100.20",
         ask_qty: str = "2.5") -> dict[str, Any]:
    data = {"u": u, "s": symbol, "b": bid, "B": bid_qty, "a": ask, "A": ask_qty}
    return {"stream": f"{symbol.lower()}@bookTicker", "data": data}


def mark(symbol: str, event_ms: int, price: str = "100.15", index: str = "100.05",
         rate: str = "0.0001", next_funding: int = 1_800_000_000_000) -> dict[str, Any]:
    data = {"e": "markPriceUpdate", "E": event_ms, "s": symbol, "p": price, "i": index,
            "P": price, "r": rate, "T": next_funding}
    return {"stream": f"{symbol.lower()}@markPrice@1s", "data": data}


SHUTDOWN = {"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": 1_800_000_000_000}}


async def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition to hold (checked every few ms), failing after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.005)
