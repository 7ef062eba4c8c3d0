"""Integration: the stream client against the embedded exchange's real stream hosts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from executor.exchange.market_stream import book_ticker_stream, mark_price_stream
from executor.exchange.stream_limits import ConnectionAttemptLimiter
from executor.market import DROPPED, MarketState
from tests.conftest import SimHandle
from tests.market.fake_server import wait_until

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


class RecordingState(MarketState):
    def __init__(self) -> None:
        super().__init__()
        self.accepted: dict[str, list[int]] = {}

    def apply_book(self, symbol: str, update_id: int, *rest: Any) -> int:  # type: ignore[override]
        result = super().apply_book(symbol, update_id, *rest)
        if result != DROPPED:
            self.accepted.setdefault(symbol, []).append(update_id)
        return result


def _count(state: RecordingState) -> int:
    return sum(len(v) for v in state.accepted.values())


@pytest.mark.sim_options(book_update_hz=100)
async def test_sim_book_ticker_lands_exactly(sim: SimHandle) -> None:
    state = MarketState()
    limiter = ConnectionAttemptLimiter()
    async with book_ticker_stream(sim.endpoints, SYMBOLS, state, limiter=limiter) as stream:
        await stream.wait_ready(10)
        await wait_until(lambda: all(s in state and state[s].has_book for s in SYMBOLS), 10)
        book = sim.exchange.market.books["BTCUSDT"]
        ticker = book.ticker()
        # Catch the state at the same update as the exchange's ground truth.
        await wait_until(lambda: state["BTCUSDT"].update_id >= ticker["u"], 10)
        if state["BTCUSDT"].update_id == ticker["u"]:
            s = state["BTCUSDT"]
            assert (s.bid, s.bid_qty, s.ask, s.ask_qty) == tuple(Decimal(ticker[k]) for k in "bBaA")
        assert isinstance(state["ETHUSDT"].ask, Decimal)
        assert stream.health()[0].parse_errors == 0


@pytest.mark.sim_options(book_update_hz=200)
async def test_sim_rotation_keeps_update_ids_continuous(sim: SimHandle) -> None:
    state = RecordingState()
    limiter = ConnectionAttemptLimiter()
    async with book_ticker_stream(sim.endpoints, SYMBOLS, state, limiter=limiter) as stream:
        await stream.wait_ready(10)
        for _ in range(2):
            before = _count(state)
            assert await stream.rotate()
            await wait_until(lambda before=before: _count(state) > before + 40, 10)
        health = stream.health()[0]
        assert health.rotations == 2 and health.reconnects == 0 and health.connects == 3
        assert sim.exchange.faults.connections.count("market") == 1  # the old ones were closed
    for symbol, ids in state.accepted.items():
        assert ids == list(range(ids[0], ids[-1] + 1)), symbol


@pytest.mark.sim_options(book_update_hz=100)
async def test_sim_drop_and_server_shutdown_reconnect(sim: SimHandle) -> None:
    state = MarketState()
    async with book_ticker_stream(sim.endpoints, SYMBOLS, state, limiter=ConnectionAttemptLimiter(),
                                  stale_after_s=30) as stream:
        await stream.wait_ready(10)
        health = stream.health()[0]
        assert await sim.exchange.faults.connections.drop("market") == 1
        await wait_until(lambda: health.reconnects == 1 and health.connects == 2, 10)
        u = state["BTCUSDT"].update_id
        await wait_until(lambda: state["BTCUSDT"].update_id > u, 10)

        assert await sim.exchange.faults.connections.shutdown("market") == 1
        await wait_until(lambda: health.server_shutdowns == 1 and health.connects == 3, 10)
        await wait_until(lambda: sim.exchange.faults.connections.count("market") == 1, 10)
        u = state["BTCUSDT"].update_id
        await wait_until(lambda: state["BTCUSDT"].update_id > u, 10)
        assert health.stale_kills == 0 and health.parse_errors == 0


@pytest.mark.sim_options(time_scale=20)
async def test_sim_mark_price_on_the_market_route(sim: SimHandle) -> None:
    state = MarketState()
    async with mark_price_stream(sim.endpoints, SYMBOLS, state, limiter=ConnectionAttemptLimiter(),
                                 stale_after_s=30) as stream:
        await stream.wait_ready(10)
        await wait_until(lambda: all(s in state and state[s].has_mark for s in SYMBOLS), 10)
        s = state["BTCUSDT"]
        first_event = s.mark_event_ms
        await wait_until(lambda: s.mark_event_ms > first_event, 10)
        assert isinstance(s.mark, Decimal) and isinstance(s.index, Decimal)
        assert s.funding_rate is None or isinstance(s.funding_rate, Decimal)
        health = stream.health()[0]
        assert health.parse_errors == 0

        assert await sim.exchange.faults.connections.drop("futures_market") == 1
        await wait_until(lambda: health.reconnects == 1, 10)
        seen = s.mark_event_ms
        await wait_until(lambda: s.mark_event_ms > seen, 10)
        assert not state.is_stale("BTCUSDT", now=s.mark_recv_mono or 0.0, max_age=5, book=False)


@pytest.mark.sim_options(time_scale=20)
async def test_sim_stalled_mark_price_socket_is_replaced(sim: SimHandle) -> None:
    state = MarketState()
    async with mark_price_stream(sim.endpoints, ["BTCUSDT"], state, limiter=ConnectionAttemptLimiter(),
                                 stale_after_s=0.5) as stream:
        await stream.wait_ready(10)
        health = stream.health()[0]
        assert sim.exchange.faults.connections.stall("futures_market") == 1  # open, silent
        await wait_until(lambda: health.stale_kills == 1 and health.reconnects == 1, 10)
        seen = state["BTCUSDT"].mark_event_ms
        await wait_until(lambda: state["BTCUSDT"].mark_event_ms > seen, 10)
        await wait_until(lambda: sim.exchange.faults.connections.count("futures_market") == 1, 10)
