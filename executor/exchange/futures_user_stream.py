"""USDⓈ-M futures user data over a listenKey on the ``/private`` route, supervised.

Futures keep the listenKey (valid 60 minutes from the last POST/PUT). ``FuturesUserStream``:

* gets a key with ``POST /fapi/v1/listenKey`` and connects to
  ``Endpoints.futures_private_stream + "ws/<listenKey>"``; ORDER_TRADE_UPDATE and
  ACCOUNT_UPDATE are parsed (``binance_events``) and handed to ``deliver`` one at a time,
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
line, an exception text or the health counters. The supervision (backoff, gap fills,
rotation, stall watchdog) is shared with the spot stream: ``stream_supervision``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from executor.exchange.binance_events import ListenKeyExpired, MalformedEvent, UnknownEvent, parse_user_frame
from executor.exchange.market_stream import Backoff
from executor.exchange.stream_limits import PROCESS_LIMITER, ConnectionAttemptLimiter
from executor.exchange.stream_supervision import (
    Deliver,
    GapFill,
    Gate,
    StreamSession,
    SupervisedUserStream,
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


class _Session(StreamSession):
    owner: FuturesUserStream

    def __init__(self, ws: ClientConnection, key: str, owner: FuturesUserStream) -> None:
        self.key = key
        self.key_expired = False
        super().__init__(ws, owner)

    async def _read_frames(self) -> None:
        owner = self.owner
        async for raw in self.ws:
            try:
                event = parse_user_frame(raw)
            except MalformedEvent as exc:
                owner.report_malformed(str(exc))
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
            await owner.deliver(event)


class FuturesUserStream(SupervisedUserStream[_Session]):
    """Supervised futures user-data stream (see the module docstring).

    Public: ``start``, ``wait_ready``, ``close(delete_key=)`` (and ``async with``),
    ``rotate``, ``keepalive``, ``expect_event``, ``withdraw_expectation``, ``is_open``,
    ``has_key``, ``keys``, ``health``, ``activity``, ``gaps``.
    """

    gap_reasons = ("futures_start", "futures_reconnect")

    def __init__(self, private_base: str, keys: ListenKeyApi, deliver: Deliver, gap_fill: GapFill, *,
                 name: str = "futures-user", stall_after_s: float = 10.0, open_timeout_s: float = 10.0,
                 ping_interval_s: float = 20.0, backoff: Backoff | None = None,
                 gap_backoff: Backoff | None = None,
                 limiter: ConnectionAttemptLimiter | None = PROCESS_LIMITER) -> None:
        if not private_base.endswith("/"):
            raise ValueError("private_base must end with '/' (Endpoints.futures_private_stream)")
        super().__init__(deliver, gap_fill, name=name, stall_after_s=stall_after_s,
                         open_timeout_s=open_timeout_s, ping_interval_s=ping_interval_s, backoff=backoff,
                         gap_backoff=gap_backoff, limiter=limiter)
        self.private_base = private_base
        self.keys = keys
        self._key: str | None = None
        self._had_key = False

    # ------------------------------------------------------------------ public

    def is_open(self) -> bool:
        cur = self._current
        return cur is not None and not cur.dead

    @property
    def has_key(self) -> bool:
        return self._key is not None

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

    async def close(self, *, delete_key: bool = False) -> None:
        await super().close()
        if delete_key and self._key is not None:
            with contextlib.suppress(Exception):
                await self.keys.close(self._key)
            self._key = None

    # ------------------------------------------------------------------ internals

    def _error_text(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {self._redact(str(exc))}"

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

    async def _open(self, *, rotating: bool) -> _Session:
        # A rotation asks for the key again (POST extends or replaces it).
        key = await self._ensure_key(fresh=rotating)
        try:
            return await self._open_session(key)
        except _KeyRefused:
            # A failed rotation leaves everything as it was; the supervisor's own refusal
            # means the key is bad: drop it so the next attempt creates a new one.
            if not rotating:
                self._drop_key(key, "refused")
            raise

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

    async def _on_attention(self, session: _Session) -> str | None:
        if session.key_expired:
            self.health.keys_expired += 1
            log.warning("%s: listenKeyExpired: new key, reconnect, gap fill", self.health.name)
            self._drop_key(session.key, "listenKeyExpired")
        elif session.shutdown_seen:
            if await self._rotate_for_shutdown(session):
                return None
        elif not session.dead:
            return None
        return session.reason or "closed"
