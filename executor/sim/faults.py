"""The fault switchboard: misbehaviour the embedded exchange performs on demand.

The exchange's transports consult this object at fixed points (order placement, every
REST response, event publication, open connections) so a test can make the next order
answer 503 after it was placed, accept the next order but lose its answer and let it
reach the book only N ms later (``late_orders``: until then every query -- GET order,
openOrders, allOrders -- answers as if it did not exist, and its user events come when it
is placed), hold a response past the client's timeout, answer a burst of 429s, cut or
stall every WebSocket of one kind, send ``serverShutdown``, or duplicate, reorder and
delay user events. Everything here is plain state plus the one
socket lifecycle (``ServerSocket``) every sim WebSocket shares, so the switchboard can act
on any connection the same way. Nothing is random: a fault happens exactly when and as
often as it was asked for, so runs are reproducible given the seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from executor.sim import wire_json

if TYPE_CHECKING:
    from executor.sim.bus import UserEventBus
    from executor.sim.clock import SimClock

WS_KINDS = ("market", "ws_api", "futures_market", "futures_public", "private")
Event = dict[str, Any]


@dataclass(frozen=True)
class OrderFailure:
    """How the next order request fails. ``placed``: the order still reaches the book."""

    http_status: int = 503          # 503 (or any 5xx), or 400 with code -1007
    code: int | None = None         # e.g. -1007 TIMEOUT; None means a bare 5xx body
    placed: bool = True
    venue: str | None = None        # "spot" or "futures" order requests only; None: the next of either


@dataclass(frozen=True)
class LateOrder:
    """The next order request is accepted but its answer is lost -- ``http_status`` None
    cuts the connection without a response, else that status (e.g. 503) with a bare body --
    and the order reaches the engine only ``delay_ms`` of exchange time later. Until then
    nothing on the exchange knows it (queries answer -2013, no user event)."""

    delay_ms: int
    http_status: int | None = None


@dataclass
class _Conn:
    closer: Callable[[], Awaitable[None]]
    shutdown: Callable[[], Awaitable[None]] | None = None
    account: str | None = None
    stalled: bool = False


@dataclass
class ConnectionRegistry:
    """Every open WebSocket, by kind ("market", "ws_api", "futures_market", "futures_public", "private")."""

    _conns: dict[str, dict[int, _Conn]] = field(default_factory=dict)

    def add(self, kind: str, conn_id: int, closer: Callable[[], Awaitable[None]], *,
            shutdown: Callable[[], Awaitable[None]] | None = None, account: str | None = None) -> None:
        """Register a connection. ``closer`` cuts it abruptly; ``shutdown`` (optional) sends
        ``serverShutdown`` first; ``account`` lets a stall target one account's sockets."""
        self._conns.setdefault(kind, {})[conn_id] = _Conn(closer, shutdown, account)

    def remove(self, kind: str, conn_id: int) -> None:
        self._conns.get(kind, {}).pop(conn_id, None)

    def count(self, kind: str) -> int:
        return len(self._conns.get(kind, {}))

    def _select(self, kind: str | None, account: str | None = None) -> list[tuple[str, int, _Conn]]:
        kinds = [kind] if kind else list(self._conns)
        return [(k, cid, c) for k in kinds for cid, c in list(self._conns.get(k, {}).items())
                if account is None or c.account == account]

    async def drop(self, kind: str | None = None) -> int:
        """Close every connection of ``kind`` (all kinds if None); returns how many."""
        selected = self._select(kind)
        for _, _, conn in selected:
            await conn.closer()
        return len(selected)

    async def shutdown(self, kind: str | None = None) -> int:
        """Send ``serverShutdown`` on every connection of ``kind`` then close it."""
        selected = self._select(kind)
        for _, _, conn in selected:
            await (conn.shutdown or conn.closer)()
        return len(selected)

    def stall(self, kind: str, account: str | None = None) -> int:
        """Stop delivering user events on the open connections of ``kind`` (optionally only
        ``account``'s) while they stay open. New connections are not stalled."""
        selected = self._select(kind, account)
        for _, _, conn in selected:
            conn.stalled = True
        return len(selected)

    def unstall(self, kind: str | None = None) -> None:
        for _, _, conn in self._select(kind):
            conn.stalled = False

    def set_account(self, kind: str, conn_id: int, account: str | None) -> None:
        """The connection logged in as ``account`` (a stall may target it from now on)."""
        conn = self._conns.get(kind, {}).get(conn_id)
        if conn is not None:
            conn.account = account

    def is_stalled(self, kind: str, conn_id: int) -> bool:
        conn = self._conns.get(kind, {}).get(conn_id)
        return bool(conn and conn.stalled)


@dataclass
class EventFaults:
    """Misdelivery of user events, applied by ``UserEventBus.filter`` to every transport.

    Counters are consumed per published event on ``channel`` (None: any channel):
    ``duplicate`` delivers the next N events twice; ``reorder`` holds each of the next N
    events back until the event after it has been delivered (swapping neighbours);
    ``delay`` holds the next N events for ``delay_ms`` of exchange time.
    """

    duplicate: int = 0
    reorder: int = 0
    delay: int = 0
    delay_ms: int = 0
    channel: str | None = None
    _held: list[tuple[str, str, Event]] = field(default_factory=list)
    _delayed: list[tuple[int, str, str, Event]] = field(default_factory=list)

    @property
    def delayed(self) -> int:
        """Events held back by ``delay_ms`` and not yet released."""
        return len(self._delayed)

    @property
    def idle(self) -> bool:
        """No fault armed and nothing held or delayed: ``apply`` would pass the event as is."""
        return not (self.duplicate or self.reorder or self.delay or self._held or self._delayed)

    def apply(self, account: str, channel: str, event: Event, now_ms: int) -> list[Event]:
        if self.channel is not None and channel != self.channel:
            return [event]
        out: list[Event]
        if self.delay > 0:
            self.delay -= 1
            self._delayed.append((now_ms + self.delay_ms, account, channel, event))
            return []
        if self.reorder > 0 and not any(a == account and c == channel for a, c, _ in self._held):
            self.reorder -= 1
            self._held.append((account, channel, event))
            return []
        out = [event]
        if self.duplicate > 0:
            self.duplicate -= 1
            out.append(event)
        # A held (reordered) event goes out right after the one that overtook it.
        for held in [h for h in self._held if h[0] == account and h[1] == channel]:
            self._held.remove(held)
            out.append(held[2])
        return out

    def due(self, now_ms: int, flush: bool = False) -> list[tuple[str, str, Event]]:
        """Delayed events whose time has come (all held events if ``flush``)."""
        ready = [d for d in self._delayed if flush or d[0] <= now_ms]
        for d in ready:
            self._delayed.remove(d)
        out = [(a, c, e) for _, a, c, e in ready]
        if flush:
            out += self._held
            self._held.clear()
        return out

    def clear(self) -> None:
        self.duplicate = self.reorder = self.delay = self.delay_ms = 0
        self.channel = None


@dataclass
class Faults:
    order_failures: deque[OrderFailure] = field(default_factory=deque)
    late_orders: deque[LateOrder] = field(default_factory=deque)
    hold_responses: int = 0          # how many REST responses to hold
    hold_seconds: float = 0.0        # wall seconds to hold each one
    hold_path: str = ""              # "": spot REST (/api/, /sapi/); else paths starting with it
    rate_limit_burst: int = 0        # answer this many REST requests with 429
    waf_blocks: int = 0              # answer this many REST requests with a WAF 403 (HTML, no code)
    connections: ConnectionRegistry = field(default_factory=ConnectionRegistry)
    events: EventFaults = field(default_factory=EventFaults)
    _bus: UserEventBus | None = None
    _clock: SimClock | None = None
    _pump: asyncio.TimerHandle | None = None
    # Orders accepted under a LateOrder fault, waiting to reach the engine:
    # (due exchange ms, the placement to run then).
    _late: list[tuple[int, Callable[[], Any]]] = field(default_factory=list)
    _late_pump: asyncio.TimerHandle | None = None
    late_accepted: list[tuple[str, int]] = field(default_factory=list)  # (client id, exchange ms)
    late_placed: int = 0

    def take_order_failure(self, venue: str = "spot") -> OrderFailure | None:
        """The first queued failure meant for ``venue``'s order requests (or for any venue)."""
        for failure in self.order_failures:
            if failure.venue in (None, venue):
                self.order_failures.remove(failure)
                return failure
        return None

    def take_late_order(self) -> LateOrder | None:
        return self.late_orders.popleft() if self.late_orders else None

    def place_later(self, delay_ms: int, place: Callable[[], Any], client_id: str = "") -> None:
        """Run ``place`` (the engine placement of an accepted order) ``delay_ms`` of
        exchange time from now; ``late_accepted`` notes the order and when it came."""
        if self._clock is None:
            raise RuntimeError("faults are not bound to an exchange (call bind(sim))")
        now = self._clock.now_ms()
        self.late_accepted.append((client_id, now))
        self._late.append((now + delay_ms, place))
        self._schedule_late()

    def _schedule_late(self) -> None:
        if self._late_pump is not None or not self._late:
            return
        self._late_pump = asyncio.get_running_loop().call_later(0.005, self._release_late)

    def _release_late(self) -> None:
        self._late_pump = None
        if self._clock is None:
            return
        now = self._clock.now_ms()
        due = [item for item in self._late if item[0] <= now]
        for item in due:
            self._late.remove(item)
            self.late_placed += 1
            item[1]()
        self._schedule_late()

    def take_hold(self, path: str) -> float | None:
        """The seconds to hold the response to ``path``, if a hold is armed for it."""
        if self.hold_responses <= 0:
            return None
        if not (path.startswith(self.hold_path) if self.hold_path else path.startswith(("/api/", "/sapi/"))):
            return None
        self.hold_responses -= 1
        return self.hold_seconds

    def take_429(self) -> bool:
        if self.rate_limit_burst > 0:
            self.rate_limit_burst -= 1
            return True
        return False

    def take_waf(self) -> bool:
        if self.waf_blocks > 0:
            self.waf_blocks -= 1
            return True
        return False

    # -- switches (the admin routes call these too) ---------------------------------------

    def fail_orders(self, n: int, *, http_status: int = 503, code: int | None = None,
                    placed: bool = True, venue: str | None = None) -> None:
        """The next ``n`` order requests answer ``http_status`` (with ``code`` if given),
        after placing the order when ``placed``, without when not; ``venue`` ("spot" or
        "futures") limits them to that venue's order requests."""
        for _ in range(n):
            self.order_failures.append(OrderFailure(http_status, code, placed, venue))

    def late_order(self, n: int, delay_ms: int, *, http_status: int | None = None) -> None:
        """The next ``n`` orders are accepted, their answers lost (connection cut, or
        ``http_status``), and they reach the book ``delay_ms`` exchange ms later."""
        if delay_ms < 0:
            raise ValueError("delay_ms must not be negative")
        for _ in range(n):
            self.late_orders.append(LateOrder(delay_ms, http_status))

    def hold(self, n: int, seconds: float, path: str = "") -> None:
        """Hold the next ``n`` REST responses ``seconds`` each (their effects happen at once):
        spot's (/api/, /sapi/) by default, or only those whose path starts with ``path``
        (e.g. ``/fapi/v1/userTrades``: a slow futures gap fill)."""
        self.hold_responses, self.hold_seconds, self.hold_path = n, seconds, path

    def burst_429(self, n: int) -> None:
        self.rate_limit_burst = n

    def waf_block(self, n: int) -> None:
        """The next ``n`` REST requests are refused by the WAF: HTTP 403, an HTML page, no
        Binance code, and nothing done (rest-api.md: 403 = WAF limit violated)."""
        self.waf_blocks = n

    def skew_clock(self, ms: int) -> None:
        if self._clock is None:
            raise RuntimeError("faults are not bound to an exchange (call bind(sim))")
        self._clock.skew_ms = ms

    def duplicate_events(self, n: int, channel: str | None = None) -> None:
        self.events.duplicate, self.events.channel = n, channel

    def reorder_events(self, n: int, channel: str | None = None) -> None:
        self.events.reorder, self.events.channel = n, channel

    def delay_events(self, n: int, delay_ms: int, channel: str | None = None) -> None:
        self.events.delay, self.events.delay_ms, self.events.channel = n, delay_ms, channel

    def flush_events(self) -> int:
        """Deliver every held or delayed event now; returns how many."""
        if self._bus is None:
            return 0
        released = self.events.due(0, flush=True)
        for account, channel, event in released:
            self._bus.deliver(account, channel, event)
        return len(released)

    def reset(self) -> None:
        """Switch every fault off (held events are delivered, stalls lifted)."""
        self.order_failures.clear()
        self.late_orders.clear()  # orders already accepted still reach the book when due
        self.hold_responses, self.hold_seconds, self.rate_limit_burst = 0, 0.0, 0
        self.waf_blocks = 0
        self.flush_events()
        self.events.clear()
        self.connections.unstall()
        if self._clock is not None:
            self._clock.skew_ms = 0

    # -- wiring ---------------------------------------------------------------------------

    def bind(self, sim: Any) -> None:
        """Hook the event faults into ``sim.bus`` and learn ``sim.clock``. Idempotent."""
        if self._bus is sim.bus:
            return
        self._bus, self._clock = sim.bus, sim.clock
        sim.bus.filter = self._filter

    def _filter(self, account: str, channel: str, event: Event) -> list[Event]:
        if self.events.idle:
            return [event]  # the usual case, on every user event: nothing to apply
        assert self._clock is not None
        out = self.events.apply(account, channel, event, self._clock.now_ms())
        if self.events.delayed:
            self._schedule_pump()
        return out

    def _schedule_pump(self) -> None:
        if self._pump is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: delayed events wait for flush_events()
        self._pump = loop.call_later(0.01, self._release_due)

    def _release_due(self) -> None:
        self._pump = None
        if self._bus is None or self._clock is None:
            return
        for account, channel, event in self.events.due(self._clock.now_ms()):
            self._bus.deliver(account, channel, event)
        if self.events.delayed:
            self._schedule_pump()


# -- the socket lifecycle every sim WebSocket shares ---------------------------------------

_conn_ids = itertools.count(1)


@dataclass(frozen=True)
class SocketRules:
    """Server-side connection rules in exchange seconds.

    ``min_wall_*`` floors keep a fast clock from pinging in a tight loop or cutting a
    healthy client that needs a few wall milliseconds to answer a ping.
    """

    ping_every_s: float = 20.0
    pong_timeout_s: float = 60.0
    max_age_s: float = 24 * 3600.0
    min_wall_ping_s: float = 0.25
    min_wall_pong_s: float = 3.0


SPOT_RULES = SocketRules()
# The stored futures docs say ping every 3 min, pong within 10 min [uncertain in reference.md].
FUTURES_RULES = SocketRules(ping_every_s=180.0, pong_timeout_s=600.0)


def shutdown_event(now_ms: int) -> Event:
    return {"e": "serverShutdown", "E": now_ms}


class _Resume:
    """Awaitable that finishes, inside a task, a coroutine that was started outside one
    (``ServerSocket._send_inline``) and suspended on ``waiting``: it hands the task what the
    coroutine waits on and passes the outcome (or a cancellation) back into it."""

    def __init__(self, coro: Any, waiting: Any) -> None:
        self._coro = coro
        self._waiting = waiting

    def __await__(self) -> Any:
        coro, waiting = self._coro, self._waiting
        while True:
            try:
                yield waiting
            except BaseException as exc:  # noqa: BLE001 - a cancellation goes into the coroutine
                try:
                    waiting = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                waiting = coro.send(None)
            except StopIteration as stop:
                return stop.value


_RESUME = object()  # in the send queue: finish the inline send that had to wait first


def _text_frame(message: Any) -> bytes:
    """One unmasked, uncompressed, final WebSocket text frame carrying ``message``."""
    payload = (message if isinstance(message, str) else wire_json.dumps(message)).encode()
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 65536:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + payload


class ServerSocket:
    """One accepted aiohttp WebSocket with Binance's lifecycle on the sim clock.

    Sends go through a queue so synchronous bus listeners can ``enqueue`` without
    blocking and order is kept. The socket registers itself in ``faults.connections``
    under ``kind`` so it can be dropped, shut down or stalled. ``run`` returns when the
    connection is over (client close, max age, pong timeout, drop or shutdown).

    ``send_inline`` (a max-speed replay's market streams): a message enqueued while nothing
    is queued or being sent is written to the socket at once, in the caller, instead of by
    the writer task one event-loop turn later. The frame and the order are the same; what
    goes is a task wake-up per frame. If the write has to wait for the transport to drain
    (back-pressure), the writer task finishes it and later messages queue behind it.

    Messages queued together (an order's user events) leave in one transport write, as the
    same frames (``_write_batch``), when the connection is uncompressed and not backed up.
    """

    TICK_S = 0.02

    def __init__(self, request: web.Request, kind: str, clock: SimClock, faults: Faults, *,
                 rules: SocketRules = SPOT_RULES, account: str | None = None,
                 shutdown_frame: Callable[[int], Any] = shutdown_event, send_inline: bool = False) -> None:
        self.request = request
        self.send_inline = send_inline
        self._writer_busy = False
        self._resume: _Resume | None = None
        self.kind = kind
        self.clock = clock
        self.faults = faults
        self.rules = rules
        self.account = account
        self.conn_id = next(_conn_ids)
        self.ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
        self.opened_ms = clock.now_ms()
        self.close_reason = ""
        self._shutdown_frame = shutdown_frame
        self._out: asyncio.Queue[Any] = asyncio.Queue()
        self._done = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_ping_wall = time.monotonic()
        self._next_ping_ms = self.opened_ms + int(rules.ping_every_s * 1000)
        self._awaiting_pong_since: tuple[int, float] | None = None

    @property
    def stalled(self) -> bool:
        return self.faults.connections.is_stalled(self.kind, self.conn_id)

    @property
    def closed(self) -> bool:
        return self._done.is_set() or self.ws.closed

    async def prepare(self) -> None:
        await self.ws.prepare(self.request)
        self.faults.connections.add(self.kind, self.conn_id, self.drop, shutdown=self.server_shutdown,
                                    account=self.account)

    def set_account(self, account: str | None) -> None:
        self.account = account
        self.faults.connections.set_account(self.kind, self.conn_id, account)

    @property
    def queued(self) -> int:
        """Messages queued and not yet sent."""
        return self._out.qsize()

    def enqueue(self, message: Any) -> None:
        """Queue a JSON-able message (or pre-encoded str) for sending, in order."""
        if self.closed:
            return
        if self.send_inline and not self._writer_busy and self._resume is None and self._out.empty():
            self._send_inline(message)
            return
        self._out.put_nowait(message)

    def _send_inline(self, message: Any) -> None:
        coro = self._send_now(message)
        try:
            waiting = coro.send(None)
        except StopIteration:
            return
        except (ConnectionError, RuntimeError):  # as the writer task: the connection is over
            self._done.set()
            return
        # Written, but waiting for the transport to drain: the writer task finishes it.
        self._resume = _Resume(coro, waiting)
        self._out.put_nowait(_RESUME)

    async def drop(self) -> None:
        """Cut the connection without a close handshake, as a network failure would."""
        self.close_reason = "dropped"
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        self._done.set()

    async def server_shutdown(self) -> None:
        self.close_reason = "serverShutdown"
        with contextlib.suppress(Exception):
            await self._send_now(self._shutdown_frame(self.clock.now_ms()))
        await self.close()

    async def close(self, code: int = 1000, message: bytes = b"") -> None:
        self._done.set()
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=message)

    async def _send_now(self, message: Any) -> None:
        text = message if isinstance(message, str) else wire_json.dumps(message)
        await self.ws.send_str(text)

    async def _writer(self) -> None:
        out = self._out
        while not self._done.is_set():
            message = await out.get()
            self._writer_busy = True
            try:
                if message is _RESUME:
                    resume, self._resume = self._resume, None
                    if resume is not None:
                        await resume
                elif out.empty() or self.send_inline or not self._write_batch(message):
                    await self._send_now(message)
            except (ConnectionError, RuntimeError):
                self._done.set()
                return
            finally:
                self._writer_busy = False

    def _write_batch(self, first: Any) -> bool:
        """``first`` and the messages queued behind it (an order's user events come four at
        a time) as the same text frames, in one transport write instead of one per frame.
        Only while nothing is waiting in the transport and the connection is uncompressed
        (the frames are then exactly the bytes aiohttp's writer makes: FIN, text opcode, no
        mask from a server, RFC 6455 5.2); False (nothing taken) otherwise."""
        transport = self.request.transport
        if self.ws.compress or self.ws.closed or transport is None or transport.is_closing() \
                or transport.get_write_buffer_size():
            return False
        frames = [_text_frame(first)]
        out = self._out
        while not out.empty():  # no _RESUME among them: that needs send_inline
            frames.append(_text_frame(out.get_nowait()))
        transport.write(b"".join(frames))
        return True

    async def _timers(self, on_tick: Callable[[int], Awaitable[None]] | None) -> None:
        rules = self.rules
        while not self._done.is_set():
            await asyncio.sleep(self.TICK_S)
            now = self.clock.now_ms()
            if now - self.opened_ms >= rules.max_age_s * 1000:
                self.close_reason = "max age"
                await self.close()
                return
            wall = time.monotonic()
            if self._awaiting_pong_since is not None:
                sent_ms, sent_wall = self._awaiting_pong_since
                if now - sent_ms > rules.pong_timeout_s * 1000 and wall - sent_wall > rules.min_wall_pong_s:
                    self.close_reason = "pong timeout"
                    await self.close()
                    return
            elif now >= self._next_ping_ms and wall - self._last_ping_wall >= rules.min_wall_ping_s:
                self._last_ping_wall = wall
                self._next_ping_ms = now + int(rules.ping_every_s * 1000)
                self._awaiting_pong_since = (now, wall)
                with contextlib.suppress(Exception):
                    await self.ws.ping(str(now).encode())
            if on_tick is not None:
                await on_tick(now)

    async def run(self, on_text: Callable[[str], Awaitable[None]] | None = None,
                  on_tick: Callable[[int], Awaitable[None]] | None = None) -> None:
        """Serve until the connection ends. ``on_text`` handles client text frames;
        ``on_tick`` runs on every timer tick with the exchange time (stream emitters)."""
        self._tasks = [asyncio.create_task(self._writer()), asyncio.create_task(self._timers(on_tick))]
        reader = asyncio.create_task(self._reader(on_text))
        try:
            await self._done.wait()
        finally:
            reader.cancel()
            for task in self._tasks:
                task.cancel()
            for task in (reader, *self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.faults.connections.remove(self.kind, self.conn_id)
            if not self.ws.closed:
                with contextlib.suppress(Exception):
                    await self.ws.close()

    async def _reader(self, on_text: Callable[[str], Awaitable[None]] | None) -> None:
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.PING:
                    await self.ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    self._awaiting_pong_since = None
                elif msg.type == WSMsgType.TEXT and on_text is not None:
                    await on_text(msg.data)
        finally:
            if not self.close_reason:
                self.close_reason = "client closed"
            self._done.set()
