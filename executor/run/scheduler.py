"""Periodic jobs on APScheduler 3.x (``AsyncIOScheduler``). Jobs only TRIGGER work owned elsewhere.

``build_scheduler`` wires the standard jobs from ``SchedulerConfig``, each only for the
components given:

* ``futures_keepalive`` (``futures_keepalive_s``, 30 min): ``FuturesUserStream.keepalive()``;
* ``daily_reconnect`` (``daily_reconnect_s``, 23 h, ahead of Binance's 24 h cut): every
  market stream's make-before-break ``rotate()``, then every user stream's ``rotate()``
  (new connection and subscription first, gap fill, then the old connection closes);
* ``reconcile`` (``reconcile_s``, 5 min): ``reconciler.gap_fill("periodic")``;
* ``balance_snapshot`` (``balance_snapshot_s``, 15 min): ``reconciler.snapshot_balances()``;
* ``clock_sync`` (``clock_sync_s``): ``gateway.sync_clock()``;
* ``audit_checkpoint`` (``audit_checkpoint_s``, 15 min of *wall* time, not scaled: it is
  this machine's CPU work): the given ``checkpoint()`` (``run.py db checkpoint`` in a child
  process, see ``executor.audit.checkpoint_job``).

Every run is logged and counted (runs, errors, skips, last start/end/duration/error) in
``JobStats`` for the status output. ``max_instances=1`` with ``coalesce`` means a slow job
never piles up: a fire while it still runs is skipped and counted, and a backlog of
missed fires runs once.

``time_scale``: the embedded exchange can run its clock faster than the wall; intervals
are in exchange seconds and are divided by ``time_scale`` (1 for real venues), so a test
can watch several simulated days of keepalives, daily reconnects and reconciliations in
seconds of wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC
from typing import Any, Protocol

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from executor.config import SchedulerConfig

__all__ = ["JobScheduler", "JobStats", "build_scheduler"]

log = logging.getLogger(__name__)

JobFn = Callable[[], Awaitable[Any]]


@dataclass
class JobStats:
    """One job's record, for the status display."""

    name: str
    interval_s: float  # exchange seconds
    wall_interval_s: float
    runs: int = 0
    ok: int = 0
    errors: int = 0
    skipped: int = 0  # fires dropped because the previous run was still going (or coalesced)
    cancelled: int = 0  # runs cut short by shutdown
    running: bool = False
    last_start: float | None = None  # epoch seconds (wall)
    last_end: float | None = None
    last_duration_s: float | None = None
    last_error: str | None = None
    last_result: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class JobScheduler:
    """A small wrapper that runs, logs and counts interval jobs on an ``AsyncIOScheduler``."""

    def __init__(self, *, time_scale: float = 1.0) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale!r}")
        self.time_scale = float(time_scale)
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None})
        self._scheduler.add_listener(self._on_skip, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self._jobs: dict[str, JobFn] = {}
        self.stats: dict[str, JobStats] = {}
        self._running: set[asyncio.Task[Any]] = set()

    def add(self, name: str, interval_s: float, fn: JobFn) -> JobStats:
        """Run ``fn`` every ``interval_s`` exchange seconds (first run one interval from start)."""
        if name in self._jobs:
            raise ValueError(f"job {name!r} already exists")
        if not interval_s > 0:
            raise ValueError(f"job {name!r}: interval must be positive, got {interval_s!r}")
        wall = interval_s / self.time_scale
        self._jobs[name] = fn
        stats = self.stats[name] = JobStats(name, float(interval_s), wall)
        self._scheduler.add_job(self._run, IntervalTrigger(seconds=wall, timezone=UTC), args=[name],
                                id=name, name=name)
        return stats

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def start(self) -> None:
        """Start firing (call inside the running event loop)."""
        self._scheduler.start()
        log.info("scheduler started: %s", ", ".join(
            f"{s.name} every {s.interval_s:g} s" for s in self.stats.values()) or "no jobs")

    async def shutdown(self, grace_s: float = 5.0) -> None:
        """Stop firing, let runs in progress finish (cancelled after ``grace_s``), then stop."""
        if self._scheduler.running:
            # APScheduler's asyncio executor cancels running jobs on shutdown: pause first so
            # nothing new starts, and let what runs finish cleanly.
            self._scheduler.pause()
        if self._running:
            _, pending = await asyncio.wait(list(self._running), timeout=grace_s)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    async def run_now(self, name: str) -> bool:
        """Run one job at once (status command, tests); True if it succeeded."""
        return await self._run(name)

    def status(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in self.stats.values()]

    async def _run(self, name: str) -> bool:
        stats = self.stats[name]
        if stats.running:
            stats.skipped += 1
            return False
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        stats.running = True
        stats.runs += 1
        stats.last_start = time.time()
        started = time.monotonic()
        try:
            result = await self._jobs[name]()
        except asyncio.CancelledError:
            stats.cancelled += 1  # shutdown, not a failure of the job
            raise
        except Exception as exc:  # noqa: BLE001 - a job's failure is logged and counted; the next interval runs it again
            stats.errors += 1
            stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("job %s run %d failed: %s", name, stats.runs, stats.last_error)
            return False
        else:
            stats.ok += 1
            stats.last_result = None if result is None else str(result)[:200]
            log.info("job %s run %d ok in %.3f s", name, stats.runs, time.monotonic() - started)
            return True
        finally:
            stats.running = False
            stats.last_end = time.time()
            stats.last_duration_s = time.monotonic() - started
            if task is not None:
                self._running.discard(task)

    def _on_skip(self, event: JobExecutionEvent) -> None:
        stats = self.stats.get(event.job_id)
        if stats is not None:
            stats.skipped += 1
            log.debug("job %s: a fire was skipped (previous run still going or coalesced)", event.job_id)


# ---------------------------------------------------------------------- the standard jobs


class _Rotates(Protocol):
    async def rotate(self) -> bool: ...


class _FuturesUser(Protocol):
    async def keepalive(self) -> bool: ...

    async def rotate(self) -> bool: ...


class _Reconciles(Protocol):
    async def gap_fill(self, reason: str) -> Any: ...

    async def snapshot_balances(self) -> Any: ...


class _SyncsClock(Protocol):
    async def sync_clock(self) -> int: ...


class ReconnectFailed(Exception):
    """Some connection could not be rotated; it keeps its old connection until the next try."""


def build_scheduler(cfg: SchedulerConfig, *, time_scale: float = 1.0,
                    futures_streams: Iterable[_FuturesUser] = (), market_streams: Iterable[_Rotates] = (),
                    user_streams: Iterable[_Rotates] = (), reconciler: _Reconciles | None = None,
                    gateway: _SyncsClock | None = None,
                    checkpoint: Callable[[], Awaitable[Any]] | None = None) -> JobScheduler:
    """The bot's jobs for whichever components are given (see the module docstring)."""
    sched = JobScheduler(time_scale=time_scale)
    futures = list(futures_streams)
    markets = list(market_streams)
    users = list(user_streams)

    if futures:
        async def keepalive() -> str:
            results = [await stream.keepalive() for stream in futures]
            # False: the key was unknown and is being recreated (the stream reconnects and
            # gap-fills by itself); that is recovery, not a job failure.
            return f"extended {sum(results)}/{len(results)}"

        sched.add("futures_keepalive", cfg.futures_keepalive_s, keepalive)

    rotating: list[_Rotates] = [*markets, *users, *futures]
    if rotating:
        async def daily_reconnect() -> str:
            failed = 0
            for conn in rotating:
                try:
                    ok = await conn.rotate()
                except Exception:
                    log.exception("daily reconnect of %s failed", type(conn).__name__)
                    ok = False
                failed += not ok
            if failed:
                raise ReconnectFailed(f"{failed} of {len(rotating)} connections kept their old socket")
            return f"rotated {len(rotating)}"

        sched.add("daily_reconnect", cfg.daily_reconnect_s, daily_reconnect)

    if reconciler is not None:
        rec = reconciler

        async def reconcile() -> Any:
            return await rec.gap_fill("periodic")

        async def balance_snapshot() -> Any:
            return await rec.snapshot_balances()

        sched.add("reconcile", cfg.reconcile_s, reconcile)
        sched.add("balance_snapshot", cfg.balance_snapshot_s, balance_snapshot)

    if gateway is not None:
        gw = gateway

        async def clock_sync() -> str:
            return f"offset {await gw.sync_clock()} ms"

        sched.add("clock_sync", cfg.clock_sync_s, clock_sync)

    if checkpoint is not None and cfg.audit_checkpoint_s > 0:
        sched.add("audit_checkpoint", cfg.audit_checkpoint_s * time_scale, checkpoint)
    return sched
