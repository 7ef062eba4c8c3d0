"""Spot user data over the WebSocket API, supervised.

python-binance's ws-api user socket does not resubscribe after its reconnect (it then
waits forever) and its full queue (100) kills the socket, so the bot runs its own client
on ``websockets``. ``SpotUserStream``:

* connects to ``Endpoints.spot_ws_api`` and sends ``userDataStream.subscribe.signature``
  (``apiKey``, ``timestamp``, ``recvWindow``, ``signature``: ``ws_sign.WsSigner``);
  frames ``{"subscriptionId", "event"}`` are parsed (``binance_events``) and handed to
  ``deliver`` one at a time, awaited: the reader never queues more than ``websockets``'
  own small buffer, so a slow consumer slows the reader (TCP backpressure) and no user
  event is ever dropped. ``reconciler_sink`` adapts the reconciler to this (each event
  translated into its venue-neutral report, ``binance_reports``; submit, and drain whenever
  the queue reaches a high-water mark);
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

Health counters (``health``) feed the status display. The supervision itself (backoff,
gap fills, rotation, stall watchdog) is shared with the futures stream and lives in
``stream_supervision``; this module adds the WS API session (requests, subscribe, the
``session.status`` probe) and ``reconciler_sink``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from executor.core.reports import Report
from executor.exchange.binance_events import Event, EventStreamTerminated, MalformedEvent, parse_user_event
from executor.exchange.binance_reports import user_event_report
from executor.exchange.market_stream import Backoff
from executor.exchange.stream_limits import PROCESS_LIMITER, ConnectionAttemptLimiter
from executor.exchange.stream_supervision import (
    ActivityWatch,
    Deliver,
    GapFill,
    GapFillRunner,
    Gate,
    StreamSession,
    SupervisedUserStream,
    UserStreamHealth,
    _monotonic,
)
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

INVALID_TIMESTAMP = -1021
DEFAULT_HIGH_WATER = 1000


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


def reconciler_sink(reconciler: _Consumer, high_water: int = DEFAULT_HIGH_WATER, *,
                    observe: Callable[[Report], None] | None = None) -> Deliver:
    """A ``Deliver`` for the reconciler: each event becomes its venue-neutral report
    (``binance_reports``; control events, which carry nothing to record, are not handed
    over), ``observe`` (if given) sees the report, then ``submit`` (never blocks); when the
    writer has ``high_water`` reports queued, they are applied before reading on
    (backpressure, no drop)."""
    if high_water < 1:
        raise ValueError("high_water must be at least 1")

    async def deliver(event: Event) -> None:
        report = user_event_report(event)
        if report is None:
            return
        if observe is not None:
            observe(report)
        reconciler.submit(report)
        if reconciler.queued >= high_water:
            await reconciler.drain()

    return deliver


class _Session(StreamSession):
    """One WS API connection: its reader, pending requests and subscription."""

    owner: SpotUserStream

    def __init__(self, ws: ClientConnection, owner: SpotUserStream) -> None:
        self.sub_id: int | None = None
        self.pending: dict[str, asyncio.Future[Any]] = {}
        self.last_probe_mono = _monotonic()
        super().__init__(ws, owner)

    async def request(self, method: str, params: dict[str, Any], timeout_s: float) -> Any:
        req_id = f"{method}-{self.owner.next_request_id()}"
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

    async def _read_frames(self) -> None:
        owner = self.owner
        async for raw in self.ws:
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                owner.report_malformed("frame is not JSON")
                continue
            if not isinstance(obj, dict):
                owner.report_malformed("frame is not an object")
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

    def _reader_done(self) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("connection closed"))

    async def _on_event(self, obj: dict[str, Any]) -> None:
        owner = self.owner
        try:
            event = parse_user_event(obj)
        except MalformedEvent as exc:
            owner.report_malformed(str(exc))
            return
        if isinstance(event, EventStreamTerminated):
            if event.subscription_id == self.sub_id:
                log.warning("%s: eventStreamTerminated for subscription %s", owner.health.name, self.sub_id)
                self.sub_id = None
                self.flag("eventStreamTerminated", dead=False)
            return
        await owner.deliver(event)


class SpotUserStream(SupervisedUserStream[_Session]):
    """Supervised spot user-data subscription over the WS API (see the module docstring).

    Public: ``start``, ``wait_ready``, ``close`` (and ``async with``), ``rotate``,
    ``expect_event``, ``withdraw_expectation``, ``is_open``, ``subscription_id``,
    ``probe_now``, ``health``, ``activity``, ``gaps``.
    """

    def __init__(self, url: str, signer: WsSigner, deliver: Deliver, gap_fill: GapFill, *,
                 name: str = "spot-user", probe_every_s: float = 30.0, response_timeout_s: float = 10.0,
                 stall_after_s: float = 10.0, open_timeout_s: float = 10.0,
                 ping_interval_s: float = 20.0, backoff: Backoff | None = None,
                 limiter: ConnectionAttemptLimiter | None = PROCESS_LIMITER, gate: Gate | None = None,
                 resync_clock: Callable[[], Awaitable[Any]] | None = None,
                 gap_backoff: Backoff | None = None) -> None:
        if probe_every_s <= 0 or response_timeout_s <= 0 or open_timeout_s <= 0:
            raise ValueError("probe_every_s, response_timeout_s and open_timeout_s must be positive")
        super().__init__(deliver, gap_fill, name=name, stall_after_s=stall_after_s,
                         open_timeout_s=open_timeout_s, ping_interval_s=ping_interval_s, backoff=backoff,
                         gap_backoff=gap_backoff, limiter=limiter)
        self.url = url
        self._signer = signer
        self.probe_every_s = probe_every_s
        self.response_timeout_s = response_timeout_s
        self.gate = gate
        self.resync_clock = resync_clock
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ public

    def next_request_id(self) -> int:
        """A number for the next WS API request id (unique for this stream's lifetime)."""
        return next(self._ids)

    @property
    def subscription_id(self) -> int | None:
        return self._current.sub_id if self._current is not None else None

    def is_open(self) -> bool:
        cur = self._current
        return cur is not None and not cur.dead and cur.sub_id is not None

    async def probe_now(self) -> None:
        """Probe the current connection at once (tests, status command)."""
        session = self._current
        if session is not None and not session.dead:
            session.last_probe_mono = _monotonic()
            await self._probe(session)

    # ------------------------------------------------------------------ connections

    async def _open(self, *, rotating: bool) -> _Session:
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

    async def _on_attention(self, session: _Session) -> str | None:
        reason = session.reason
        if session.shutdown_seen:
            return None if await self._rotate_for_shutdown(session) else "serverShutdown"
        if not session.dead and reason in ("eventStreamTerminated", "subscription lost"):
            # The connection is fine, only the subscription went: subscribe again on it
            # (after any Retry-After: a request inside it earns a 418).
            self.health.terminated += 1
            try:
                if self.gate is not None:
                    await self.gate.wait()
                await self._subscribe(session)
            except Exception as exc:  # noqa: BLE001 - logged; the supervisor reconnects and gap-fills
                log.warning("%s: resubscribe after %s failed (%s); reconnecting",
                            self.health.name, reason, exc)
            else:
                self.health.resubscribes += 1
                self.gaps.spawn("resubscribe")
                return None
        elif not session.dead and not reason:
            return None
        return reason or "closed"

    # ------------------------------------------------------------------ stall detection

    def _watch_tick_s(self) -> float:
        return max(0.01, min(1.0, self.probe_every_s / 4, self.activity.stall_after_s / 4))

    def _watchable(self, session: _Session) -> bool:
        return not session.dead and session.sub_id is not None

    async def _watch(self, session: _Session) -> None:
        if self.gate is not None and not self.gate.is_open:
            # The WS API shares the IP's request limits: a probe inside a Retry-After window
            # earns a 418 ban. The probe waits; the expected-event watchdog still runs.
            return
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
