"""Process health: memory, file descriptors, asyncio tasks and event-loop lag.

``LoopLag`` measures how late the event loop wakes a task that asked to sleep a fixed
interval (the overshoot is time the loop spent on something else) and keeps the last
minute of samples for a p99. ``sample()`` reads the process's resident memory and open
file descriptors (psutil) and counts the loop's tasks. ``HealthMonitor`` runs the lag
probe, logs one ``health`` line every ``log_every_s`` and a WARNING whenever a figure is
above its configured threshold; ``text()`` is the short form the live status shows.

A week unattended must not leak: these four figures are what ``bench/soak.py`` samples
every simulated hour, and what an operator watches in the status and the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from executor.config import HealthConfig

__all__ = ["HealthMonitor", "HealthSnapshot", "LoopLag", "over_thresholds", "percentile", "sample"]

log = logging.getLogger(__name__)

_MB = 1024 * 1024


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100.0 * len(ordered)) - 1))
    return ordered[rank]


class LoopLag:
    """Event-loop lag: how much later than asked a ``sleep(interval_s)`` returns.

    Samples older than ``window_s`` are forgotten, so memory is bounded by
    ``window_s / interval_s`` samples."""

    def __init__(self, interval_s: float = 0.1, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=int(window_s / interval_s) + 16)

    def record(self, lag_s: float, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        self._samples.append((now, max(0.0, lag_s)))
        edge = now - self.window_s
        while self._samples and self._samples[0][0] < edge:
            self._samples.popleft()

    def lags_ms(self) -> list[float]:
        edge = self._clock() - self.window_s
        return [lag * 1000.0 for at, lag in self._samples if at >= edge]

    def p99_ms(self) -> float:
        return percentile(self.lags_ms(), 99)

    def max_ms(self) -> float:
        return max(self.lags_ms(), default=0.0)

    def __len__(self) -> int:
        return len(self._samples)

    async def run(self, stop: asyncio.Event) -> None:
        """Probe until ``stop`` is set."""
        while not stop.is_set():
            asked = self._clock()
            await asyncio.sleep(self.interval_s)
            self.record(self._clock() - asked - self.interval_s)


@dataclass(frozen=True)
class HealthSnapshot:
    rss_bytes: int
    open_fds: int
    tasks: int
    loop_lag_p99_ms: float
    loop_lag_max_ms: float

    @property
    def rss_mb(self) -> float:
        return self.rss_bytes / _MB

    def text(self) -> str:
        return (f"health rss {self.rss_mb:.1f}MB fds {self.open_fds} tasks {self.tasks} "
                f"loop lag p99 {self.loop_lag_p99_ms:.1f}ms (max {self.loop_lag_max_ms:.1f}ms, 1 min)")


_PROCESS: psutil.Process | None = None


def _process() -> psutil.Process:
    global _PROCESS
    if _PROCESS is None:
        _PROCESS = psutil.Process()
    return _PROCESS


def open_fds() -> int:
    proc = _process()
    try:
        return proc.num_fds()
    except AttributeError:  # Windows has handles, not descriptors
        return int(proc.num_handles())


def sample(lag: LoopLag | None = None) -> HealthSnapshot:
    """The figures now (call from inside the running event loop for the task count)."""
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:  # no running loop
        tasks = 0
    return HealthSnapshot(rss_bytes=int(_process().memory_info().rss), open_fds=open_fds(), tasks=tasks,
                          loop_lag_p99_ms=lag.p99_ms() if lag is not None else 0.0,
                          loop_lag_max_ms=lag.max_ms() if lag is not None else 0.0)


def over_thresholds(snap: HealthSnapshot, cfg: HealthConfig) -> list[str]:
    """Which figures are above their warning threshold (0 = no threshold), as short texts."""
    out = []
    if cfg.warn_rss_mb and snap.rss_mb > cfg.warn_rss_mb:
        out.append(f"rss {snap.rss_mb:.0f}MB > {cfg.warn_rss_mb}MB")
    if cfg.warn_fds and snap.open_fds > cfg.warn_fds:
        out.append(f"fds {snap.open_fds} > {cfg.warn_fds}")
    if cfg.warn_tasks and snap.tasks > cfg.warn_tasks:
        out.append(f"tasks {snap.tasks} > {cfg.warn_tasks}")
    if cfg.warn_loop_lag_ms and snap.loop_lag_p99_ms > cfg.warn_loop_lag_ms:
        out.append(f"loop lag p99 {snap.loop_lag_p99_ms:.0f}ms > {cfg.warn_loop_lag_ms}ms")
    return out


class HealthMonitor:
    """The lag probe plus a ``health`` log line every ``cfg.log_every_s`` (wall seconds)."""

    def __init__(self, cfg: HealthConfig | None = None) -> None:
        self.cfg = cfg or HealthConfig()
        self.lag = LoopLag()
        self.last: HealthSnapshot | None = None
        self.warnings = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def snapshot(self) -> HealthSnapshot:
        self.last = sample(self.lag)
        return self.last

    def text(self) -> str:
        """The status line's text (sampled now)."""
        return self.snapshot().text()

    def check(self) -> HealthSnapshot:
        """Sample, log the health line, warn about any figure over its threshold."""
        snap = self.snapshot()
        log.info("%s", snap.text())
        over = over_thresholds(snap, self.cfg)
        if over:
            self.warnings += 1
            log.warning("health: %s (thresholds in [health])", "; ".join(over))
        return snap

    def start(self) -> None:
        self._stop.clear()
        self._tasks = [asyncio.create_task(self.lag.run(self._stop), name="health-lag"),
                       asyncio.create_task(self._log_loop(), name="health-log")]

    async def _log_loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.cfg.log_every_s)
            if not self._stop.is_set():
                self.check()

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
