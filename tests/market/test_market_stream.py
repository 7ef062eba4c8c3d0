"""The supervised stream client against a scripted loopback websockets server."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest

from executor.exchange.market_stream import (
    Backoff,
    MarketStream,
    StreamConnection,
    book_ticker_stream,
    mark_price_stream,
)
from executor.exchange.stream_limits import ConnectionAttemptLimiter
from executor.market import DROPPED, MarketState
from executor.venue.endpoints import Endpoints
from tests.market.fake_server import SHUTDOWN, FakeConn, FakeStreamServer, book, mark, wait_until

D = Decimal


def fresh_limiter() -> ConnectionAttemptLimiter:
    # Each test gets its own so tests cannot use up the process-wide budget.
    return ConnectionAttemptLimiter()


def endpoints_for(base: str) -> Endpoints:
    return Endpoints(name="fake", spot_rest="http://x/api", spot_stream=base, spot_ws_api="ws://x",
                     futures_rest="http://x/fapi", futures_stream=base)


async def hold_open(conn: FakeConn) -> None:
    await conn.ws.wait_closed()


class RecordingState(MarketState):
    """Records every update the state accepted, in order, to check continuity."""

    def __init__(self) -> None:
        super().__init__()
        self.accepted: list[tuple[str, int]] = []

    def apply_book(self, symbol: str, update_id: int, *rest: Any) -> int:  # type: ignore[override]
        result = super().apply_book(symbol, update_id, *rest)
        if result != DROPPED:
            self.accepted.append((symbol, update_id))
        return result


async def test_book_frames_land_in_state_exactly() -> None:
    async def handler(conn: FakeConn) -> None:
        await conn.send(book("BTCUSDT", 7, "65000.01000000", "0.00100000", "65000.02", "3"))
        await conn.send(book("ETHUSDT", 9, "3000.5", "10", "3000.6", "11"))
        await hold_open(conn)

    state = MarketState()
    async with FakeStreamServer(handler) as server:
        stream = book_ticker_stream(endpoints_for(server.base_url), ["BTCUSDT", "ETHUSDT"], state,
                                    limiter=fresh_limiter())
        async with stream:
            await wait_until(lambda: "ETHUSDT" in state and state["ETHUSDT"].has_book)
            assert server.conns[0].path == "/stream?streams=btcusdt@bookTicker/ethusdt@bookTicker"
    btc = state["BTCUSDT"]
    assert btc.bid == D("65000.01000000") and str(btc.bid) == "65000.01000000"
    assert (btc.bid_qty, btc.ask, btc.ask_qty, btc.update_id) == (D("0.001"), D("65000.02"), D("3"), 7)
    assert btc.book_recv_mono is not None and abs(btc.book_recv_mono - time.monotonic()) < 10
    assert btc.book_recv_wall is not None and abs(btc.book_recv_wall - time.time()) < 10
    assert state.take_changes().books == {"BTCUSDT", "ETHUSDT"}
    health = stream.health()[0]
    assert (health.frames, health.applied, health.connects, health.state) == (2, 2, 1, "closed")


async def test_mark_price_uses_the_futures_market_route() -> None:
    async def handler(conn: FakeConn) -> None:
        await conn.send(mark("BTCUSDT", 1000, "65010.12345678", "65005.1", "-0.00012", 1_800_000_000_000))
        await conn.send(mark("BTCUSDT", 999, "1", "1"))  # older event time: dropped
        await conn.send(mark("BTCUSDT", 2000, "65011.5", "65006"))
        await hold_open(conn)

    state = MarketState()
    async with FakeStreamServer(handler) as server:
        stream = mark_price_stream(endpoints_for(server.base_url), ["BTCUSDT"], state,
                                    limiter=fresh_limiter())
        async with stream:
            await wait_until(lambda: stream.health()[0].frames == 3)
            assert server.conns[0].path == "/market/stream?streams=btcusdt@markPrice@1s"
    s = state["BTCUSDT"]
    assert (s.mark, s.index, s.mark_event_ms) == (D("65011.5"), D("65006"), 2000)
    assert s.funding_rate == D("0.0001")
    assert stream.health()[0].duplicates == 1


async def test_malformed_frames_are_counted_and_never_kill_the_connection(
        caplog: pytest.LogCaptureFixture) -> None:
    bad: list[Any] = [b"not json", "[1,2]", "5", {"stream": "x", "data": {"u": 1}},
                      {"stream": "btcusdt@bookTicker", "data": {**book("BTCUSDT", 2)["data"], "b": 1.5}}]

    async def handler(conn: FakeConn) -> None:
        for frame in bad:
            await (conn.ws.send(frame) if isinstance(frame, bytes | str) else conn.send(frame))
        await conn.send({"result": None, "id": 1})  # an ack is not an error
        await conn.send(book("BTCUSDT", 3, "42"))
        await hold_open(conn)

    state = MarketState()
    async with FakeStreamServer(handler) as server:
        stream = book_ticker_stream(endpoints_for(server.base_url), ["BTCUSDT"], state,
                                    limiter=fresh_limiter())
        async with stream:
            await wait_until(lambda: "BTCUSDT" in state and state["BTCUSDT"].bid == D("42"))
            health = stream.health()[0]
            assert health.parse_errors == len(bad)
            assert health.connects == 1 and health.reconnects == 0
    assert sum("malformed frame" in r.message for r in caplog.records) == 1  # rate-limited


async def test_stalled_socket_is_detected_and_replaced() -> None:
    async def handler(conn: FakeConn) -> None:
        await conn.send(book("BTCUSDT", conn.index + 1))
        await hold_open(conn)  # open, answering pings, but silent

    state = MarketState()
    async with FakeStreamServer(handler) as server:
        conn = StreamConnection("book", server.base_url, ["btcusdt@bookTicker"], state, stale_after_s=0.3,
                                backoff=Backoff(0.01, 0.05), limiter=fresh_limiter())
        conn.start()
        try:
            await wait_until(lambda: len(server.conns) >= 2 and state["BTCUSDT"].update_id == 2)
            assert conn.health.stale_kills >= 1 and conn.health.reconnects >= 1
            await asyncio.wait_for(server.conns[0].closed.wait(), 5)  # the dead one was dropped
        finally:
            await conn.close()


def _recording_sleep() -> tuple[list[float], Callable[[float], Awaitable[None]]]:
    """A sleep that records each backoff delay and only yields (no wall-clock wait)."""
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0)

    return delays, sleep


async def test_server_close_reconnects_with_exponential_backoff_and_never_gives_up() -> None:
    async def handler(conn: FakeConn) -> None:
        if conn.index < 6:
            await conn.ws.close()  # accept, then drop at once
            return
        await conn.send(book("BTCUSDT", 1))
        await hold_open(conn)

    delays, recording_sleep = _recording_sleep()

    state = MarketState()
    async with FakeStreamServer(handler) as server:
        conn = StreamConnection("book", server.base_url, ["btcusdt@bookTicker"], state,
                                backoff=Backoff(0.1, 2.0, rng=lambda: 1.0), sleep=recording_sleep,
                                limiter=fresh_limiter())
        conn.start()
        try:
            await wait_until(lambda: "BTCUSDT" in state and state["BTCUSDT"].has_book)
            assert conn.health.connects == 7 and conn.health.reconnects == 6
        finally:
            await conn.close()
    # base·2ⁿ, capped at 2.0; with rng=1 the jitter factor is exactly 1.
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0])


def test_backoff_jitter_stays_within_half_to_full_ceiling() -> None:
    values = iter([0.0, 0.5, 0.999] * 20)
    backoff = Backoff(1.0, 8.0, rng=lambda: next(values))
    got = [backoff.next_delay() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8]
    for delay, ceiling in zip(got, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 1.0


async def test_server_shutdown_then_immediate_close_still_reconnects() -> None:
    async def handler(conn: FakeConn) -> None:
        await conn.send(book("BTCUSDT", conn.index + 1))
        if conn.index == 0:
            await conn.send(SHUTDOWN)
            await conn.ws.close()
            return
        await hold_open(conn)

    state = MarketState()
    async with FakeStreamServer(handler) as server:
        conn = StreamConnection("book", server.base_url, ["btcusdt@bookTicker"], state, stale_after_s=30,
                                backoff=Backoff(0.01, 0.05), limiter=fresh_limiter())
        conn.start()
        try:
            await wait_until(lambda: "BTCUSDT" in state and state["BTCUSDT"].update_id == 2)
            assert conn.health.server_shutdowns == 1 and conn.is_open
        finally:
            await conn.close()


class Broadcast:
    """A feed sending the same increasing updateIds to every open connection. Connections
    with an even index receive each frame ``lag_s`` late, so across a rotation the new
    socket is alternately ahead of and behind the old one, as on real networks."""

    def __init__(self, symbols: list[str], lag_s: float = 0.0) -> None:
        self.symbols = symbols
        self.lag_s = lag_s
        self.queues: dict[FakeConn, asyncio.Queue[tuple[float, dict[str, Any]]]] = {}
        self.u = 0

    async def handler(self, conn: FakeConn) -> None:
        queue: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        lag = self.lag_s if conn.index % 2 == 0 else 0.0
        self.queues[conn] = queue

        async def pump() -> None:
            while True:
                produced, frame = await queue.get()
                delay = produced + lag - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await conn.send(frame)

        sender = asyncio.create_task(pump())
        try:
            await asyncio.wait({sender, asyncio.ensure_future(conn.ws.wait_closed())},
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            sender.cancel()
            self.queues.pop(conn, None)

    async def run(self, period_s: float) -> None:
        while True:
            self.u += 1
            frame = book(self.symbols[self.u % len(self.symbols)], self.u)
            now = time.monotonic()
            for queue in list(self.queues.values()):
                queue.put_nowait((now, frame))
            await asyncio.sleep(period_s)


async def test_rotate_is_make_before_break_and_loses_no_update() -> None:
    feed = Broadcast(["BTCUSDT", "ETHUSDT"], lag_s=0.03)
    state = RecordingState()
    async with FakeStreamServer(feed.handler) as server:
        producer = asyncio.create_task(feed.run(0.001))
        conn = StreamConnection("book", server.base_url, ["btcusdt@bookTicker"], state, stale_after_s=5,
                                limiter=fresh_limiter())
        conn.start()
        try:
            await conn.wait_ready(5)
            for n in range(1, 4):
                before = len(state.accepted)
                assert await conn.rotate()
                await wait_until(lambda before=before: len(state.accepted) > before + 50)
                await asyncio.wait_for(server.conns[n - 1].closed.wait(), 5)
                assert not server.conns[n].closed.is_set()
        finally:
            producer.cancel()
            await conn.close()
    ids = [u for _, u in state.accepted]
    assert ids == list(range(ids[0], ids[-1] + 1))  # continuous: none missed, none applied twice
    assert conn.health.rotations == 3 and conn.health.connects == 4 and conn.health.reconnects == 0
    assert conn.health.duplicates > 0  # the connections really overlapped


async def test_server_shutdown_triggers_prompt_make_before_break_reconnect() -> None:
    feed = Broadcast(["BTCUSDT", "ETHUSDT"])

    async def handler(conn: FakeConn) -> None:
        if conn.index == 0:
            await conn.send(SHUTDOWN)  # Binance keeps serving for a while after the notice
        await feed.handler(conn)

    state = RecordingState()
    async with FakeStreamServer(handler) as server:
        producer = asyncio.create_task(feed.run(0.001))
        conn = StreamConnection("book", server.base_url, ["btcusdt@bookTicker", "ethusdt@bookTicker"],
                                state, stale_after_s=30, limiter=fresh_limiter())
        conn.start()
        try:
            await wait_until(lambda: len(server.conns) == 2)
            await asyncio.wait_for(server.conns[0].closed.wait(), 5)  # we closed the old one
            before = len(state.accepted)
            await wait_until(lambda: len(state.accepted) > before + 20)
        finally:
            producer.cancel()
            await conn.close()
    assert conn.health.server_shutdowns == 1 and conn.health.rotations == 1
    assert conn.health.stale_kills == 0 and conn.health.reconnects == 0
    ids = [u for _, u in state.accepted]
    assert ids == list(range(ids[0], ids[-1] + 1))


async def test_rotate_keeps_old_connection_when_new_one_never_delivers() -> None:
    async def handler(conn: FakeConn) -> None:
        if conn.index == 0:
            await conn.send(book("BTCUSDT", 1))
        await hold_open(conn)

    state = MarketState()
    async with FakeStreamServer(handler) as server:
        conn = StreamConnection("book", server.base_url, ["btcusdt@bookTicker"], state, stale_after_s=30,
                                rotate_timeout_s=0.3, limiter=fresh_limiter())
        conn.start()
        try:
            await conn.wait_ready(5)
            assert not await conn.rotate()
            assert conn.health.failed_rotations == 1 and conn.is_open
            await asyncio.wait_for(server.conns[1].closed.wait(), 5)
            assert not server.conns[0].closed.is_set()
        finally:
            await conn.close()


async def test_slow_consumer_conflates_instead_of_queueing() -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
    total = 20_000
    sent = asyncio.Event()

    async def handler(conn: FakeConn) -> None:
        for u in range(1, total + 1):
            await conn.ws.send(orjson.dumps(book(symbols[u % 3], u)).decode())
        sent.set()
        await hold_open(conn)

    state = MarketState()
    taken = 0
    growth: list[int] = []

    async def slow_strategy() -> None:
        nonlocal taken
        while True:
            changes = await state.wait_changes()
            taken += len(changes.books)
            await asyncio.sleep(0.02)  # a strategy far slower than the feed

    async with FakeStreamServer(handler) as server:
        conn = StreamConnection("book", server.base_url, [f"{s.lower()}@bookTicker" for s in symbols],
                                state, limiter=fresh_limiter())
        consumer = asyncio.create_task(slow_strategy())
        tracemalloc.start()
        try:
            conn.start()
            await wait_until(lambda: conn.health.frames >= 2000, timeout=20)
            base = tracemalloc.get_traced_memory()[0]
            await asyncio.wait_for(sent.wait(), 30)
            await wait_until(lambda: conn.health.frames == total, timeout=20)
            growth.append(tracemalloc.get_traced_memory()[0] - base)
        finally:
            tracemalloc.stop()
            consumer.cancel()
            await conn.close()
    h = conn.health
    assert h.applied == total and state.book_updates == total
    assert h.conflated > total // 2 and h.conflated == state.conflated
    assert taken + h.conflated + len(state._dirty_books) == total  # every update seen or counted
    assert growth[0] < 1_000_000  # 18k more frames did not grow memory


async def test_more_than_1024_streams_split_over_connections() -> None:
    symbols = [f"S{i}USDT" for i in range(2100)]

    async def handler(conn: FakeConn) -> None:
        await conn.send(book(conn.streams[0].split("@")[0].upper(), 1))
        async for msg in conn.ws:  # SUBSCRIBE batches for what did not fit in the URL
            req = orjson.loads(msg)
            assert req["method"] == "SUBSCRIBE"
            conn.streams += req["params"]
            await conn.send({"result": None, "id": req["id"]})

    state = MarketState()
    limiter = fresh_limiter()
    async with FakeStreamServer(handler) as server:
        stream = MarketStream("book", server.base_url, symbols, state, limiter=limiter)
        assert [c.health.streams for c in stream.connections] == [1024, 1024, 52]
        async with stream:
            await stream.wait_ready(10)
            await wait_until(lambda: sum(len(c.streams) for c in server.conns) >= 2100)
            assert len(server.conns) == 3 and limiter.in_window() == 3
            assert sorted(len(c.streams) for c in server.conns) == [52, 1024, 1024]
            got = sorted(s for c in server.conns for s in c.streams)
            assert got == sorted(f"{s.lower()}@bookTicker" for s in symbols)
            assert all(len(c.path) < 8000 for c in server.conns)
            assert sum(h.parse_errors for h in stream.health()) == 0  # acks are not errors


async def test_connection_attempts_stop_at_the_limiter() -> None:
    async def handler(conn: FakeConn) -> None:
        await conn.ws.close()

    frozen = ConnectionAttemptLimiter(max_attempts=3, window_s=300, clock=lambda: 0.0)
    state = MarketState()
    async with FakeStreamServer(handler) as server:
        conn = StreamConnection("book", server.base_url, ["btcusdt@bookTicker"], state,
                                backoff=Backoff(0.001, 0.002), limiter=frozen)
        conn.start()
        try:
            await wait_until(lambda: frozen.refused >= 1)
            assert len(server.conns) == 3 and conn.health.attempts == 3
        finally:
            await conn.close()


async def test_backoff_resets_after_a_healthy_connection() -> None:
    async def handler(conn: FakeConn) -> None:
        if conn.index < 4:
            await conn.send(book("BTCUSDT", conn.index + 1))  # it worked, then the network failed
            await asyncio.sleep(0.05)
            await conn.ws.close()
            return
        await conn.send(book("BTCUSDT", 100))
        await hold_open(conn)

    delays, recording_sleep = _recording_sleep()

    state = MarketState()
    async with FakeStreamServer(handler) as server:
        conn = StreamConnection("book", server.base_url, ["btcusdt@bookTicker"], state, healthy_after_s=0.01,
                                backoff=Backoff(0.1, 2.0, rng=lambda: 1.0), sleep=recording_sleep,
                                limiter=fresh_limiter())
        conn.start()
        try:
            await wait_until(lambda: "BTCUSDT" in state and state["BTCUSDT"].update_id == 100)
        finally:
            await conn.close()
    assert delays == pytest.approx([0.1, 0.1, 0.1, 0.1])  # no growth: each connection had worked


async def test_a_wait_for_the_first_message_cancelled_leaves_nothing_behind(
        caplog: pytest.LogCaptureFixture) -> None:
    """A stop during start-up cancels the wait for the first message: quietly (the gather
    under wait_for it replaced left a never-retrieved exception for the loop to log)."""
    import gc

    state = MarketState()
    async with FakeStreamServer(hold_open) as server:        # connects, never sends a frame
        stream = book_ticker_stream(endpoints_for(server.base_url), ["BTCUSDT", "ETHUSDT"], state,
                                    limiter=fresh_limiter())
        async with stream:
            waiting = asyncio.ensure_future(stream.wait_ready(10))
            await wait_until(lambda: bool(server.conns))
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            with pytest.raises(TimeoutError):
                await stream.wait_ready(0.05)
    gc.collect()
    await asyncio.sleep(0)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
