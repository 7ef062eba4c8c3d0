"""The USDⓈ-M futures stream host, split into Binance's three routes (2026):

* ``/market``: regular market data, here ``<symbol>@markPrice`` (every 3 s) and
  ``<symbol>@markPrice@1s`` (every 1 s), stamped on exchange-time boundaries;
* ``/public``: high-frequency book data, here ``<symbol>@bookTicker`` (the perpetual's
  touch, sent when it changes);
* ``/private``: user data (ORDER_TRADE_UPDATE / ACCOUNT_UPDATE from the bus's "futures"
  channel; when a key lapses one bare ``listenKeyExpired``, then silence for that key; a
  deleted key ends its subscription).

Every route has Binance's access modes: ``/<route>/ws/<streams>`` (raw payloads),
``/<route>/stream?streams=a/b`` (the combined ``{"stream","data"}`` wrapper), and a bare
``/<route>/ws`` or ``/<route>/stream`` that starts empty and takes ``SUBSCRIBE`` /
``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS``. On ``/private`` the "streams" are listenKeys:
``/private/ws/<listenKey>``, ``/private/ws?listenKey=<key>`` (what python-binance 1.0.37
builds), or a listenKey SUBSCRIBEd on a bare ``/private/stream`` (events wrapped with the
key as the stream name) or ``/private/ws``. A stream name that belongs to another route is
refused (-1121 in a URL, an error answer to a SUBSCRIBE).

The host also drives ``FuturesSide.tick`` (listenKey lapses, funding settlements).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from aiohttp import web

from executor.sim.appkeys import SIM
from executor.sim.faults import FUTURES_RULES, ServerSocket, SocketRules, shutdown_event
from executor.sim.futures_account import FuturesSide, attach

_MARK_STREAM = re.compile(r"^([a-z0-9]+)@markPrice(@1s)?$")
_BOOK_STREAM = re.compile(r"^([a-z0-9]+)@bookTicker$")
TICK_WALL_S = 0.05
MAX_STREAMS = 1024


def stream_period_ms(stream: str, symbols: list[str]) -> tuple[str, int] | None:
    """(SYMBOL, period) for a supported markPrice stream name, else None."""
    match = _MARK_STREAM.match(stream)
    if match is None or match.group(1).upper() not in symbols:
        return None
    return match.group(1).upper(), 1000 if match.group(2) else 3000


def _rules(sim: Any) -> SocketRules:
    max_age = getattr(sim, "max_connection_age_s", FUTURES_RULES.max_age_s)
    return replace(FUTURES_RULES, max_age_s=float(max_age))


def _error(code: int, msg: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


class _Subscriptions(Protocol):
    combined: bool

    def add(self, streams: list[str], now: int) -> str | None: ...

    def remove(self, streams: list[str]) -> None: ...

    def names(self) -> list[str]: ...

    def frames(self, now: int) -> list[Any]: ...


class _MarkSubscriptions:
    """The markPrice streams of one ``/market`` connection and when each is next due."""

    def __init__(self, side: FuturesSide, combined: bool) -> None:
        self.side = side
        self.combined = combined
        self.due: dict[str, tuple[str, int, int]] = {}   # stream -> (symbol, period, next due ms)

    def add(self, streams: list[str], now: int) -> str | None:
        """Add streams; returns the first invalid name (nothing added) or None."""
        parsed = []
        for stream in streams:
            sp = stream_period_ms(stream, self.side.market.symbols)
            if sp is None:
                return stream
            parsed.append((stream, *sp))
        for stream, symbol, period in parsed:
            if stream not in self.due and len(self.due) < MAX_STREAMS:
                self.due[stream] = (symbol, period, now - now % period + period)
        return None

    def remove(self, streams: list[str]) -> None:
        for stream in streams:
            self.due.pop(stream, None)

    def recorded(self, symbol: str, payload: dict[str, Any]) -> list[Any]:
        """A replay's recorded mark of ``symbol`` for every stream of it (not the periodic ones)."""
        return [{"stream": stream, "data": payload} if self.combined else payload
                for stream, (sym, _, _) in self.due.items() if sym == symbol]

    def names(self) -> list[str]:
        return list(self.due)

    def frames(self, now: int) -> list[Any]:
        out: list[Any] = []
        for stream, (symbol, period, due) in list(self.due.items()):
            if now < due:
                continue
            # Stamped on the period boundary, as Binance's are; after a clock jump emit once
            # for the latest boundary and realign (Binance never backfills).
            boundary = now - now % period
            self.due[stream] = (symbol, period, boundary + period)
            state = self.side.market.state(symbol, boundary)
            if state is None:
                continue
            payload = state.payload()
            out.append({"stream": stream, "data": payload} if self.combined else payload)
        return out


class _BookSubscriptions:
    """The bookTicker streams of one ``/public`` connection: a frame whenever the touch changed."""

    def __init__(self, side: FuturesSide, combined: bool, update_ids: dict[str, int]) -> None:
        self.side = side
        self.combined = combined
        self._ids = update_ids  # shared by the host: one update-id sequence per symbol
        self.last: dict[str, tuple[str, Any]] = {}  # stream -> (symbol, last touch key)

    def add(self, streams: list[str], now: int) -> str | None:
        symbols = []
        for stream in streams:
            match = _BOOK_STREAM.match(stream)
            if match is None or match.group(1).upper() not in self.side.market.symbols:
                return stream
            symbols.append((stream, match.group(1).upper()))
        for stream, symbol in symbols:
            if stream not in self.last and len(self.last) < MAX_STREAMS:
                self.last[stream] = (symbol, None)
        return None

    def remove(self, streams: list[str]) -> None:
        for stream in streams:
            self.last.pop(stream, None)

    def names(self) -> list[str]:
        return list(self.last)

    def frames(self, now: int) -> list[Any]:
        out: list[Any] = []
        for stream, (symbol, seen) in list(self.last.items()):
            touch = self.side.market.touch(symbol, now)
            if touch is None or touch.key() == seen:
                continue
            self.last[stream] = (symbol, touch.key())
            self._ids[symbol] = self._ids.get(symbol, 0) + 1
            payload = touch.payload(self._ids[symbol])
            out.append({"stream": stream, "data": payload} if self.combined else payload)
        return out


def _control(sock: ServerSocket, text: str, *, subscribe: Callable[[list[str]], str | None],
             unsubscribe: Callable[[list[str]], None], names: Callable[[], list[str]],
             what: str = "stream") -> None:
    """Answer one SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS control message, as Binance's
    stream hosts do; ``subscribe`` returns the first name it refused (nothing added) or None."""
    parsed = _parse_request(text)
    if parsed is None:
        sock.enqueue({"error": {"code": 2, "msg": "Invalid request"}, "id": None})
        return
    method, req_id, params = parsed
    if method == "SUBSCRIBE":
        bad = subscribe([str(p) for p in params])
        if bad:
            error = {"code": 2, "msg": f"Invalid request: unknown {what} {bad}"}
            sock.enqueue({"error": error, "id": req_id})
        else:
            sock.enqueue({"result": None, "id": req_id})
    elif method == "UNSUBSCRIBE":
        unsubscribe([str(p) for p in params])
        sock.enqueue({"result": None, "id": req_id})
    elif method == "LIST_SUBSCRIPTIONS":
        sock.enqueue({"result": names(), "id": req_id})
    else:
        sock.enqueue({"error": {"code": 2, "msg": "Invalid request: unknown method"}, "id": req_id})


def _parse_request(text: str) -> tuple[str, Any, list[Any]] | None:
    try:
        req = json.loads(text)
        return str(req["method"]), req.get("id"), list(req.get("params") or [])
    except (ValueError, KeyError, TypeError):
        return None


async def _stream_socket(request: web.Request, kind: str, subs: _Subscriptions,
                         streams: list[str], *, bare: bool) -> web.StreamResponse:
    sim = request.app[SIM]
    bad = subs.add(streams, sim.clock.now_ms())
    if bad is not None or (not streams and not bare):
        return _error(-1121, f"Invalid stream name {bad!r}." if bad else "No stream given.")
    combined = subs.combined

    def shutdown_frame(now: int) -> Any:
        event = shutdown_event(now)
        return {"stream": "!serverShutdown", "data": event} if combined else event

    sock = ServerSocket(request, kind, sim.clock, sim.faults, rules=_rules(sim),
                        shutdown_frame=shutdown_frame, send_inline=sim.send_inline)
    await sock.prepare()
    # A replay pushes each recorded mark as it comes instead of the periodic frames.
    source = attach(sim).market.source if isinstance(subs, _MarkSubscriptions) else None
    unlisten = None
    if source is not None:
        def on_recorded(symbol: str, payload: dict[str, Any]) -> None:
            if sock.stalled:
                return
            for frame in subs.recorded(symbol, payload):
                sock.enqueue(frame)

        unlisten = source.listen(on_recorded)

    async def on_text(text: str) -> None:
        _control(sock, text, subscribe=lambda names: subs.add(names, sim.clock.now_ms()),
                 unsubscribe=subs.remove, names=subs.names)

    async def on_tick(now: int) -> None:
        if sock.stalled or source is not None:
            return
        for frame in subs.frames(now):
            sock.enqueue(frame)

    try:
        await sock.run(on_text, on_tick)
    finally:
        if unlisten is not None:
            unlisten()
    return sock.ws


def _url_streams(request: web.Request) -> tuple[list[str], bool, bool]:
    """(streams, combined, bare) from a ``/ws/<streams>``, ``/stream?streams=``, bare path."""
    raw = request.match_info.get("streams")
    if raw is not None:
        return [s for s in raw.split("/") if s], False, False
    combined = request.path.endswith("/stream")
    streams = [s for s in request.query.get("streams", "").split("/") if s]
    return streams, combined, not streams


async def market_socket(request: web.Request) -> web.StreamResponse:
    streams, combined, bare = _url_streams(request)
    subs = _MarkSubscriptions(attach(request.app[SIM]), combined)
    return await _stream_socket(request, "futures_market", subs, streams, bare=bare)


def _public_socket(update_ids: dict[str, int]) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        streams, combined, bare = _url_streams(request)
        subs = _BookSubscriptions(attach(request.app[SIM]), combined, update_ids)
        return await _stream_socket(request, "futures_public", subs, streams, bare=bare)
    return handler


class _KeySubscription:
    """One listenKey's events on a ``/private`` connection."""

    def __init__(self, sim: Any, side: FuturesSide, sock: ServerSocket, key: str, account: str,
                 stream: str | None) -> None:
        self.live = True
        self._sock = sock
        self._stream = stream  # the combined wrapper's stream name (None: raw frames)
        self._unsubscribe = sim.bus.subscribe(account, "futures", self.on_event)
        self._unwatch = side.listen_keys.watch(key, self.on_expired, self.on_closed)
        self._now = sim.clock.now_ms

    def _send(self, event: dict[str, Any]) -> None:
        if not self._sock.stalled:
            self._sock.enqueue(event if self._stream is None else {"stream": self._stream, "data": event})

    def on_event(self, event: dict[str, Any]) -> None:
        if self.live:
            self._send(event)

    def on_expired(self, lapsed: str) -> None:
        if self.live:
            self._send({"e": "listenKeyExpired", "E": self._now(), "listenKey": lapsed})
        self.end()

    def on_closed(self, _: str) -> None:
        self.end()

    def end(self) -> None:
        self.live = False
        self._unsubscribe()
        self._unwatch()


async def private_socket(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIM]
    side = attach(sim)
    combined = request.path.endswith("/stream")
    key = request.match_info.get("listen_key") or request.query.get("listenKey", "")
    if key and side.listen_keys.account_of(key) is None:
        return _error(-1125, "This listenKey does not exist.")
    sock = ServerSocket(request, "private", sim.clock, sim.faults, rules=_rules(sim),
                        account=side.listen_keys.account_of(key) if key else None)
    await sock.prepare()
    subs: dict[str, _KeySubscription] = {}
    # A key in the URL owns the connection: deleting it closes the socket, as before the split.
    url_key = key or None

    def subscribe(k: str) -> bool:
        account = side.listen_keys.account_of(k)
        if account is None:
            return False
        if k not in subs:
            if not subs:
                sock.set_account(account)  # faults aimed at the account (stall) find this socket
            subs[k] = _KeySubscription(sim, side, sock, k, account, k if combined else None)
        return True

    if url_key is not None:
        subscribe(url_key)

        def close_on_delete(_: str) -> None:
            asyncio.get_running_loop().create_task(sock.close())

        unwatch_url = side.listen_keys.watch(url_key, lambda _k: None, close_on_delete)
    else:
        def unwatch_url() -> None:
            return None

    def subscribe_keys(keys: list[str]) -> str | None:
        unknown = [k for k in keys if not subscribe(k)]
        return unknown[0] if unknown else None

    def unsubscribe_keys(keys: list[str]) -> None:
        for k in keys:
            sub = subs.pop(k, None)
            if sub is not None:
                sub.end()

    async def on_text(text: str) -> None:
        _control(sock, text, subscribe=subscribe_keys, unsubscribe=unsubscribe_keys,
                 names=lambda: [k for k, sub in subs.items() if sub.live], what="listenKey")

    try:
        await sock.run(on_text)
    finally:
        for sub in subs.values():
            sub.end()
        unwatch_url()
    return sock.ws


# -- host wiring ----------------------------------------------------------------------------

async def _ticker(side: FuturesSide) -> None:
    while True:
        side.tick()
        await asyncio.sleep(TICK_WALL_S)


def add_routes(app: web.Application, sim: Any) -> None:
    side = attach(sim)
    update_ids: dict[str, int] = {}
    public = _public_socket(update_ids)
    for path in ("/market/ws/{streams:.+}", "/market/ws", "/market/stream"):
        app.router.add_get(path, market_socket)
    for path in ("/public/ws/{streams:.+}", "/public/ws", "/public/stream"):
        app.router.add_get(path, public)
    for path in ("/private/ws/{listen_key}", "/private/ws", "/private/stream"):
        app.router.add_get(path, private_socket)

    tasks: list[asyncio.Task[None]] = []

    async def start_ticker(app: web.Application) -> None:
        tasks.append(asyncio.get_running_loop().create_task(_ticker(side)))

    async def close_sockets(app: web.Application) -> None:
        for kind in ("futures_market", "futures_public", "private"):
            await sim.faults.connections.drop(kind)

    async def stop_ticker(app: web.Application) -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.on_startup.append(start_ticker)
    app.on_shutdown.append(close_sockets)
    app.on_cleanup.append(stop_ticker)
