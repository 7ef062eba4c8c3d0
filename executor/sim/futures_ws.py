"""The USDⓈ-M futures stream host: ``/market`` (markPrice) and ``/private`` (user data).

Binance split fstream into routes in 2026; this host serves the two the bot uses:

* ``/market/ws/<stream>`` and ``/market/stream?streams=a/b``: ``<symbol>@markPrice``
  (every 3 s) and ``<symbol>@markPrice@1s`` (every 1 s), on exchange-time boundaries,
  raw or in the combined ``{"stream","data"}`` wrapper, with SUBSCRIBE/UNSUBSCRIBE/
  LIST_SUBSCRIPTIONS.
* ``/private/ws/<listenKey>`` and ``/private/ws?listenKey=<key>`` (python-binance 1.0.37
  builds the latter): ORDER_TRADE_UPDATE / ACCOUNT_UPDATE from the bus's "futures" channel;
  when the key lapses one bare ``listenKeyExpired`` and then silence; a deleted key closes.

The host also drives ``FuturesSide.tick`` (listenKey lapses, funding settlements).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import replace
from typing import Any

from aiohttp import web

from executor.sim.appkeys import SIM
from executor.sim.faults import FUTURES_RULES, ServerSocket, SocketRules, shutdown_event
from executor.sim.futures_account import FuturesSide, attach

_MARK_STREAM = re.compile(r"^([a-z0-9]+)@markPrice(@1s)?$")
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


class _MarkSubscriptions:
    """The markPrice streams of one connection and when each is next due."""

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


async def _market_socket(request: web.Request, streams: list[str], combined: bool) -> web.StreamResponse:
    sim = request.app[SIM]
    side = attach(sim)
    subs = _MarkSubscriptions(side, combined)
    bad = subs.add(streams, sim.clock.now_ms())
    if bad is not None or not streams:
        return _error(-1121, f"Invalid stream name {bad!r}." if bad else "No stream given.")

    def shutdown_frame(now: int) -> Any:
        event = shutdown_event(now)
        return {"stream": "!serverShutdown", "data": event} if combined else event

    sock = ServerSocket(request, "futures_market", sim.clock, sim.faults, rules=_rules(sim),
                        shutdown_frame=shutdown_frame)
    await sock.prepare()
    # A replay pushes each recorded mark as it comes instead of the periodic frames.
    source = side.market.source
    unlisten = None
    if source is not None:
        def on_recorded(symbol: str, payload: dict[str, Any]) -> None:
            if sock.stalled:
                return
            for stream, (sym, _, _) in subs.due.items():
                if sym == symbol:
                    sock.enqueue({"stream": stream, "data": payload} if combined else payload)

        unlisten = source.listen(on_recorded)

    async def on_text(text: str) -> None:
        try:
            req = json.loads(text)
            method, req_id = req["method"], req.get("id")
            params = req.get("params") or []
        except (ValueError, KeyError, TypeError):
            sock.enqueue({"error": {"code": 2, "msg": "Invalid request"}, "id": None})
            return
        if method == "SUBSCRIBE":
            bad_name = subs.add(list(params), sim.clock.now_ms())
            if bad_name:
                sock.enqueue({"error": {"code": 2, "msg": f"Invalid request: unknown stream {bad_name}"},
                              "id": req_id})
            else:
                sock.enqueue({"result": None, "id": req_id})
        elif method == "UNSUBSCRIBE":
            for stream in params:
                subs.due.pop(stream, None)
            sock.enqueue({"result": None, "id": req_id})
        elif method == "LIST_SUBSCRIPTIONS":
            sock.enqueue({"result": list(subs.due), "id": req_id})
        else:
            sock.enqueue({"error": {"code": 2, "msg": "Invalid request: unknown method"}, "id": req_id})

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


async def market_raw(request: web.Request) -> web.StreamResponse:
    return await _market_socket(request, request.match_info["streams"].split("/"), combined=False)


async def market_combined(request: web.Request) -> web.StreamResponse:
    streams = [s for s in request.query.get("streams", "").split("/") if s]
    return await _market_socket(request, streams, combined=True)


async def private_socket(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIM]
    side = attach(sim)
    key = request.match_info.get("listen_key") or request.query.get("listenKey", "")
    account = side.listen_keys.account_of(key)
    if account is None:
        return _error(-1125, "This listenKey does not exist.")
    sock = ServerSocket(request, "private", sim.clock, sim.faults, rules=_rules(sim), account=account)
    await sock.prepare()
    live = True

    def on_event(event: dict[str, Any]) -> None:
        if live and not sock.stalled:
            sock.enqueue(event)

    unsubscribe = sim.bus.subscribe(account, "futures", on_event)

    def on_expired(lapsed: str) -> None:
        nonlocal live
        if live and not sock.stalled:
            sock.enqueue({"e": "listenKeyExpired", "E": sim.clock.now_ms(), "listenKey": lapsed})
        live = False
        unsubscribe()

    def on_closed(_: str) -> None:
        nonlocal live
        live = False
        unsubscribe()
        asyncio.get_running_loop().create_task(sock.close())

    unwatch = side.listen_keys.watch(key, on_expired, on_closed)
    try:
        await sock.run()
    finally:
        unsubscribe()
        unwatch()
    return sock.ws


# -- host wiring ----------------------------------------------------------------------------

async def _ticker(side: FuturesSide) -> None:
    while True:
        side.tick()
        await asyncio.sleep(TICK_WALL_S)


def add_routes(app: web.Application, sim: Any) -> None:
    side = attach(sim)
    app.router.add_get("/market/ws/{streams:.+}", market_raw)
    app.router.add_get("/market/stream", market_combined)
    app.router.add_get("/private/ws/{listen_key}", private_socket)
    app.router.add_get("/private/ws", private_socket)

    tasks: list[asyncio.Task[None]] = []

    async def start_ticker(app: web.Application) -> None:
        tasks.append(asyncio.get_running_loop().create_task(_ticker(side)))

    async def close_sockets(app: web.Application) -> None:
        for kind in ("futures_market", "private"):
            await sim.faults.connections.drop(kind)

    async def stop_ticker(app: web.Application) -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.on_startup.append(start_ticker)
    app.on_shutdown.append(close_sockets)
    app.on_cleanup.append(stop_ticker)
