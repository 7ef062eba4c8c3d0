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

    ``skew_ms`` shifts the exchange's notion of now without touching the pace, which is
    how the fault injector makes a client's timestamps look early or late.
    """

    def __init__(self, time_scale: float = 1.0, start_ms: int | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._scale = float(time_scale)
        self._origin_wall = time.monotonic()
        self._origin_ms = float(start_ms if start_ms is not None else time.time() * 1000)
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

    def _now_float(self) -> float:
        return self._origin_ms + (time.monotonic() - self._origin_wall) * 1000.0 * self._scale

    def now_ms(self) -> int:
        return int(self._now_float()) + self.skew_ms

    def now_s(self) -> float:
        return self.now_ms() / 1000.0

    def advance(self, ms: int) -> None:
        """Jump exchange time forward (tests use this to cross expiries instantly)."""
        self._origin_ms += ms

    def wall_seconds(self, sim_seconds: float) -> float:
        return sim_seconds / self._scale

    async def sleep(self, sim_seconds: float) -> None:
        """Sleep for a span of exchange time."""
        await asyncio.sleep(max(0.0, sim_seconds / self._scale))
