"""The offset between our clock and the exchange's, kept fresh.

python-binance signs with ``time.time()*1000 + client.timestamp_offset`` and sets that
offset once (in ``AsyncClient.create``, which we do not use). ``ServerClock`` owns the
offset: it syncs at start, whenever the scheduler calls ``sync()``, and after a -1021.
Several requests failing with -1021 at once cause one sync, not one each: a request
remembers the ``generation`` it was signed under and ``resync_after`` skips the fetch
when a newer sync already happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

FetchServerMs = Callable[[], Awaitable[int]]


def _wall_ms() -> float:
    return time.time() * 1000.0


class ServerClock:
    """Estimates exchange time as local wall time plus ``offset_ms``.

    ``fetch_server_ms`` returns the exchange's ``serverTime`` (the REST gateway passes
    its own rate-limited call). ``local_ms`` must be the clock python-binance signs with
    (``time.time``) in production; tests inject their own.
    """

    def __init__(self, client: Any, fetch_server_ms: FetchServerMs, *,
                 local_ms: Callable[[], float] = _wall_ms, samples: int = 3) -> None:
        if samples < 1:
            raise ValueError("samples must be at least 1")
        self._client = client
        self._fetch = fetch_server_ms
        self._local_ms = local_ms
        self._samples = samples
        self._lock = asyncio.Lock()
        self.offset_ms = 0
        self.rtt_ms: float | None = None
        self.generation = 0
        self.last_sync_local_ms: float | None = None

    def server_now_ms(self) -> float:
        return self._local_ms() + self.offset_ms

    def server_now_s(self) -> float:
        return self.server_now_ms() / 1000.0

    async def _measure(self) -> tuple[float, float]:
        """(offset, round trip) of one sample, offset taken at the round trip's midpoint."""
        t0 = self._local_ms()
        server = await self._fetch()
        t1 = self._local_ms()
        return server - (t0 + t1) / 2.0, t1 - t0

    async def sync(self) -> int:
        """Measure the offset now (best of ``samples`` round trips) and apply it."""
        async with self._lock:
            return await self._sync_locked()

    async def _sync_locked(self) -> int:
        best: tuple[float, float] | None = None
        for _ in range(self._samples):
            sample = await self._measure()
            if best is None or sample[1] < best[1]:
                best = sample
        assert best is not None
        previous = self.offset_ms
        self.offset_ms = round(best[0])
        self.rtt_ms = best[1]
        self._client.timestamp_offset = self.offset_ms
        self.generation += 1
        self.last_sync_local_ms = self._local_ms()
        if abs(self.offset_ms - previous) >= 500:
            log.info("server clock offset %+d ms (was %+d ms, rtt %.1f ms)",
                     self.offset_ms, previous, self.rtt_ms)
        return self.offset_ms

    async def resync_after(self, generation: int) -> int:
        """Re-sync because a request signed under ``generation`` got -1021.

        If a sync finished since that request was signed, its offset is already newer
        than the one that failed, so no extra round trip is made.
        """
        async with self._lock:
            if self.generation != generation:
                return self.offset_ms
            log.warning("timestamp rejected (-1021): re-syncing server clock")
            return await self._sync_locked()
