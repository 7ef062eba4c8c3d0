"""USDⓈ-M futures user data over a listenKey on the ``/private`` route, supervised.

Futures keep the listenKey (valid 60 minutes from the last POST/PUT). ``FuturesUserStream``:

* gets a key with ``POST /fapi/v1/listenKey`` and connects to
  ``Endpoints.futures_private_stream + "ws/<listenKey>"``; ORDER_TRADE_UPDATE and
  ACCOUNT_UPDATE are parsed (``core.events``) and handed to ``deliver`` one at a time,
  awaited (backpressure, nothing dropped), exactly like the spot stream;
* ``keepalive()`` (the scheduler calls it every 30 minutes) sends the PUT; a -1125 answer
  (the key is unknown: it lapsed or was deleted) drops the key, and the supervisor
  creates a new one with POST, reconnects and gap-fills;
* ``listenKeyExpired`` (after which Binance sends nothing more on that socket) likewise
  means: new key, new connection, gap fill;
* any close or error reconnects with backoff and jitter (the same key while it is
  valid; a refused handshake drops it); after every (re)connect the gap fill runs;
  ``serverShutdown`` and ``rotate()`` (the daily reconnect) are make-before-break;
* ``expect_event(client_id)`` arms the same silent-stall check as the spot stream (the
  private route has no request/response channel to probe; the server's pings, answered by
  ``websockets``, keep the socket itself honest).

The listenKey is a bearer token for the account's stream: it never appears in a log
line, an exception text or the health counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from executor.core.events import Event, ListenKeyExpired, MalformedEvent, UnknownEvent, parse_user_frame
from executor.exchange.market_stream import Backoff
from executor.exchange.stream_limits import PROCESS_LIMITER, ConnectionAttemptLimiter
from executor.exchange.user_stream import (
    ActivityWatch,
    Deliver,
    GapFill,
    GapFillRunner,
    Gate,
    UserStreamHealth,
    _monotonic,
)

__all__ = ["FuturesListenKeys", "FuturesUserStream", "ListenKeyApi", "ListenKeyGone"]

log = logging.getLogger(__name__)
# websockets logs the request line (which carries the listenKey) at DEBUG; keep it quiet.
_ws_log = logging.getLogger(__name__ + ".ws")
_ws_log.setLevel(logging.INFO)

NO_SUCH_KEY = -1125


class ListenKeyGone(Exception):
    """The exchange does not know the listenKey (-1125): it lapsed or was deleted."""


class ListenKeyApi(Protocol):
    async def create(self) -> str: ...

    async def keepalive(self, key: str) -> None: ...

    async def close(self, key: str) -> None: ...


class FuturesListenKeys:
    """POST/PUT/DELETE ``/fapi/v1/listenKey`` through python-binance's own calls.

    The REST gateway covers spot only, so this small adapter calls the client directly;
    it still waits on the gateway's ``BanGate`` (``gate``) when given, so a 429/418 pause
    holds these calls too. The calls are unsigned (API key header only) and weigh 1.
    """

    def __init__(self, client: Any, gate: Gate | None = None) -> None:
        self._client = client
        self._gate = gate
        self.calls = 0

    async def _call(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        from binance.exceptions import BinanceAPIException

        if self._gate is not None:
            await self._gate.wait()
        self.calls += 1
        try:
            return await call()
        except BinanceAPIException as exc:
            if exc.code == NO_SUCH_KEY:
                raise ListenKeyGone(f"listenKey {what}: -1125 {exc.message}") from None
            # The exception's request/response objects may carry the key: keep only the code.
            raise RuntimeError(f"listenKey {what}: HTTP {exc.status_code} code {exc.code}: "
                               f"{exc.message}") from None

    async def create(self) -> str:
        key = await self._call("create", self._client.futures_stream_get_listen_key)
        if not isinstance(key, str) or not key:
            raise RuntimeError("listenKey create: the exchange returned no key")
        return key

    async def keepalive(self, key: str) -> None:
        await self._call("keepalive", lambda: self._client.futures_stream_keepalive(listenKey=key))

    async def close(self, key: str) -> None:
        await self._call("close", lambda: self._client.futures_stream_close(listenKey=key))


class _KeyRefused(Exception):
    """The private route refused the handshake for this key."""


class _Session:
    def __init__(self, ws: ClientConnection, key: str, owner: FuturesUserStream) -> None:
        self.ws = ws
        self.key = key
        self.owner = owner
        self.attention = asyncio.Event()
        self.reason = ""
        self.dead = False
        self.shutdown_seen = False
        self.key_expired = False
        self.reader = asyncio.get_running_loop().create_task(self._read(), name=f"{owner.health.name} reader")

    def flag(self, reason: str, *, dead: bool) -> None:
        if not self.reason or dead:
            self.reason = reason
        self.dead = self.dead or dead
        self.attention.set()

    async def _read(self) -> None:
        owner = self.owner
        try:
            async for raw in self.ws:
                try:
                    event = parse_user_frame(raw)
                except MalformedEvent as exc:
                    owner._malformed(str(exc))
                    continue
                if isinstance(event, ListenKeyExpired):
                    # Only our own key's expiry matters (a stale frame for an old key does not).
                    if event.listen_key == self.key:
                        self.key_expired = True
                        self.flag("listenKeyExpired", dead=True)
                    continue
                if isinstance(event, UnknownEvent) and event.event_type == "serverShutdown":
                    self.shutdown_seen = True
                    self.flag("serverShutdown", dead=False)
                    continue
                await owner._deliver(event)
        except ConnectionClosed as exc:
            self.flag(f"closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})", dead=True)
        except Exception as exc:
            log.exception("%s: reader failed", owner.health.name)
            self.flag(f"reader error: {type(exc).__name__}", dead=True)
        finally:
            self.dead = True
            self.flag(self.reason or "closed", dead=True)

    async def close(self) -> None:
        self.dead = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 2.0)
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


class FuturesUserStream:
    """Supervised futures user-data stream (see the module docstring)."""

    def __init__(self, private_base: str, keys: ListenKeyApi, deliver: Deliver, gap_fill: GapFill, *,
                 name: str = "futures-user", stall_after_s: float = 10.0, open_timeout_s: float = 10.0,
                 ping_interval_s: float = 20.0, backoff: Backoff | None = None,
                 gap_backoff: Backoff | None = None,
                 limiter: ConnectionAttemptLimiter | None = PROCESS_LIMITER) -> None:
        if not private_base.endswith("/"):
            raise ValueError("private_base must end with '/' (Endpoints.futures_private_stream)")
        self.private_base = private_base
        self.keys = keys
        self._deliver_to = deliver
        self.health = UserStreamHealth(name)
        self.activity = ActivityWatch(stall_after_s)
        self.gaps = GapFillRunner(gap_fill, self.health, backoff=gap_backoff)
        self.open_timeout_s = open_timeout_s
        self.ping_interval_s = ping_interval_s
        self.backoff = backoff or Backoff(base_s=0.5, cap_s=30.0)
        self.limiter = limiter
        self._key: str | None = None
        self._had_key = False
        self._current: _Session | None = None
        self._switch = asyncio.Lock()
        self._deliver_lock = asyncio.Lock()
        self._closing = False
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ public

    async def start(self) -> None:
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._supervise(), name=f"{self.health.name} supervisor"),
                       loop.create_task(self._watchdog(), name=f"{self.health.name} watchdog")]

    async def wait_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    def is_open(self) -> bool:
        cur = self._current
        return cur is not None and not cur.dead

    @property
    def has_key(self) -> bool:
        return self._key is not None

    def expect_event(self, client_order_id: str | None = None) -> None:
        self.activity.expect(client_order_id)

    def withdraw_expectation(self, client_order_id: str | None = None) -> None:
        self.activity.withdraw(client_order_id)

    async def keepalive(self) -> bool:
        """PUT the listenKey (scheduler job). True if extended; False if there is no key
        yet or the exchange no longer knows it (then a new key + reconnect + gap fill
        follow). Other failures raise, for the scheduler to count."""
        key = self._key
        if key is None:
            return False
        try:
            await self.keys.keepalive(key)
        except ListenKeyGone:
            self.health.keepalive_errors += 1
            log.warning("%s: keepalive answered -1125 (key unknown): new key, reconnect, gap fill",
                        self.health.name)
            self._drop_key(key, "listenKey unknown (-1125)")
            return False
        except Exception as exc:
            self.health.keepalive_errors += 1
            self.health.last_error = f"keepalive: {exc}"
            raise
        self.health.keepalives += 1
        return True

    async def rotate(self, reason: str = "daily") -> bool:
        """Make-before-break: a fresh connection (POST extends or replaces the key) is opened
        first, the gap fill runs, then the old connection is closed."""
        async with self._switch:
            old = self._current
            if old is None or old.dead or self._closing:
                return False
            self.health.state = "rotating"
            try:
                key = await self._ensure_key(fresh=True)
                new = await self._open_session(key)
            except Exception as exc:
                self.health.failed_rotations += 1
                self.health.last_error = f"rotate: {type(exc).__name__}"
                self.health.state = "open"
                log.warning("%s: rotation (%s) failed, keeping the old connection: %s",
                            self.health.name, reason, self._redact(str(exc)))
                return False
            self._current = new
            self.health.rotations += 1
            self.health.state = "open"
        # Outside the lock: a long gap fill must not keep the supervisor from replacing a
        # connection that dies meanwhile. The old connection closes only after it.
        await self.gaps.run(reason)
        await old.close()
        old.flag("rotated", dead=True)
        log.info("%s: rotated connection (%s)", self.health.name, reason)
        return True

    async def close(self, *, delete_key: bool = False) -> None:
        self._closing = True
        self.health.state = "closed"
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.gaps.close()
        if self._current is not None:
            await self._current.close()
            self._current = None
        if delete_key and self._key is not None:
            with contextlib.suppress(Exception):
                await self.keys.close(self._key)
            self._key = None

    async def __aenter__(self) -> FuturesUserStream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ internals

    def _redact(self, text: str) -> str:
        for key in (self._key, self._current.key if self._current else None):
            if key:
                text = text.replace(key, "<listenKey>")
        return text

    def _drop_key(self, key: str, reason: str) -> None:
        if self._key == key:
            self._key = None
        cur = self._current
        if cur is not None and cur.key == key:
            cur.flag(reason, dead=True)

    async def _ensure_key(self, *, fresh: bool = False) -> str:
        if self._key is None or fresh:
            previous = self._key
            key = await self.keys.create()
            if self._had_key and key != previous:
                self.health.key_recreations += 1
            self._had_key = True
            self._key = key
        return self._key

    async def _deliver(self, event: Event) -> None:
        async with self._deliver_lock:
            await self._deliver_to(event)
        self.health.events += 1
        self.health.last_event_mono = _monotonic()
        self.activity.seen(event)

    def _malformed(self, why: str) -> None:
        self.health.malformed += 1
        log.warning("%s: malformed user-data frame: %s", self.health.name, why)
        self.gaps.spawn("malformed_event")

    async def _open_session(self, key: str) -> _Session:
        if self.limiter is not None:
            await self.limiter.acquire()
        self.health.attempts += 1
        try:
            ws = await connect(f"{self.private_base}ws/{key}", open_timeout=self.open_timeout_s,
                               close_timeout=1.0, ping_interval=self.ping_interval_s,
                               ping_timeout=self.ping_interval_s, compression=None, max_size=2**22,
                               logger=_ws_log)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if 400 <= status < 500:
                raise _KeyRefused(f"handshake refused with HTTP {status}") from None
            raise ConnectionError(f"handshake failed with HTTP {status}") from None
        except OSError as exc:
            raise ConnectionError(f"connect failed: {type(exc).__name__}") from None
        self.health.connects += 1
        self.health.connected_since_mono = _monotonic()
        self.activity.reset()
        return _Session(ws, key, self)

    async def _supervise(self) -> None:
        first = True
        while not self._closing:
            self.health.state = "connecting"
            try:
                async with self._switch:
                    key = await self._ensure_key()
                    try:
                        session = await self._open_session(key)
                    except _KeyRefused:
                        self._drop_key(key, "refused")
                        raise
                    self._current = session
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self.backoff.next_delay()
                self.health.state = "backoff"
                self.health.last_backoff_s = delay
                self.health.last_error = f"connect: {type(exc).__name__}: {self._redact(str(exc))}"
                log.warning("%s: connect failed (%s); retrying in %.2f s", self.health.name,
                            self.health.last_error, delay)
                await asyncio.sleep(delay)
                continue
            self.backoff.reset()
            self.health.state = "open"
            if not first:
                self.health.reconnects += 1
            self._ready.set()
            self.gaps.spawn("futures_start" if first else "futures_reconnect")
            first = False
            await self._follow()

    async def _follow(self) -> None:
        while not self._closing:
            session = self._current
            assert session is not None
            await session.attention.wait()
            if session is not self._current:
                continue
            session.attention.clear()
            if session.key_expired:
                self.health.keys_expired += 1
                log.warning("%s: listenKeyExpired: new key, reconnect, gap fill", self.health.name)
                self._drop_key(session.key, "listenKeyExpired")
            elif session.shutdown_seen:
                session.shutdown_seen = False
                self.health.server_shutdowns += 1
                if not session.dead and await self.rotate("server_shutdown"):
                    continue
            elif not session.dead:
                continue
            reason = session.reason or "closed"
            log.warning("%s: connection lost (%s); reconnecting", self.health.name, reason)
            self.health.last_error = reason
            async with self._switch:
                await session.close()
                if self._current is not session:
                    continue  # a rotation replaced it meanwhile: serve the new one
                self._current = None
            return

    async def _watchdog(self) -> None:
        tick = max(0.01, min(1.0, self.activity.stall_after_s / 4))
        while not self._closing:
            await asyncio.sleep(tick)
            session = self._current
            if session is None or session.dead:
                continue
            if self.activity.overdue():
                self.health.stalls += 1
                log.warning("%s: expected user events did not arrive within %.1f s: stream stalled; "
                            "replacing the connection", self.health.name, self.activity.stall_after_s)
                self.activity.reset()
                session.flag("stalled", dead=True)
