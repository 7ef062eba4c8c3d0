"""Binance's market-stream connection limits, enforced on our side.

Binance allows at most 300 connection attempts per 5 minutes per IP and at most 1024
streams per connection; going over either gets the connection refused and, if repeated,
the IP banned. This module owns the rolling-window attempt limiter that every stream
connection in the process goes through, and the splitting of a stream list into
connection-sized groups. Pure bookkeeping: the clock is injectable so tests need no waits.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence

MAX_STREAMS_PER_CONNECTION = 1024
MAX_CONNECTION_ATTEMPTS = 300
ATTEMPT_WINDOW_S = 300.0


class ConnectionAttemptLimiter:
    """At most ``max_attempts`` connection attempts in any rolling ``window_s`` seconds.

    An attempt is counted when it is granted, whether the connection then succeeds or
    not: Binance counts handshakes, not successes.
    """

    def __init__(self, max_attempts: int = MAX_CONNECTION_ATTEMPTS, window_s: float = ATTEMPT_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_attempts <= 0 or window_s <= 0:
            raise ValueError("max_attempts and window_s must be positive")
        self.max_attempts = max_attempts
        self.window_s = float(window_s)
        self._clock = clock
        self._granted: deque[float] = deque()
        self.refused = 0

    def _expire(self, now: float) -> None:
        cutoff = now - self.window_s
        granted = self._granted
        while granted and granted[0] <= cutoff:
            granted.popleft()

    def in_window(self) -> int:
        """Attempts granted within the current window."""
        self._expire(self._clock())
        return len(self._granted)

    def try_acquire(self) -> bool:
        """Grant and record one attempt now, or refuse (and record nothing)."""
        now = self._clock()
        self._expire(now)
        if len(self._granted) >= self.max_attempts:
            self.refused += 1
            return False
        self._granted.append(now)
        return True

    def wait_time(self) -> float:
        """Seconds until an attempt would be granted (0 if one would be now)."""
        now = self._clock()
        self._expire(now)
        if len(self._granted) < self.max_attempts:
            return 0.0
        return max(0.0, self._granted[0] + self.window_s - now)

    async def acquire(self) -> None:
        """Wait (without spinning) until an attempt is granted, then record it."""
        while not self.try_acquire():
            await asyncio.sleep(max(self.wait_time(), 0.05))


# One limiter per process: every market-stream connection shares it, because the
# exchange counts attempts per IP, not per connection object.
PROCESS_LIMITER = ConnectionAttemptLimiter()


def split_streams(streams: Sequence[str],
                  per_connection: int = MAX_STREAMS_PER_CONNECTION) -> list[list[str]]:
    """Split ``streams`` (duplicates removed, order kept) into groups of ``per_connection``."""
    if not 0 < per_connection <= MAX_STREAMS_PER_CONNECTION:
        raise ValueError(f"per_connection must be 1..{MAX_STREAMS_PER_CONNECTION}, got {per_connection}")
    unique = list(dict.fromkeys(streams))
    return [unique[i:i + per_connection] for i in range(0, len(unique), per_connection)]
