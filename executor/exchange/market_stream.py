"""Supervised market-stream client: spot bookTicker, spot klines and USD-M markPrice into
MarketState.

Owns the websocket connections for market data and their supervision. It is a thin
reader on ``websockets`` + orjson rather than python-binance's socket manager, which is
several times slower and dies on a full queue. Per connection (one combined-stream URL,
at most 1024 streams):

* every frame is parsed straight into ``MarketState`` slots (latest value per symbol), so
  a slow strategy causes conflation, never a queue;
* a staleness watchdog treats an open but silent socket as dead and replaces it;
* unplanned loss reconnects with exponential backoff and jitter, bounded and never giving
  up; every attempt goes through the process-wide connection-attempt limiter;
* ``serverShutdown`` starts a planned reconnect at once;
* ``rotate()`` is make-before-break: the new socket is opened and its first update held
  until the old socket has caught up to it, then the old one is closed; the state's
  sequence rule (``u`` / ``E``) drops the overlap's duplicates, so nothing is missed or
  applied twice;
* malformed frames are counted and logged (rate-limited) and never end the connection.

bookTicker numbers are checked for type here and handed to MarketState as the exchange's
strings; the state makes them Decimal on first read (most are overwritten unread).

Use::

    state = MarketState(symbols)
    books = book_ticker_stream(endpoints, symbols, state)
    marks = mark_price_stream(endpoints, symbols, state)
    await books.start(); await marks.start()
    changes = await state.wait_changes()   # strategy loop: changes.books / changes.marks
    await books.rotate()                   # planned daily reconnect (scheduler)
    books.health()                         # per-connection counters for the status display
    await books.close(); await marks.close()
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from executor.core.money import parse_decimal
from executor.exchange.stream_limits import (
    MAX_STREAMS_PER_CONNECTION,
    PROCESS_LIMITER,
    ConnectionAttemptLimiter,
    split_streams,
)
from executor.market.state import CONFLATED, DROPPED, Candle, MarketState
from executor.venue.endpoints import Endpoints

log = logging.getLogger(__name__)

Kind = Literal["book", "mark", "kline"]
Sleep = Callable[[float], Awaitable[None]]

_loads = orjson.loads
_monotonic = time.monotonic
_wall = time.time


class MalformedFrame(ValueError):
    """A frame that is not a well-formed update of the stream's kind."""


def _dec(value: Any, name: str) -> Decimal:
    # Floats are refused: a JSON number has already lost the exact decimal the exchange sent.
    if value.__class__ is not str:
        raise MalformedFrame(f"{name} must be a decimal string, got {value!r}")
    dec = Decimal(value)
    if not dec.is_finite():
        raise MalformedFrame(f"{name} is not finite: {value!r}")
    return dec


def _int(value: Any, name: str) -> int:
    if value.__class__ is not int:
        raise MalformedFrame(f"{name} must be an integer, got {value!r}")
    return value


def parse_book_ticker(data: dict[str, Any]) -> tuple[str, int, str, str, str, str]:
    """(symbol, updateId, bid, bidQty, ask, askQty) from a bookTicker payload.

    Shapes and types are checked here; the four numbers stay strings, which MarketState
    turns into Decimal when first read (see executor.market.state).
    """
    try:
        args = (data["s"], data["u"], data["b"], data["B"], data["a"], data["A"])
    except KeyError as exc:
        raise MalformedFrame(f"bookTicker without field {exc}") from None
    except TypeError:
        raise MalformedFrame("bookTicker payload is not an object") from None
    _check_book(args)
    return args


def _check_book(args: tuple[Any, ...]) -> None:
    symbol, u, b, bq, a, aq = args
    # Floats are refused: a JSON number has already lost the exact decimal the exchange sent.
    if (u.__class__ is not int or b.__class__ is not str or bq.__class__ is not str or a.__class__ is not str
            or aq.__class__ is not str or symbol.__class__ is not str or not symbol):
        raise MalformedFrame(f"bookTicker with a wrongly typed field: {args!r}")


def parse_mark_price(data: dict[str, Any]) -> tuple[str, int, Decimal, Decimal | None, Decimal | None,
                                                       Decimal | None, int | None]:
    """(symbol, eventTime, mark, index, estSettle, fundingRate, nextFundingTime) from markPriceUpdate."""
    try:
        symbol = data["s"]
        index = data.get("i")
        settle = data.get("P")
        rate = data.get("r")
        nxt = data.get("T")
        args = (
            symbol,
            _int(data["E"], "E"),
            _dec(data["p"], "p"),
            None if index in (None, "") else _dec(index, "i"),
            None if settle in (None, "") else _dec(settle, "P"),
            # Delivery contracts send an empty funding rate and T=0: no funding, not an error.
            None if rate in (None, "") else _dec(rate, "r"),
            None if not nxt else _int(nxt, "T"),
        )
    except KeyError as exc:
        raise MalformedFrame(f"markPriceUpdate without field {exc}") from None
    except ArithmeticError as exc:
        raise MalformedFrame(f"markPriceUpdate with a bad number: {exc!r}") from None
    if symbol.__class__ is not str or not symbol:
        raise MalformedFrame(f"markPriceUpdate with a bad symbol {symbol!r}")
    return args


def parse_kline(data: dict[str, Any]) -> tuple[str, int, str, Candle]:
    """A ``<symbol>@kline_<interval>`` payload -> (symbol, event time, interval, candle)."""
    try:
        k = data["k"]
        symbol = data["s"]
        candle = Candle(open_time=_int(k["t"], "k.t"), close_time=_int(k["T"], "k.T"),
                        open=parse_decimal(k["o"], "k.o"), high=parse_decimal(k["h"], "k.h"),
                        low=parse_decimal(k["l"], "k.l"), close=parse_decimal(k["c"], "k.c"),
                        volume=parse_decimal(k["v"], "k.v"), quote_volume=parse_decimal(k["q"], "k.q"),
                        trades=_int(k["n"], "k.n"), closed=k["x"] is True)
        interval = k["i"]
        event_ms = _int(data["E"], "E")
    except KeyError as exc:
        raise MalformedFrame(f"kline without field {exc}") from None
    except (TypeError, ValueError) as exc:
        raise MalformedFrame(f"kline with a bad value: {exc}") from None
    if symbol.__class__ is not str or not symbol or interval.__class__ is not str:
        raise MalformedFrame(f"kline with a bad symbol/interval {symbol!r}/{interval!r}")
    return symbol, event_ms, interval, candle


def stream_name(kind: Kind, symbol: str, interval: str = "1m") -> str:
    if kind == "book":
        return f"{symbol.lower()}@bookTicker"
    if kind == "kline":
        return f"{symbol.lower()}@kline_{interval}"
    return f"{symbol.lower()}@markPrice@1s"


# Web servers refuse long request lines (8 KiB is common), so a connection with many
# streams puts what fits in the URL and SUBSCRIBEs the rest right after the handshake,
# paced under Binance's 5 incoming messages per second.
MAX_URL_STREAM_CHARS = 4000
STREAMS_PER_SUBSCRIBE = 200
SUBSCRIBE_INTERVAL_S = 0.25
YIELD_EVERY_MASK = 127  # the book reader yields to other tasks every 128 frames


def plan_subscription(streams: Sequence[str], max_url_chars: int = MAX_URL_STREAM_CHARS,
                      per_message: int = STREAMS_PER_SUBSCRIBE) -> tuple[list[str], list[list[str]]]:
    """(streams for the URL, SUBSCRIBE batches for the rest)."""
    in_url: list[str] = []
    used = 0
    for stream in streams:
        if in_url and used + len(stream) + 1 > max_url_chars:
            break
        in_url.append(stream)
        used += len(stream) + 1
    rest = list(streams[len(in_url):])
    return in_url, [rest[i:i + per_message] for i in range(0, len(rest), per_message)]


def combined_url(base: str, streams: Sequence[str]) -> str:
    """``<base>stream?streams=a/b/c``; ``base`` ends in ``/`` like the Endpoints stream bases."""
    if not base.endswith("/"):
        base += "/"
    return f"{base}stream?streams={'/'.join(streams)}"


class Backoff:
    """Exponential backoff with jitter: attempt n waits a uniform share in [½, 1] of
    min(cap, base·2ⁿ). Bounded by ``cap`` and never exhausted."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0,
                 rng: Callable[[], float] = random.random) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError("need 0 < base_s <= cap_s")
        self.base_s = base_s
        self.cap_s = cap_s
        self._rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2 ** min(self.failures, 32)))
        self.failures += 1
        return ceiling * (0.5 + 0.5 * self._rng())

    def reset(self) -> None:
        self.failures = 0


class _RateLimitedLog:
    """At most one log line per ``every_s`` per key; the suppressed count rides on the next."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: Any) -> None:
        now = _monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        if skipped:
            msg += " (%d similar suppressed)"
            args = (*args, skipped)
        log.warning(msg, *args)


@dataclass(slots=True)
class StreamHealth:
    """Counters for one supervised connection, for the status display and tests."""

    name: str
    url: str
    streams: int
    state: str = "idle"  # idle, connecting, open, backoff, rotating, closed
    connects: int = 0  # successful handshakes
    attempts: int = 0  # handshakes tried (each one was granted by the limiter)
    reconnects: int = 0  # connects after an unplanned loss
    rotations: int = 0  # completed make-before-break reconnects
    failed_rotations: int = 0
    server_shutdowns: int = 0
    stale_kills: int = 0  # connections the watchdog declared dead
    frames: int = 0
    applied: int = 0
    duplicates: int = 0  # dropped by the sequence rule (overlap, late frames)
    conflated: int = 0
    parse_errors: int = 0
    last_message_mono: float | None = None
    connected_since_mono: float | None = None
    last_backoff_s: float = 0.0
    last_error: str | None = None

    @property
    def last_message_wall(self) -> float | None:
        """Wall-clock time of the last message (derived from the monotonic receipt time)."""
        if self.last_message_mono is None:
            return None
        return _wall() - (_monotonic() - self.last_message_mono)

    def silent_for(self, now: float | None = None) -> float | None:
        if self.last_message_mono is None:
            return None
        return (_monotonic() if now is None else now) - self.last_message_mono


class _Leg:
    """One websocket and its reader task. A leg opened by rotate() holds its first update
    until released, so the old leg can catch up to it first."""

    __slots__ = ("closed_reason", "first", "first_seen", "held", "last_mono", "opened_mono", "release",
                 "shutdown_notice", "task", "ws")

    def __init__(self, ws: ClientConnection, hold: bool) -> None:
        self.ws = ws
        self.task: asyncio.Task[None] | None = None
        self.opened_mono = _monotonic()
        self.last_mono = self.opened_mono
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.first_seen = asyncio.Event()
        self.first: tuple[str, int] | None = None  # (symbol, sequence) of the first update
        self.held: tuple[Any, ...] | None = None
        self.closed_reason: str | None = None
        self.shutdown_notice = False

    @property
    def finished(self) -> bool:
        return self.task is None or self.task.done()

    def abort(self, reason: str) -> None:
        """Drop the connection now (no close handshake: a silent peer would not answer)."""
        if self.closed_reason is None:
            self.closed_reason = reason
        transport = self.ws.transport
        if transport is not None:
            transport.abort()
        if self.task is not None:
            self.task.cancel()

    async def wait(self) -> None:
        """Wait for the reader to end (its outcome is in ``closed_reason``, never raised)."""
        if self.task is not None:
            await asyncio.wait({self.task})


class StreamConnection:
    """One supervised combined-stream connection (≤1024 streams) writing into MarketState."""

    def __init__(self, kind: Kind, base_url: str, streams: Sequence[str], state: MarketState, *,
                 name: str | None = None, stale_after_s: float = 10.0, backoff: Backoff | None = None,
                 limiter: ConnectionAttemptLimiter = PROCESS_LIMITER, open_timeout_s: float = 10.0,
                 rotate_timeout_s: float | None = None, healthy_after_s: float = 5.0,
                 sleep: Sleep = asyncio.sleep, ping_interval_s: float | None = 20.0) -> None:
        if not streams:
            raise ValueError("a connection needs at least one stream")
        if len(streams) > MAX_STREAMS_PER_CONNECTION:
            raise ValueError(f"{len(streams)} streams exceed {MAX_STREAMS_PER_CONNECTION} per connection")
        if stale_after_s <= 0:
            raise ValueError("stale_after_s must be positive")
        self.kind: Kind = kind
        self.streams = list(streams)
        url_streams, self._subscribe_batches = plan_subscription(self.streams)
        self.url = combined_url(base_url, url_streams)
        self.state = state
        self.symbols = [s.split("@", 1)[0].upper() for s in self.streams]
        self.stale_after_s = stale_after_s
        self.backoff = backoff or Backoff()
        self.limiter = limiter
        self.open_timeout_s = open_timeout_s
        self.rotate_timeout_s = rotate_timeout_s if rotate_timeout_s is not None else max(stale_after_s, 5.0)
        self.healthy_after_s = healthy_after_s
        self.ping_interval_s = ping_interval_s
        self._sleep = sleep
        self.health = StreamHealth(name=name or f"{kind}:{self.streams[0]}+{len(self.streams) - 1}",
                                   url=self.url, streams=len(self.streams))
        parsers: dict[str, tuple[Callable[..., Any], Callable[..., int]]] = {
            "book": (parse_book_ticker, state.apply_book), "mark": (parse_mark_price, state.apply_mark),
            "kline": (parse_kline, state.apply_kline)}
        self._parse, self._apply = parsers[kind]
        self._current: _Leg | None = None
        self._lock = asyncio.Lock()  # one connect at a time: supervisor reconnect vs rotate
        self._closing = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._rotate_task: asyncio.Task[bool] | None = None
        self._lost = False  # the current connection ended unplanned; the next connect is a reconnect
        self._ready = asyncio.Event()
        self._errors = _RateLimitedLog()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [asyncio.create_task(self._supervise(), name=f"stream-supervisor {self.health.name}"),
                       asyncio.create_task(self._watchdog(), name=f"stream-watchdog {self.health.name}")]

    async def close(self) -> None:
        self._closing = True
        tasks = self._tasks
        if self._rotate_task is not None:
            tasks = [*tasks, self._rotate_task]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        leg, self._current = self._current, None
        if leg is not None:
            await self._close_leg(leg, "closed")
        self.health.state = "closed"

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the connection has delivered its first message."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    @property
    def is_open(self) -> bool:
        leg = self._current
        return leg is not None and not leg.finished

    # -- supervision ---------------------------------------------------------------------

    async def _supervise(self) -> None:
        first = True
        while not self._closing:
            async with self._lock:
                leg = self._current
                if leg is None or leg.finished:
                    leg = await self._connect_until_open(first)
                    first = False
                    if self._lost:
                        self.health.reconnects += 1
                        # The old socket is gone, so the next update is the truth whatever its id.
                        self.state.resync(self.symbols, book=self.kind == "book", mark=self.kind == "mark")
                    self._current = leg
                self._lost = False  # a rotation may have replaced a dying connection meanwhile
            await leg.wait()
            if leg is self._current and not self._closing:
                self._lost = True
                lived = _monotonic() - leg.opened_mono
                if lived >= self.healthy_after_s and leg.last_mono > leg.opened_mono:
                    self.backoff.reset()  # it was a working connection, not a flapping one
                self._errors.warning("lost", "market stream %s lost (%s) after %.1fs; reconnecting",
                                     self.health.name, leg.closed_reason or "closed", lived)

    async def _connect_until_open(self, first: bool) -> _Leg:
        """Open a leg, retrying with backoff for as long as it takes (cancel to stop).

        Every attempt but a connection's very first waits its backoff delay, so a server
        that accepts and drops at once is retried exponentially slower, not in a loop.
        """
        wait = not first
        while True:
            if wait:
                delay = self.backoff.next_delay()
                self.health.state = "backoff"
                self.health.last_backoff_s = delay
                await self._sleep(delay)
            wait = True
            try:
                return await self._open_leg(hold=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged; backoff and reconnect (CancelledError re-raised above)
                self.health.last_error = f"{exc.__class__.__name__}: {exc}"
                self._errors.warning("connect", "market stream %s connect failed: %s", self.health.name,
                                     self.health.last_error)

    async def _open_leg(self, hold: bool) -> _Leg:
        await self.limiter.acquire()
        self.health.attempts += 1
        self.health.state = "connecting"
        ws = await connect(self.url, open_timeout=self.open_timeout_s, close_timeout=1.0,
                           ping_interval=self.ping_interval_s, ping_timeout=self.ping_interval_s,
                           compression=None, max_size=2**20)
        leg = _Leg(ws, hold)
        leg.task = asyncio.create_task(self._read(leg), name=f"stream-reader {self.health.name}")
        try:
            for n, batch in enumerate(self._subscribe_batches, start=1):
                if n > 1:
                    await asyncio.sleep(SUBSCRIBE_INTERVAL_S)
                await ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": batch, "id": n}).decode())
        except BaseException:
            leg.abort("subscribe failed")
            raise
        self.health.connects += 1
        self.health.connected_since_mono = leg.opened_mono
        self.health.state = "open"
        return leg

    async def _watchdog(self) -> None:
        period = max(0.02, min(1.0, self.stale_after_s / 4))
        while not self._closing:
            await asyncio.sleep(period)
            leg = self._current
            if leg is None or leg.finished:
                continue
            silent = _monotonic() - leg.last_mono
            if silent > self.stale_after_s and leg.closed_reason is None:
                self.health.stale_kills += 1
                self._errors.warning("stale", "market stream %s silent for %.1fs: replacing it",
                                     self.health.name, silent)
                leg.abort("stale")

    async def _close_leg(self, leg: _Leg, reason: str) -> None:
        if leg.closed_reason is None:
            leg.closed_reason = reason
        try:
            await asyncio.wait_for(leg.ws.close(), 1.5)
        except Exception:  # noqa: BLE001 - closing a leg being dropped: any failure aborts its transport instead
            leg.abort(reason)
        if leg.task is not None and not leg.task.done():
            leg.task.cancel()
        await leg.wait()

    # -- planned reconnect ---------------------------------------------------------------

    async def rotate(self) -> bool:
        """Make-before-break reconnect. Returns False (old connection kept) if the new one
        could not be opened or did not deliver within ``rotate_timeout_s``."""
        if self._closing:
            return False
        async with self._lock:
            old = self._current
            if old is None or old.finished:
                return False  # nothing to hand over from; the supervisor is reconnecting
            self.health.state = "rotating"
            deadline = _monotonic() + self.rotate_timeout_s
            new: _Leg | None = None
            try:
                new = await asyncio.wait_for(self._open_leg(hold=True), self.rotate_timeout_s)
                await asyncio.wait_for(self._first_update(new), max(0.0, deadline - _monotonic()))
            except asyncio.CancelledError:
                if new is not None:
                    new.abort("cancelled")
                raise
            except Exception as exc:  # noqa: BLE001 - logged and counted; the old connection keeps serving
                self.health.failed_rotations += 1
                self.health.last_error = f"rotate: {exc.__class__.__name__}: {exc}"
                log.warning("market stream %s rotation failed (%s); keeping the old connection",
                            self.health.name, self.health.last_error)
                if new is not None:
                    await self._close_leg(new, "rotation failed")
                self.health.state = "open" if not old.finished else "connecting"
                return False
            await self._catch_up(old, new, deadline)
            self._current = new
            new.release.set()
            self.health.rotations += 1
            self.health.state = "open"
        await self._close_leg(old, "rotated")
        return True

    async def _first_update(self, leg: _Leg) -> None:
        waiter = asyncio.ensure_future(leg.first_seen.wait())
        try:
            await asyncio.wait({waiter, leg.task}, return_when=asyncio.FIRST_COMPLETED)  # type: ignore[arg-type]
        finally:
            waiter.cancel()
        if leg.first is None:
            raise ConnectionError(f"new connection ended before its first update ({leg.closed_reason})")

    async def _catch_up(self, old: _Leg, new: _Leg, deadline: float) -> None:
        """Wait until the old socket has applied the new socket's first update (or is gone)."""
        assert new.first is not None
        symbol, seq = new.first
        while not old.finished and _monotonic() < deadline:
            st = self.state.get(symbol)
            if self.kind == "kline":
                held = self.state.kline_event_ms(symbol)
            else:
                held = st.update_id if (st is not None and self.kind == "book") else (
                    st.mark_event_ms if st is not None else -1)
            if held >= seq:
                return
            await asyncio.sleep(0.001)
        if not old.finished:
            log.warning("market stream %s: old connection did not catch up to %s %s before the rotation "
                        "deadline; switching anyway (updates in between may be skipped)",
                        self.health.name, symbol, seq)

    # -- reading -------------------------------------------------------------------------

    def _on_other(self, leg: _Leg, msg: Any, raw: bytes, exc: Exception) -> None:
        """Everything that is not a data update: shutdown notices, acks, malformed frames."""
        data = msg.get("data", msg) if isinstance(msg, dict) else None
        event = data.get("e") if isinstance(data, dict) else None
        if event == "serverShutdown":
            self.health.server_shutdowns += 1
            leg.shutdown_notice = True
            log.info("market stream %s: serverShutdown received; reconnecting", self.health.name)
            if leg is self._current and (self._rotate_task is None or self._rotate_task.done()):
                self._rotate_task = asyncio.create_task(self.rotate(),
                                                        name=f"stream-rotate {self.health.name}")
            return
        if isinstance(msg, dict) and "result" in msg and "id" in msg:
            return  # subscription acknowledgement
        self.health.parse_errors += 1
        self._errors.warning("parse", "market stream %s: malformed frame (%s: %s): %.200r", self.health.name,
                             exc.__class__.__name__, exc, raw)

    async def _read(self, leg: _Leg) -> None:
        ws = leg.ws
        try:
            if not leg.release.is_set():
                await self._read_until_held(leg)
            if self.kind == "book":
                await self._read_books(leg)
            else:
                await self._read_generic(leg)
        except ConnectionClosed as exc:
            if leg.closed_reason is None:
                leg.closed_reason = f"closed by server ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        except asyncio.CancelledError:
            if leg.closed_reason is None:
                leg.closed_reason = "cancelled"
        except Exception as exc:  # never die silently: the supervisor reconnects
            leg.closed_reason = f"{exc.__class__.__name__}: {exc}"
            log.exception("market stream %s reader failed", self.health.name)
        finally:
            transport = ws.transport
            if transport is not None and not transport.is_closing():
                transport.abort()

    async def _read_books(self, leg: _Leg) -> None:
        """The bookTicker hot loop: everything per frame is inlined (this is the
        throughput the strategy gets); any irregular frame falls through to _on_other."""
        recv = leg.ws.recv
        health = self.health
        apply = self.state.apply_book
        on_other = self._on_other
        ready = self._ready
        is_ready = ready.is_set()
        sleep0 = asyncio.sleep
        count = 0
        while True:
            raw = await recv(decode=False)
            now = _monotonic()
            leg.last_mono = now
            health.frames += 1
            health.last_message_mono = now
            count += 1
            if not count & YIELD_EVERY_MASK:
                # recv() does not suspend while frames are buffered, so in a burst the
                # strategy would wait for the whole backlog; let it run now and then.
                await sleep0(0)
            msg: Any = None
            try:
                msg = _loads(raw)
                d = msg["data"]
                s = d["s"]
                u = d["u"]
                b = d["b"]
                bq = d["B"]
                a = d["a"]
                aq = d["A"]
                if (u.__class__ is not int or b.__class__ is not str or bq.__class__ is not str
                        or a.__class__ is not str or aq.__class__ is not str or s.__class__ is not str):
                    _check_book((s, u, b, bq, a, aq))  # raises with the details
            except Exception as exc:  # noqa: BLE001 - a malformed frame goes to on_other, which counts and logs it
                on_other(leg, msg, raw, exc)
                continue
            result = apply(s, u, b, bq, a, aq, now, _wall())
            if result == 1:  # APPLIED
                health.applied += 1
                if not is_ready:
                    ready.set()
                    is_ready = True
            elif result == 2:  # CONFLATED
                health.applied += 1
                health.conflated += 1
            else:
                health.duplicates += 1

    async def _read_generic(self, leg: _Leg) -> None:
        recv = leg.ws.recv
        health = self.health
        parse = self._parse
        apply = self._apply
        on_other = self._on_other
        ready = self._ready
        while True:
            raw = await recv(decode=False)
            now = _monotonic()
            leg.last_mono = now
            health.frames += 1
            health.last_message_mono = now
            msg: Any = None
            try:
                msg = _loads(raw)
                args = parse(msg["data"])
            except Exception as exc:  # noqa: BLE001 - a malformed frame goes to on_other, which counts and logs it
                on_other(leg, msg, raw, exc)
                continue
            result = apply(*args, now, _wall())
            if result == DROPPED:
                health.duplicates += 1
            else:
                health.applied += 1
                if result == CONFLATED:
                    health.conflated += 1
                if not ready.is_set():
                    ready.set()

    async def _read_until_held(self, leg: _Leg) -> None:
        """First phase of a rotation leg: read until one update is parsed, hold it until
        released, then apply it (the sequence rule drops it if the old leg had it)."""
        while leg.held is None:
            raw = await leg.ws.recv(decode=False)
            leg.last_mono = _monotonic()
            self.health.frames += 1
            self.health.last_message_mono = leg.last_mono
            msg: Any = None
            try:
                msg = _loads(raw)
                args = self._parse(msg["data"])
            except Exception as exc:  # noqa: BLE001 - a malformed frame goes to on_other, which counts and logs it
                self._on_other(leg, msg, raw, exc)
                continue
            leg.held = args
            leg.first = (args[0], args[1])
            leg.first_seen.set()
        await leg.release.wait()
        result = self._apply(*leg.held, leg.last_mono, _wall())
        if result == DROPPED:
            self.health.duplicates += 1
        else:
            self.health.applied += 1
            self._ready.set()


class MarketStream:
    """All connections for one kind of market stream over a symbol list (split at 1024)."""

    def __init__(self, kind: Kind, base_url: str, symbols: Iterable[str], state: MarketState, *,
                 per_connection: int = MAX_STREAMS_PER_CONNECTION, intervals: Sequence[str] = ("1m",),
                 **options: Any) -> None:
        names = list(symbols)
        if kind == "kline":
            streams = [stream_name(kind, s, iv) for s in names for iv in intervals]
        else:
            streams = [stream_name(kind, s) for s in names]
        if not streams:
            raise ValueError("no symbols to stream")
        self.kind = kind
        self.state = state
        self.connections = [
            StreamConnection(kind, base_url, group, state, name=f"{kind}#{n}", **options)
            for n, group in enumerate(split_streams(streams, per_connection))
        ]

    async def start(self) -> None:
        for conn in self.connections:
            conn.start()

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Until every connection has delivered its first message (``TimeoutError`` after
        ``timeout``). Cancelled (a stop during start-up), it cancels its waits quietly: a
        cancelled ``gather`` under ``wait_for`` left a never-retrieved exception in the log."""
        waits = [asyncio.ensure_future(c.wait_ready()) for c in self.connections]
        try:
            _, pending = await asyncio.wait(waits, timeout=timeout)
        finally:
            for w in waits:
                w.cancel()
        if pending:
            raise TimeoutError(f"{self.kind} stream: {len(pending)} connection(s) not ready")
        for w in waits:
            w.result()

    async def rotate(self) -> bool:
        """Planned reconnect of every connection, one after another; True if all rotated."""
        results = [await conn.rotate() for conn in self.connections]
        return all(results)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.connections))

    def health(self) -> list[StreamHealth]:
        return [c.health for c in self.connections]

    async def __aenter__(self) -> MarketStream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def book_ticker_stream(endpoints: Endpoints, symbols: Iterable[str], state: MarketState,
                       **options: Any) -> MarketStream:
    """Spot ``<symbol>@bookTicker`` over combined streams on ``endpoints.spot_stream``."""
    return MarketStream("book", endpoints.spot_stream, symbols, state, **options)


def kline_stream(endpoints: Endpoints, symbols: Iterable[str], state: MarketState,
                 intervals: Sequence[str], **options: Any) -> MarketStream:
    """Spot ``<symbol>@kline_<interval>`` for every symbol and interval, into ``state``'s candles."""
    state.track_candles(intervals)
    return MarketStream("kline", endpoints.spot_stream, symbols, state, intervals=intervals, **options)


def mark_price_stream(endpoints: Endpoints, symbols: Iterable[str], state: MarketState,
                      **options: Any) -> MarketStream:
    """USD-M ``<symbol>@markPrice@1s`` over combined streams on the futures ``/market`` route."""
    return MarketStream("mark", endpoints.futures_market_stream, symbols, state, **options)
