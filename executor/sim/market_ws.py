"""Spot market streams on the spot stream host: ``/ws/<stream>``, ``/ws`` (then SUBSCRIBE)
and ``/stream?streams=a/b`` (combined ``{"stream","data"}`` wrapper).

Supports the JSON control methods SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY
and GET_PROPERTY (``combined``) with Binance's replies, at most 1024 streams per
connection and 5 incoming messages per second (more closes the connection). The socket
lifecycle — pings every 20 sim-seconds, close on a missing pong after 1 sim-minute, the
maximum connection age, drop and ``serverShutdown`` — is ``faults.ServerSocket``'s; each
connection is registered in ``sim.faults.connections`` under kind "market".

``<symbol>@bookTicker`` is pushed here on every book update; ``@trade``, ``@aggTrade``,
``@kline_<interval>``, ``@miniTicker``, ``@ticker``, ``@avgPrice``, ``@depth<n>[@100ms]`` and
``@depth[@100ms]`` come from ``market_feed.MarketFeed`` through ``deliver``. Other
well-formed names are accepted and stay silent (as a stream for an unlisted symbol does
on Binance).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from executor.sim.exchange import SimExchange
from executor.sim.faults import ServerSocket, SocketRules
from executor.sim.market import Book

MAX_STREAMS = 1024
MAX_MSGS_PER_S = 5
METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")


def _err(code: int, msg: str, req_id: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "msg": msg}, "id": req_id}


def _valid_id(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and 0 < len(value) <= 36


class MarketConnection:
    """One client's subscriptions and mode on a market-stream socket."""

    def __init__(self, sim: SimExchange, sock: ServerSocket, streams: list[str], combined: bool) -> None:
        self.sim = sim
        self.sock = sock
        self.subs: list[str] = []
        self.combined = combined
        self._msg_window = -1
        self._msg_count = 0
        for s in streams:
            if s and s not in self.subs:
                self.subs.append(s)

    def deliver(self, stream: str, payload: dict[str, Any]) -> None:
        """A market-feed payload for ``stream`` (the feed checked that we subscribed to it)."""
        if self.sock.closed or self.sock.stalled:
            return
        self.sock.enqueue({"stream": stream, "data": payload} if self.combined else payload)

    def on_book(self, book: Book) -> None:
        name = book.symbol.lower() + "@bookTicker"
        if name not in self.subs or self.sock.closed or self.sock.stalled:
            return
        # Written out here rather than json.dumps of the dict: the bytes are the same (the
        # values are an int, a symbol and decimal strings) at a fraction of the cost, on the
        # busiest frame the exchange sends.
        t = book.ticker()
        data = (
            f'{{"u":{int(t["u"])},"s":"{t["s"]}","b":"{t["b"]}","B":"{t["B"]}",'
            f'"a":"{t["a"]}","A":"{t["A"]}"}}'
        )
        self.sock.enqueue(f'{{"stream":"{name}","data":{data}}}' if self.combined else data)

    async def on_text(self, text: str) -> None:
        now = self.sim.clock.now_ms()
        if now // 1000 != self._msg_window:
            self._msg_window, self._msg_count = now // 1000, 0
        self._msg_count += 1
        if self._msg_count > MAX_MSGS_PER_S:
            self.sock.close_reason = "too many messages"
            await self._drain()
            await self.sock.close(1008, b"Too many requests")
            return
        reply = self.handle(text)
        if reply is not None:
            self.sock.enqueue(reply)

    async def _drain(self, limit_s: float = 1.0) -> None:
        """Let replies already queued go out before a close (Binance answers them first)."""
        waited = 0.0
        while self.sock.queued and waited < limit_s and not self.sock.closed:
            await asyncio.sleep(0.005)
            waited += 0.005

    def handle(self, text: str) -> dict[str, Any] | None:
        try:
            msg = json.loads(text)
        except ValueError as exc:
            return _err(3, f"Invalid JSON: {exc.args[0] if exc.args else 'expected value'}")
        if not isinstance(msg, dict):
            return _err(2, "Invalid request: expected an object")
        req_id = msg.get("id")
        if "method" not in msg:
            return _err(2, "Invalid request: missing field `method`", req_id if _valid_id(req_id) else None)
        if not _valid_id(req_id):
            return _err(2, "Invalid request: request ID must be an unsigned integer")
        method = msg["method"]
        if method not in METHODS:
            return _err(2, f"Invalid request: unknown variant `{method}`, expected one of `SUBSCRIBE`, "
                        "`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`", req_id)
        params = msg.get("params", [])
        if set(msg) - {"method", "params", "id"}:
            return _err(2, "Invalid request: too many parameters", req_id)
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": list(self.subs), "id": req_id}
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) and p for p in params):
                return _err(2, "Invalid request: invalid stream", req_id)
            if method == "SUBSCRIBE":
                new = [p for p in dict.fromkeys(params) if p not in self.subs]
                if len(self.subs) + len(new) > MAX_STREAMS:
                    return _err(2, f"Invalid request: at most {MAX_STREAMS} streams per connection", req_id)
                self.subs.extend(new)
            else:
                self.subs = [s for s in self.subs if s not in params]
            self.sim.feed.refresh()
            return {"result": None, "id": req_id}
        if not isinstance(params, list) or not params or not isinstance(params[0], str):
            return _err(2, "Invalid request: property name must be a string", req_id)
        if params[0] != "combined":
            return _err(0, "Unknown property", req_id)
        if method == "GET_PROPERTY":
            return {"result": self.combined, "id": req_id}
        if len(params) != 2 or not isinstance(params[1], bool):
            return _err(1, "Invalid value type: expected Boolean", req_id)
        self.combined = params[1]
        return {"result": None, "id": req_id}


def add_routes(app: web.Application, sim: SimExchange) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        combined = path == "/stream"
        if combined:
            streams = [s for s in request.query.get("streams", "").split("/") if s]
        else:
            streams = [s for s in path.removeprefix("/ws").split("/") if s]
        if len(streams) > MAX_STREAMS:
            return web.json_response({"code": -1, "msg": f"too many streams (at most {MAX_STREAMS})"},
                                     status=400)

        def shutdown_frame(now_ms: int) -> dict[str, Any]:
            event = {"e": "serverShutdown", "E": now_ms}
            return {"stream": "!serverShutdown", "data": event} if conn.combined else event

        rules = SocketRules(max_age_s=float(sim.max_connection_age_s))
        sock = ServerSocket(request, "market", sim.clock, sim.faults, rules=rules,
                            shutdown_frame=shutdown_frame, send_inline=sim.send_inline)
        conn = MarketConnection(sim, sock, streams, combined)
        await sock.prepare()
        unsubscribe = sim.market.subscribe(conn.on_book)
        detach = sim.feed.attach(conn)
        try:
            await sock.run(on_text=conn.on_text)
        finally:
            unsubscribe()
            detach()
        return sock.ws

    app.router.add_get("/ws", handle)
    app.router.add_get("/ws/{streams:.*}", handle)
    app.router.add_get("/stream", handle)
