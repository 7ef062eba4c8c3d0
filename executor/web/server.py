"""The web server inside the bot: routes, the guard on every request, live updates.

``WebServer(token, host=..., port=...)``; ``await start()`` binds (port 0: a free one;
``url`` then names it) -- the bot does that before it connects anywhere, so a port in use
stops it at once -- and ``attach(src)`` hands it the running bot (until then every guarded
route answers 503); ``await stop()`` closes it. Routes: the JSON API (``api``),
``GET /api/v1/events`` (server-sent events: the dashboard's snapshot at most every
``update_ms``, one computation shared by every listener), ``GET /metrics`` (Prometheus text
format, bearer token like the rest) and the dashboard page and its files from ``static/``.

Every answer carries headers that keep the page out of frames and other origins
(``Content-Security-Policy``, ``X-Frame-Options``, ``nosniff``, no referrer, no caching of
API answers); no CORS header is ever sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from executor.oversight import metrics
from executor.web.api import BotSource, add_routes, snapshot
from executor.web.auth import Guard, Verdict

__all__ = ["LOOPBACK", "STATIC", "WebServer"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_EMPTY_STATUS = {Verdict.UNAUTHORIZED: 401, Verdict.LIMITED: 429, Verdict.BAD_TYPE: 415}


class WebServer:
    def __init__(self, token: str, *, host: str = "127.0.0.1", port: int = 0,
                 max_auth_failures: int = 20, update_ms: int = 500) -> None:
        self.src: BotSource | None = None
        self.host = host
        self.port = port
        self.guard = Guard(token, max_failures=max_auth_failures)
        self.update_s = update_ms / 1000
        self.url = ""
        self.listeners = 0
        self._runner: web.AppRunner | None = None
        self._snap: tuple[float, bytes] = (0.0, b"")
        self._snap_lock = asyncio.Lock()
        self._closing = asyncio.Event()
        self._registry = metrics.registry(lambda: self._src().metrics())

    def attach(self, src: BotSource) -> None:
        self.src = src

    def _src(self) -> BotSource:
        assert self.src is not None  # the middleware answers 503 before a source is attached
        return self.src

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024)
        add_routes(app, self._src)
        app.router.add_get("/api/v1/events", self._events)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
        return app

    async def start(self) -> str:
        """Bind and serve; ``ConfigError`` (one line) when the address cannot be used."""
        from executor.config import ConfigError

        if self.host not in LOOPBACK:
            log.warning("web: listening on %s, which is not loopback: anyone who can reach it can try the "
                        "token, and the token and data travel in clear text. Put it behind TLS or reach it "
                        "through an SSH tunnel (see README).", self.host)
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError(f"web: cannot listen on {self.host}:{self.port}: "
                              f"{exc.strerror or type(exc).__name__}") from None
        addresses = self._runner.addresses
        port = addresses[0][1] if addresses else self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- middleware and extra routes

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        verdict = self.guard.check(request.method, request.path, request.remote or "?",
                                   request.headers.get("Authorization"), request.content_type)
        if verdict in _EMPTY_STATUS:
            # No detail: a prober learns nothing, not even whether a route exists.
            resp: web.StreamResponse = web.Response(status=_EMPTY_STATUS[verdict], headers=_HEADERS)
            if verdict == Verdict.UNAUTHORIZED:
                resp.headers["WWW-Authenticate"] = "Bearer"
            return resp
        if self.src is None and verdict == Verdict.OK:
            return web.Response(status=503, text="starting", headers=_HEADERS)
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(_HEADERS)
            raise
        if resp.prepared:  # a stream (events) sent its headers already
            return resp
        resp.headers.update(_HEADERS)
        if request.path.startswith("/api/") or request.path == "/metrics":
            resp.headers["Cache-Control"] = "no-store"
        return resp

    async def _index(self, _: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _snapshot(self) -> bytes:
        async with self._snap_lock:
            at, body = self._snap
            if time.monotonic() - at >= self.update_s * 0.9 or not body:
                body = await snapshot(self._src())
                self._snap = (time.monotonic(), body)
            return body

    async def _events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           **_HEADERS})
        await resp.prepare(request)
        self.listeners += 1
        try:
            while not self._closing.is_set():
                started = time.monotonic()
                await resp.write(b"data: " + await self._snapshot() + b"\n\n")
                wait = max(self.update_s - (time.monotonic() - started), 0.05)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), wait)
        except ConnectionResetError:
            pass  # the page went away
        finally:
            self.listeners -= 1
        return resp
