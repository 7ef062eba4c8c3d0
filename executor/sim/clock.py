"""The embedded exchange's single clock.

Everything time-based in the sim (order timestamps, listenKey validity, connection age,
rate-limit windows, funding times, ping cadence) reads this clock, so raising
``time_scale`` makes a 24 h cut or a 60-minute expiry happen in seconds of wall time.
"""

from __future__ import annotations

import asyncio
import time


class SimClock:
    """Exchange time that runs ``time_scale`` times faster than the wall clock.

    At real pace from the present (the paper-trading and test default) exchange time *is*
    the wall clock, as on Binance, whose servers keep NTP time: a client's timestamp is
    judged against the same clock that stamped it, even after the machine was paused or its
    clock stepped (a VM resumed from a pause sees ``monotonic`` lag the wall clock by the
    pause, and a monotonic sim clock would then accept a timestamp 10 s old). It never runs
    backwards: a wall clock stepped back holds exchange time still until it catches up.
    A sped-up clock, or one started at a given time (replays), paces itself by
    ``monotonic`` from its origin.

    ``skew_ms`` shifts the exchange's notion of now without touching the pace, which is
    how the fault injector makes a client's timestamps look early or late.
    """

    def __init__(self, time_scale: float = 1.0, start_ms: int | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._scale = float(time_scale)
        self._origin_wall = time.monotonic()
        self._origin_ms = float(start_ms if start_ms is not None else time.time() * 1000)
        # Wall-following: now = time.time() + _offset_ms (``advance`` adds to the offset).
        self._wall = start_ms is None and self._scale == 1.0
        self._offset_ms = 0.0
        self._last_ms = self._origin_ms
        self.skew_ms = 0

    @property
    def time_scale(self) -> float:
        return self._scale

    def set_time_scale(self, time_scale: float) -> None:
        """Change pace without a jump: now() is continuous across the change."""
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._origin_ms = self._now_float()
        self._origin_wall = time.monotonic()
        self._scale = float(time_scale)
        self._wall = False

    def _now_float(self) -> float:
        if self._wall:
            now = time.time() * 1000.0 + self._offset_ms
            if now < self._last_ms:
                return self._last_ms
            self._last_ms = now
            return now
        return self._origin_ms + (time.monotonic() - self._origin_wall) * 1000.0 * self._scale

    def now_ms(self) -> int:
        return int(self._now_float()) + self.skew_ms

    def now_s(self) -> float:
        return self.now_ms() / 1000.0

    def advance(self, ms: int) -> None:
        """Jump exchange time forward (tests use this to cross expiries instantly)."""
        if self._wall:
            self._offset_ms += ms
            self._last_ms += ms
        else:
            self._origin_ms += ms

    def wall_seconds(self, sim_seconds: float) -> float:
        return sim_seconds / self._scale

    async def sleep(self, sim_seconds: float) -> None:
        """Sleep for a span of exchange time."""
        await asyncio.sleep(max(0.0, sim_seconds / self._scale))
