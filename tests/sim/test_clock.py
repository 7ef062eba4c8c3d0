"""The embedded exchange's clock: at real pace it is the wall clock, as Binance's servers are."""

from __future__ import annotations

import time

import pytest

from executor.sim import auth, errors
from executor.sim.clock import SimClock


def test_a_wall_clock_step_is_followed_so_old_timestamps_stay_old(monkeypatch: pytest.MonkeyPatch) -> None:
    # A VM paused for 8 s resumes with its wall clock stepped forward and ``monotonic``
    # behind by the pause: a client stamping with time.time() 10 s in the past must still
    # be outside the 5 s recvWindow (this failed CI once, with a monotonic-paced clock).
    clock = SimClock()
    real = time.time()
    monkeypatch.setattr(time, "time", lambda: real + 8.0)
    now = clock.now_ms()
    assert abs(now - (real + 8.0) * 1000) < 50
    stale = {"timestamp": str(int((real + 8.0) * 1000) - 10_000)}
    with pytest.raises(errors.BinanceError) as err:
        auth.check_timestamp(stale, now)
    assert err.value.code == -1021


def test_a_wall_clock_stepped_back_never_turns_exchange_time_back(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimClock()
    before = clock.now_ms()
    real = time.time()
    monkeypatch.setattr(time, "time", lambda: real - 30.0)
    assert clock.now_ms() >= before
    monkeypatch.setattr(time, "time", lambda: real + 1.0)
    assert clock.now_ms() >= before + 900


def test_advance_and_a_change_of_pace_are_continuous() -> None:
    clock = SimClock()
    t0 = clock.now_ms()
    clock.advance(60_000)
    t1 = clock.now_ms()
    assert 60_000 <= t1 - t0 < 61_000
    clock.set_time_scale(1000)
    t2 = clock.now_ms()
    assert t1 <= t2 < t1 + 1_000          # no jump at the change
    assert clock.time_scale == 1000


def test_a_replay_clock_starts_where_it_is_told() -> None:
    clock = SimClock(start_ms=1_600_000_000_000)
    assert 1_600_000_000_000 <= clock.now_ms() < 1_600_000_001_000
