"""The supervision both user-data streams (spot WS API, futures listenKey) share.

This module owns what is the same whichever way the user data arrives:

* ``UserStreamHealth``: the counters the status display reads;
* ``ActivityWatch``: expected order events and whether one is overdue (silent-stall check);
* ``GapFillRunner``: runs the gap fill after every (re)subscribe, retrying with backoff;
* ``StreamSession``: one connection's reader task, its attention flag and how it is closed;
* ``SupervisedUserStream``: the supervisor loop (connect with backoff and jitter, never
  giving up; gap fill after every connection; serve the connection until it must be
  replaced), make-before-break ``rotate``, ``serverShutdown`` handling, the stall watchdog,
  awaited one-at-a-time delivery (backpressure, no drop) and shutdown.

What differs stays with each stream: how a connection is opened and subscribed, how
frames are parsed, what its own attention reasons mean (``_on_attention``), and any extra
watchdog work such as the spot ``session.status`` probe (``_watch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Generic, Protocol, Self, TypeVar

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from executor.exchange.binance_events import Event, ExecutionReport, FuturesOrderUpdate
from executor.exchange.market_stream import Backoff
from executor.exchange.stream_limits import ConnectionAttemptLimiter

__all__ = [
    "ActivityWatch",
    "Deliver",
    "GapFill",
    "GapFillRunner",
    "Gate",
    "StreamSession",
    "SupervisedUserStream",
    "UserStreamHealth",
]

log = logging.getLogger(__name__)

Deliver = Callable[[Event], Awaitable[None]]
GapFill = Callable[[str], Awaitable[Any]]
_monotonic = time.monotonic


class Gate(Protocol):
    """The REST gateway's ``BanGate``: closed after a 429/418 until its Retry-After."""

    async def wait(self) -> None: ...

    @property
    def is_open(self) -> bool: ...


@dataclass
class UserStreamHealth:
    """Counters of one user stream, for the status display and tests."""

    name: str
    state: str = "idle"  # idle, connecting, open, backoff, rotating, closed
    attempts: int = 0  # connections tried
    connects: int = 0  # connections opened and subscribed
    reconnects: int = 0  # connections after an unplanned loss
    subscribes: int = 0  # successful (re)subscriptions, all causes
    resubscribes: int = 0  # on the same connection (eventStreamTerminated, subscription lost)
    rotations: int = 0  # completed make-before-break reconnects (daily, serverShutdown)
    failed_rotations: int = 0
    server_shutdowns: int = 0
    terminated: int = 0  # eventStreamTerminated / subscription reported inactive
    stalls: int = 0  # expected events that never came: connection replaced
    probes: int = 0
    probe_timeouts: int = 0
    events: int = 0  # user events handed to the consumer
    malformed: int = 0
    gap_fills: int = 0
    gap_fill_errors: int = 0
    last_gap_fill_reason: str | None = None
    last_event_mono: float | None = None
    connected_since_mono: float | None = None
    last_backoff_s: float = 0.0
    last_error: str | None = None
    # futures only
    keepalives: int = 0
    keepalive_errors: int = 0
    key_recreations: int = 0  # new listenKey after expiry or -1125
    keys_expired: int = 0  # listenKeyExpired events

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ActivityWatch:
    """Expected user events and whether one is overdue.

    ``expect(client_id)`` after sending or seeing a change of that order; an event of that
    order (``c`` or ``C``) meets it. ``expect()`` without an id is met by any event.
    """

    def __init__(self, stall_after_s: float, clock: Callable[[], float] = _monotonic) -> None:
        if stall_after_s <= 0:
            raise ValueError("stall_after_s must be positive")
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._pending: dict[str | None, float] = {}

    def expect(self, client_id: str | None = None) -> None:
        self._pending.setdefault(client_id, self._clock())

    def withdraw(self, client_id: str | None = None) -> None:
        """The exchange definitely did not act on this order (rejected, never placed):
        no event will come, so stop waiting for one."""
        self._pending.pop(client_id, None)

    def seen(self, event: Event) -> None:
        if not self._pending:
            return
        self._pending.pop(None, None)
        if isinstance(event, ExecutionReport):
            self._pending.pop(event.client_order_id, None)
            self._pending.pop(event.orig_client_order_id, None)
        elif isinstance(event, FuturesOrderUpdate):
            self._pending.pop(event.client_order_id, None)

    def overdue(self) -> bool:
        now = self._clock()
        return any(now - since > self.stall_after_s for since in self._pending.values())

    @property
    def pending(self) -> int:
        return len(self._pending)

    def reset(self) -> None:
        """Forget expectations: a gap fill is about to fetch whatever they were waiting for."""
        self._pending.clear()


class GapFillRunner:
    """Runs ``gap_fill`` for a stream, counting, and retrying failures with backoff."""

    def __init__(self, gap_fill: GapFill, health: UserStreamHealth, *,
                 backoff: Backoff | None = None) -> None:
        self._gap_fill = gap_fill
        self._health = health
        self._backoff = backoff or Backoff(base_s=1.0, cap_s=60.0)
        self._tasks: set[asyncio.Task[None]] = set()
        self._retry: asyncio.Task[None] | None = None
        self.closed = False

    async def run(self, reason: str) -> bool:
        try:
            await self._gap_fill(reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged, counted and retried (CancelledError re-raised above)
            self._health.gap_fill_errors += 1
            self._health.last_error = f"gap fill ({reason}): {type(exc).__name__}: {exc}"
            log.warning("%s: gap fill (%s) failed, will retry: %s", self._health.name, reason, exc)
            self._schedule_retry(reason)
            return False
        self._health.gap_fills += 1
        self._health.last_gap_fill_reason = reason
        self._backoff.reset()
        log.info("%s: gap fill (%s) done", self._health.name, reason)
        return True

    def spawn(self, reason: str) -> None:
        if self.closed:
            return
        task = asyncio.get_running_loop().create_task(self.run(reason), name=f"gap-fill {reason}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _schedule_retry(self, reason: str) -> None:
        if self.closed or (self._retry is not None and not self._retry.done()):
            return

        async def later() -> None:
            await asyncio.sleep(self._backoff.next_delay())
            self._retry = None  # this run may schedule the next retry
            if not self.closed:
                await self.run(f"retry:{reason}"[:64])

        self._retry = asyncio.get_running_loop().create_task(later(), name="gap-fill retry")

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        self.closed = True
        for task in [*self._tasks, *([self._retry] if self._retry else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class StreamSession:
    """One user-data connection: its reader task and why it needs the supervisor's attention.

    Subclasses implement ``_read_frames`` (the ``async for`` over ``ws``); a close or an
    error of the reader marks the session dead and wakes the supervisor.
    """

    def __init__(self, ws: ClientConnection, owner: SupervisedUserStream[Any]) -> None:
        self.ws = ws
        self.owner = owner
        self.attention = asyncio.Event()
        self.reason = ""
        self.dead = False
        self.shutdown_seen = False
        self.reader = asyncio.get_running_loop().create_task(self._read(), name=f"{owner.health.name} reader")

    def flag(self, reason: str, *, dead: bool) -> None:
        if not self.reason or dead:
            self.reason = reason
        self.dead = self.dead or dead
        self.attention.set()

    async def _read_frames(self) -> None:
        raise NotImplementedError

    def _reader_done(self) -> None:
        """Called once the reader has stopped, before the supervisor is woken."""

    async def _read(self) -> None:
        try:
            await self._read_frames()
        except ConnectionClosed as exc:
            self.flag(f"closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})", dead=True)
        except Exception as exc:  # a bug must not leave a silent, dead reader behind
            log.exception("%s: reader failed", self.owner.health.name)
            self.flag(f"reader error: {type(exc).__name__}", dead=True)
        finally:
            self.dead = True
            self._reader_done()
            self.flag(self.reason or "closed", dead=True)

    async def close(self) -> None:
        self.dead = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 2.0)
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


S = TypeVar("S", bound=StreamSession)


class SupervisedUserStream(Generic[S]):
    """The supervisor shared by both user streams (see the module docstring).

    A subclass provides ``_open`` (a new, subscribed connection), ``_on_attention`` (what
    a flagged connection's reason means) and may extend ``_watchable`` / ``_watch`` /
    ``_watch_tick_s`` (extra watchdog work) and ``_error_text`` (redaction).
    """

    gap_reasons: tuple[str, str] = ("start", "reconnect")  # first connection, later ones

    def __init__(self, deliver: Deliver, gap_fill: GapFill, *, name: str, stall_after_s: float,
                 open_timeout_s: float, ping_interval_s: float, backoff: Backoff | None,
                 gap_backoff: Backoff | None, limiter: ConnectionAttemptLimiter | None) -> None:
        self._deliver_to = deliver
        self.health = UserStreamHealth(name)
        self.activity = ActivityWatch(stall_after_s)
        self.gaps = GapFillRunner(gap_fill, self.health, backoff=gap_backoff)
        self.open_timeout_s = open_timeout_s
        self.ping_interval_s = ping_interval_s
        self.backoff = backoff or Backoff(base_s=0.5, cap_s=30.0)
        self.limiter = limiter
        self._current: S | None = None
        self._switch = asyncio.Lock()
        self._deliver_lock = asyncio.Lock()
        self._delivering = False
        self._closing = False
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ subclass hooks

    async def _open(self, *, rotating: bool) -> S:
        """A new connection, subscribed and ready to deliver events."""
        raise NotImplementedError

    async def _on_attention(self, session: S) -> str | None:
        """Handle a flagged session: None to keep serving it, else why it must be replaced."""
        raise NotImplementedError

    def _error_text(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}"

    def _watch_tick_s(self) -> float:
        return max(0.01, min(1.0, self.activity.stall_after_s / 4))

    def _watchable(self, session: S) -> bool:
        return not session.dead

    async def _watch(self, session: S) -> None:
        """Extra watchdog work on a live, unstalled session."""

    # ------------------------------------------------------------------ public

    async def start(self) -> None:
        """Start supervising (returns at once; ``wait_ready`` waits for the first connection)."""
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._supervise(), name=f"{self.health.name} supervisor"),
                       loop.create_task(self._watchdog(), name=f"{self.health.name} watchdog")]

    async def wait_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    def expect_event(self, client_order_id: str | None = None) -> None:
        """Call after sending (or seeing over REST) a change of this order: its event must
        arrive within ``stall_after_s`` or the stream is declared stalled."""
        self.activity.expect(client_order_id)

    def withdraw_expectation(self, client_order_id: str | None = None) -> None:
        """Undo ``expect_event`` when the exchange definitely did not act (a rejected
        placement or cancel sends no event)."""
        self.activity.withdraw(client_order_id)

    async def rotate(self, reason: str = "daily") -> bool:
        """Make-before-break reconnect: open + subscribe a new connection, gap-fill, then
        close the old one. False (and nothing changed) if there is no open connection or
        the new one could not be opened."""
        async with self._switch:
            old = self._current
            if old is None or old.dead or self._closing:
                return False
            self.health.state = "rotating"
            try:
                new = await self._open(rotating=True)
            except Exception as exc:  # noqa: BLE001 - logged and counted; the old connection keeps serving
                self.health.failed_rotations += 1
                self.health.last_error = f"rotate: {self._error_text(exc)}"
                self.health.state = "open"
                log.warning("%s: rotation (%s) failed, keeping the old connection: %s",
                            self.health.name, reason, self._error_text(exc))
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

    async def close(self) -> None:
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

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ events

    async def deliver(self, event: Event) -> None:
        """Hand one parsed event to the consumer (one at a time), counting it as activity."""
        async with self._deliver_lock:
            self._delivering = True
            try:
                await self._deliver_to(event)
            finally:
                self._delivering = False
        self.health.events += 1
        self.health.last_event_mono = _monotonic()
        self.activity.seen(event)

    def report_malformed(self, why: str) -> None:
        """A frame that could not be parsed: counted, logged, and a gap fill requested."""
        # It cannot be applied; whatever it carried is recovered from REST by a gap fill
        # (requests made while one runs coalesce in the reconciler).
        self.health.malformed += 1
        log.warning("%s: malformed user-data frame: %s", self.health.name, why)
        self.gaps.spawn("malformed_event")

    # ------------------------------------------------------------------ supervision

    async def _supervise(self) -> None:
        first = True
        while not self._closing:
            self.health.state = "connecting"
            try:
                async with self._switch:
                    self._current = await self._open(rotating=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged, then backoff and reconnect (CancelledError re-raised above)
                delay = self.backoff.next_delay()
                self.health.state = "backoff"
                self.health.last_backoff_s = delay
                self.health.last_error = f"connect: {self._error_text(exc)}"
                log.warning("%s: connect failed (%s); retrying in %.2f s", self.health.name,
                            self.health.last_error, delay)
                await asyncio.sleep(delay)
                continue
            self.backoff.reset()
            self.health.state = "open"
            if not first:
                self.health.reconnects += 1
            self._ready.set()
            self.gaps.spawn(self.gap_reasons[0] if first else self.gap_reasons[1])
            first = False
            await self._follow()

    async def _follow(self) -> None:
        """Serve the current connection until it must be replaced by a fresh one."""
        while not self._closing:
            session = self._current
            assert session is not None
            await session.attention.wait()
            if session is not self._current:
                continue  # rotated away; the rotation closed it
            session.attention.clear()
            reason = await self._on_attention(session)
            if reason is None:
                continue
            log.warning("%s: connection lost (%s); reconnecting", self.health.name, reason)
            self.health.last_error = reason
            async with self._switch:
                await session.close()
                if self._current is not session:
                    continue  # a rotation replaced it meanwhile: serve the new one
                self._current = None
            return

    async def _rotate_for_shutdown(self, session: S) -> bool:
        """``serverShutdown``: planned, so open the new connection before the old one goes,
        if it still can. True if that worked and the old session needs nothing more."""
        session.shutdown_seen = False
        self.health.server_shutdowns += 1
        return not session.dead and await self.rotate("server_shutdown")

    async def _watchdog(self) -> None:
        tick = self._watch_tick_s()
        while not self._closing:
            await asyncio.sleep(tick)
            session = self._current
            if session is None or not self._watchable(session):
                continue
            if self.activity.overdue():
                self.health.stalls += 1
                log.warning("%s: expected user events did not arrive within %.1f s: stream stalled; "
                            "replacing the connection", self.health.name, self.activity.stall_after_s)
                self.activity.reset()
                session.flag("stalled", dead=True)
                continue
            await self._watch(session)
