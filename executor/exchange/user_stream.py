"""Spot user data over the WebSocket API, supervised (and the pieces both user streams share).

python-binance's ws-api user socket does not resubscribe after its reconnect (it then
waits forever) and its full queue (100) kills the socket, so the bot runs its own client
on ``websockets``. ``SpotUserStream``:

* connects to ``Endpoints.spot_ws_api`` and sends ``userDataStream.subscribe.signature``
  (``apiKey``, ``timestamp``, ``recvWindow``, ``signature``: ``ws_sign.WsSigner``);
  frames ``{"subscriptionId", "event"}`` are parsed (``core.events``) and handed to
  ``deliver`` one at a time, awaited: the reader never queues more than ``websockets``'
  own small buffer, so a slow consumer slows the reader (TCP backpressure) and no user
  event is ever dropped. ``reconciler_sink`` adapts the reconciler to this (submit, and
  drain whenever its queue reaches a high-water mark);
* reconnects on any close or error with exponential backoff and jitter, never giving up,
  and SUBSCRIBES AGAIN on every new connection; after every (re)subscribe the gap
  procedure runs: ``gap_fill(reason)`` (the reconciler holds stream events while it
  rebuilds the picture from REST, then releases them; idempotent application absorbs
  the overlap). Subscribing *before* the gap fill means no event can fall between the
  REST picture and the stream. A failed gap fill is retried with backoff;
* ``eventStreamTerminated`` (or a probe saying the subscription is gone) resubscribes on
  the same connection, then gap-fills; ``serverShutdown`` starts a planned
  make-before-break reconnect; ``rotate()`` is the daily one before the 24 h cut: a new
  connection is opened and subscribed first, the gap fill runs, then the old connection
  is closed (events seen on both are duplicates the reconciler absorbs);
* a silent subscription on a live socket is detected two ways, because the WS API pushes
  no heartbeat and an answered probe proves only the socket, not the subscription:
  (1) every ``probe_every_s`` a ``session.status`` request must be answered within
  ``response_timeout_s`` and must report ``userDataStream: true``; (2) activity
  expectations: whoever sends or observes an order change calls ``expect_event(client_id)``
  and the matching executionReport must arrive within ``stall_after_s``. A missed
  expectation means the stream is stalled, whatever the probe says: the connection is
  replaced (resubscribe + gap fill). A missed probe while our consumer is the one holding
  the reader up is not held against the connection.

Health counters (``health``) feed the status display.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from executor.core.events import (
    Event,
    EventStreamTerminated,
    ExecutionReport,
    FuturesOrderUpdate,
    MalformedEvent,
    parse_user_event,
)
from executor.exchange.market_stream import Backoff
from executor.exchange.stream_limits import PROCESS_LIMITER, ConnectionAttemptLimiter
from executor.exchange.ws_sign import WsSigner

__all__ = [
    "ActivityWatch",
    "Deliver",
    "GapFill",
    "GapFillRunner",
    "SpotUserStream",
    "UserStreamHealth",
    "WsApiError",
    "reconciler_sink",
    "spot_user_stream_for",
]

log = logging.getLogger(__name__)

Deliver = Callable[[Event], Awaitable[None]]
GapFill = Callable[[str], Awaitable[Any]]
_monotonic = time.monotonic

INVALID_TIMESTAMP = -1021
DEFAULT_HIGH_WATER = 1000


class Gate(Protocol):
    """The REST gateway's ``BanGate``: closed after a 429/418 until its Retry-After."""

    async def wait(self) -> None: ...


class WsApiError(Exception):
    """A WS API request answered with an error status."""

    def __init__(self, method: str, status: int, code: int | None, msg: str) -> None:
        self.method, self.status, self.code, self.msg = method, status, code, msg
        super().__init__(f"{method}: HTTP {status} code {code}: {msg}")


class _Consumer(Protocol):
    def submit(self, event: Any) -> None: ...

    @property
    def queued(self) -> int: ...

    async def drain(self) -> None: ...


def reconciler_sink(reconciler: _Consumer, high_water: int = DEFAULT_HIGH_WATER) -> Deliver:
    """A ``Deliver`` for the reconciler: ``submit`` (never blocks), and when its writer has
    ``high_water`` events queued, apply them before reading on (backpressure, no drop)."""
    if high_water < 1:
        raise ValueError("high_water must be at least 1")

    async def deliver(event: Event) -> None:
        reconciler.submit(event)
        if reconciler.queued >= high_water:
            await reconciler.drain()

    return deliver


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
        except Exception as exc:
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


class _Session:
    """One WS API connection: its reader, pending requests and subscription."""

    def __init__(self, ws: ClientConnection, owner: SpotUserStream) -> None:
        self.ws = ws
        self.owner = owner
        self.sub_id: int | None = None
        self.pending: dict[str, asyncio.Future[Any]] = {}
        self.attention = asyncio.Event()
        self.reason = ""
        self.dead = False
        self.shutdown_seen = False
        self.reader = asyncio.get_running_loop().create_task(self._read(), name=f"{owner.health.name} reader")
        self.last_probe_mono = _monotonic()

    def flag(self, reason: str, *, dead: bool) -> None:
        if not self.reason or dead:
            self.reason = reason
        self.dead = self.dead or dead
        self.attention.set()

    async def request(self, method: str, params: dict[str, Any], timeout_s: float) -> Any:
        req_id = f"{method}-{next(self.owner._ids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[req_id] = future
        try:
            await self.ws.send(orjson.dumps({"id": req_id, "method": method, "params": params}).decode())
            reply = await asyncio.wait_for(future, timeout_s)
        finally:
            self.pending.pop(req_id, None)
        status = reply.get("status")
        if status != 200:
            err = reply.get("error") or {}
            raise WsApiError(method, int(status or 0), err.get("code"), str(err.get("msg", "")))
        return reply.get("result")

    async def _read(self) -> None:
        owner = self.owner
        try:
            async for raw in self.ws:
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    owner._malformed("frame is not JSON")
                    continue
                if not isinstance(obj, dict):
                    owner._malformed("frame is not an object")
                    continue
                if "id" in obj and "status" in obj:
                    future = self.pending.get(str(obj["id"]))
                    if future is not None and not future.done():
                        future.set_result(obj)
                    continue
                if "subscriptionId" in obj:
                    await self._on_event(obj)
                    continue
                inner = obj.get("event")
                if isinstance(inner, dict) and inner.get("e") == "serverShutdown":
                    log.info("%s: serverShutdown received", owner.health.name)
                    self.shutdown_seen = True
                    self.flag("serverShutdown", dead=False)
                    continue
                log.debug("%s: ignoring frame with keys %s", owner.health.name, sorted(obj)[:5])
        except ConnectionClosed as exc:
            self.flag(f"closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})", dead=True)
        except Exception as exc:  # a bug must not leave a silent, dead reader behind
            log.exception("%s: reader failed", owner.health.name)
            self.flag(f"reader error: {type(exc).__name__}", dead=True)
        finally:
            self.dead = True
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
            self.flag(self.reason or "closed", dead=True)

    async def _on_event(self, obj: dict[str, Any]) -> None:
        owner = self.owner
        try:
            event = parse_user_event(obj)
        except MalformedEvent as exc:
            owner._malformed(str(exc))
            return
        if isinstance(event, EventStreamTerminated):
            if event.subscription_id == self.sub_id:
                log.warning("%s: eventStreamTerminated for subscription %s", owner.health.name, self.sub_id)
                self.sub_id = None
                self.flag("eventStreamTerminated", dead=False)
            return
        await owner._deliver(event)

    async def close(self) -> None:
        self.dead = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 2.0)
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


class SpotUserStream:
    """Supervised spot user-data subscription over the WS API (see the module docstring)."""

    def __init__(self, url: str, signer: WsSigner, deliver: Deliver, gap_fill: GapFill, *,
                 name: str = "spot-user", probe_every_s: float = 30.0, response_timeout_s: float = 10.0,
                 stall_after_s: float = 10.0, open_timeout_s: float = 10.0,
                 ping_interval_s: float = 20.0, backoff: Backoff | None = None,
                 limiter: ConnectionAttemptLimiter | None = PROCESS_LIMITER, gate: Gate | None = None,
                 resync_clock: Callable[[], Awaitable[Any]] | None = None,
                 gap_backoff: Backoff | None = None) -> None:
        if probe_every_s <= 0 or response_timeout_s <= 0 or open_timeout_s <= 0:
            raise ValueError("probe_every_s, response_timeout_s and open_timeout_s must be positive")
        self.url = url
        self._signer = signer
        self._deliver_to = deliver
        self.health = UserStreamHealth(name)
        self.activity = ActivityWatch(stall_after_s)
        self.gaps = GapFillRunner(gap_fill, self.health, backoff=gap_backoff)
        self.probe_every_s = probe_every_s
        self.response_timeout_s = response_timeout_s
        self.open_timeout_s = open_timeout_s
        self.ping_interval_s = ping_interval_s
        self.backoff = backoff or Backoff(base_s=0.5, cap_s=30.0)
        self.limiter = limiter
        self.gate = gate
        self.resync_clock = resync_clock
        self._ids = itertools.count(1)
        self._current: _Session | None = None
        self._switch = asyncio.Lock()
        self._deliver_lock = asyncio.Lock()
        self._delivering = False
        self._closing = False
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ public

    async def start(self) -> None:
        """Start supervising (returns at once; ``wait_ready`` waits for the first subscription)."""
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._supervise(), name=f"{self.health.name} supervisor"),
                       loop.create_task(self._watchdog(), name=f"{self.health.name} watchdog")]

    async def wait_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    @property
    def subscription_id(self) -> int | None:
        return self._current.sub_id if self._current is not None else None

    def is_open(self) -> bool:
        cur = self._current
        return cur is not None and not cur.dead and cur.sub_id is not None

    def expect_event(self, client_order_id: str | None = None) -> None:
        """Call after sending (or seeing over REST) a change of this order: its
        executionReport must arrive within ``stall_after_s`` or the stream is declared stalled."""
        self.activity.expect(client_order_id)

    def withdraw_expectation(self, client_order_id: str | None = None) -> None:
        """Undo ``expect_event`` when the exchange definitely did not act (a rejected
        placement or cancel sends no executionReport)."""
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
                new = await self._open_session()
            except Exception as exc:
                self.health.failed_rotations += 1
                self.health.last_error = f"rotate: {type(exc).__name__}: {exc}"
                self.health.state = "open"
                log.warning("%s: rotation (%s) failed, keeping the old connection: %s",
                            self.health.name, reason, exc)
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

    async def __aenter__(self) -> SpotUserStream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ events

    async def _deliver(self, event: Event) -> None:
        async with self._deliver_lock:
            self._delivering = True
            try:
                await self._deliver_to(event)
            finally:
                self._delivering = False
        self.health.events += 1
        self.health.last_event_mono = _monotonic()
        self.activity.seen(event)

    def _malformed(self, why: str) -> None:
        # It cannot be applied; whatever it carried is recovered from REST by a gap fill
        # (requests made while one runs coalesce in the reconciler).
        self.health.malformed += 1
        log.warning("%s: malformed user-data frame: %s", self.health.name, why)
        self.gaps.spawn("malformed_event")

    # ------------------------------------------------------------------ connections

    async def _open_session(self) -> _Session:
        if self.gate is not None:
            await self.gate.wait()
        if self.limiter is not None:
            await self.limiter.acquire()
        self.health.attempts += 1
        ws = await connect(self.url, open_timeout=self.open_timeout_s, close_timeout=1.0,
                           ping_interval=self.ping_interval_s, ping_timeout=self.ping_interval_s,
                           compression=None, max_size=2**22)
        session = _Session(ws, self)
        try:
            await self._subscribe(session)
        except BaseException:
            await session.close()
            raise
        self.health.connects += 1
        self.health.connected_since_mono = _monotonic()
        return session

    async def _subscribe(self, session: _Session) -> None:
        try:
            result = await session.request("userDataStream.subscribe.signature", self._signer.sign(),
                                           self.response_timeout_s)
        except WsApiError as exc:
            if exc.code == INVALID_TIMESTAMP and self.resync_clock is not None:
                with contextlib.suppress(Exception):
                    await self.resync_clock()
            raise
        session.sub_id = int(result["subscriptionId"])
        session.reason = ""
        self.health.subscribes += 1
        self.activity.reset()
        log.info("%s: subscribed (subscription %s)", self.health.name, session.sub_id)

    async def _supervise(self) -> None:
        first = True
        while not self._closing:
            self.health.state = "connecting"
            try:
                async with self._switch:
                    session = await self._open_session()
                    self._current = session
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self.backoff.next_delay()
                self.health.state = "backoff"
                self.health.last_backoff_s = delay
                self.health.last_error = f"connect: {type(exc).__name__}: {exc}"
                log.warning("%s: connect/subscribe failed (%s); retrying in %.2f s",
                            self.health.name, exc, delay)
                await asyncio.sleep(delay)
                continue
            self.backoff.reset()
            self.health.state = "open"
            if not first:
                self.health.reconnects += 1
            self._ready.set()
            self.gaps.spawn("start" if first else "reconnect")
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
            reason = session.reason
            if session.shutdown_seen:
                # Planned: open the new connection before the old one goes, if it still can.
                session.shutdown_seen = False
                self.health.server_shutdowns += 1
                if not session.dead:
                    session.reason = ""
                    if await self.rotate("server_shutdown"):
                        continue
                reason = "serverShutdown"
            elif not session.dead and reason in ("eventStreamTerminated", "subscription lost"):
                self.health.terminated += 1
                try:
                    await self._subscribe(session)
                except Exception as exc:
                    log.warning("%s: resubscribe after %s failed (%s); reconnecting",
                                self.health.name, reason, exc)
                else:
                    self.health.resubscribes += 1
                    self.gaps.spawn("resubscribe")
                    continue
            elif not session.dead and not reason:
                continue
            log.warning("%s: connection lost (%s); reconnecting", self.health.name, reason or "closed")
            self.health.last_error = reason or "closed"
            async with self._switch:
                await session.close()
                if self._current is not session:
                    continue  # a rotation replaced it meanwhile: serve the new one
                self._current = None
            return

    # ------------------------------------------------------------------ stall detection

    async def _watchdog(self) -> None:
        tick = max(0.01, min(1.0, self.probe_every_s / 4, self.activity.stall_after_s / 4))
        while not self._closing:
            await asyncio.sleep(tick)
            session = self._current
            if session is None or session.dead or session.sub_id is None:
                continue
            if self.activity.overdue():
                self.health.stalls += 1
                log.warning("%s: expected user events did not arrive within %.1f s: stream stalled; "
                            "replacing the connection", self.health.name, self.activity.stall_after_s)
                self.activity.reset()
                session.flag("stalled", dead=True)
                continue
            if _monotonic() - session.last_probe_mono >= self.probe_every_s:
                session.last_probe_mono = _monotonic()
                await self._probe(session)

    async def _probe(self, session: _Session) -> None:
        self.health.probes += 1
        try:
            status = await session.request("session.status", {}, self.response_timeout_s)
        except TimeoutError:
            if self._delivering:
                return  # our consumer holds the reader up; the socket is not to blame
            self.health.probe_timeouts += 1
            log.warning("%s: session.status unanswered in %.1f s; replacing the connection",
                        self.health.name, self.response_timeout_s)
            session.flag("probe timeout", dead=True)
            return
        except (WsApiError, ConnectionError, ConnectionClosed) as exc:
            log.debug("%s: probe failed: %s", self.health.name, exc)
            return
        if isinstance(status, dict) and status.get("userDataStream") is False and session.sub_id is not None:
            log.warning("%s: session.status reports no user data subscription", self.health.name)
            session.sub_id = None
            session.flag("subscription lost", dead=False)

    async def probe_now(self) -> None:
        """Probe the current connection at once (tests, status command)."""
        session = self._current
        if session is not None and not session.dead:
            session.last_probe_mono = _monotonic()
            await self._probe(session)


def spot_user_stream_for(endpoints: Any, client: Any, reconciler: Any, gateway: Any = None, *,
                         recv_window_ms: int = 5000, high_water: int = DEFAULT_HIGH_WATER,
                         **options: Any) -> SpotUserStream:
    """The bot's wiring: ``endpoints.spot_ws_api``, signed with ``client``'s key, events to
    ``reconciler`` (``reconciler_sink``), gap fills by ``reconciler.gap_fill``; with a
    ``gateway`` its ``BanGate`` pauses reconnects and a -1021 on subscribe re-syncs its clock."""
    if gateway is not None:
        options.setdefault("gate", gateway.gate)
        options.setdefault("resync_clock", gateway.sync_clock)
    return SpotUserStream(endpoints.spot_ws_api, WsSigner(client, recv_window_ms=recv_window_ms),
                          reconciler_sink(reconciler, high_water), reconciler.gap_fill, **options)
