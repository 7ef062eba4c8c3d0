"""Connection-attempt limiter (rolling window, injectable clock) and stream splitting."""

from __future__ import annotations

import pytest

from executor.exchange.stream_limits import (
    MAX_CONNECTION_ATTEMPTS,
    ConnectionAttemptLimiter,
    split_streams,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_301st_attempt_in_five_minutes_is_refused() -> None:
    clock = FakeClock()
    limiter = ConnectionAttemptLimiter(clock=clock)
    for _ in range(MAX_CONNECTION_ATTEMPTS):
        assert limiter.try_acquire()
        clock.now += 0.5  # 300 attempts over 150 s
    assert not limiter.try_acquire()
    assert limiter.refused == 1 and limiter.in_window() == 300
    # The first attempt was at t=1000; it leaves the window at t=1300.
    assert limiter.wait_time() == pytest.approx(1300.0 - clock.now)
    clock.now = 1299.9
    assert not limiter.try_acquire()
    clock.now = 1300.0
    assert limiter.try_acquire()
    assert not limiter.try_acquire()  # only one slot freed (the second left at 1300.5)
    clock.now = 1300.5
    assert limiter.try_acquire()


def test_refused_attempts_do_not_count() -> None:
    clock = FakeClock()
    limiter = ConnectionAttemptLimiter(max_attempts=2, window_s=10, clock=clock)
    assert limiter.try_acquire() and limiter.try_acquire()
    for _ in range(50):
        assert not limiter.try_acquire()
    clock.now += 10
    assert limiter.try_acquire() and limiter.try_acquire()


def test_bad_limits_rejected() -> None:
    with pytest.raises(ValueError):
        ConnectionAttemptLimiter(max_attempts=0)


def test_split_over_1024_streams() -> None:
    streams = [f"s{i}usdt@bookTicker" for i in range(2100)]
    groups = split_streams(streams + streams[:10])  # duplicates removed
    assert [len(g) for g in groups] == [1024, 1024, 52]
    assert [s for g in groups for s in g] == streams
    assert split_streams(streams[:3], per_connection=2) == [streams[:2], streams[2:3]]
    with pytest.raises(ValueError):
        split_streams(streams, per_connection=1025)
