"""The job scheduler: scaled intervals, counting, no pile-up, the standard job set."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from executor.config import SchedulerConfig
from executor.run.scheduler import JobScheduler, build_scheduler
from tests.streams.conftest import wait_until

CFG = SchedulerConfig(futures_keepalive_s=1800, daily_reconnect_s=82800, reconcile_s=300,
                      balance_snapshot_s=900, clock_sync_s=600)


async def test_intervals_are_divided_by_time_scale_and_runs_counted() -> None:
    sched = JobScheduler(time_scale=1000)
    calls: list[int] = []

    async def job() -> str:
        calls.append(1)
        return "done"

    stats = sched.add("tick", 10, job)  # 10 exchange seconds = 10 ms of wall time
    assert stats.wall_interval_s == pytest.approx(0.01)
    sched.start()
    try:
        await wait_until(lambda: stats.ok >= 5, 3)
    finally:
        await sched.shutdown()
    assert stats.runs == len(calls) and stats.errors == 0
    assert stats.last_result == "done" and stats.last_start is not None
    assert sched.status()[0]["name"] == "tick"


async def test_errors_are_counted_and_do_not_stop_the_job() -> None:
    sched = JobScheduler(time_scale=1000)

    async def boom() -> None:
        raise RuntimeError("exchange said no")

    stats = sched.add("boom", 10, boom)
    sched.start()
    try:
        await wait_until(lambda: stats.errors >= 3, 3)
    finally:
        await sched.shutdown()
    assert stats.ok == 0
    assert stats.last_error == "RuntimeError: exchange said no"


async def test_a_slow_job_never_piles_up() -> None:
    sched = JobScheduler(time_scale=1000)
    concurrent = 0
    peak = 0
    release = asyncio.Event()

    async def slow() -> None:
        nonlocal concurrent, peak
        concurrent += 1
        peak = max(peak, concurrent)
        await release.wait()
        concurrent -= 1

    stats = sched.add("slow", 5, slow)  # fires every 5 ms; one run takes far longer
    sched.start()
    try:
        await wait_until(lambda: stats.runs == 1, 2)
        await asyncio.sleep(0.1)
        assert stats.runs == 1 and peak == 1
        release.set()
        await wait_until(lambda: stats.ok >= 2, 2)
    finally:
        release.set()
        await sched.shutdown()
    assert peak == 1


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        JobScheduler(time_scale=0)
    sched = JobScheduler()

    async def job() -> None:
        return None

    with pytest.raises(ValueError):
        sched.add("x", 0, job)
    sched.add("x", 1, job)
    with pytest.raises(ValueError):
        sched.add("x", 1, job)


class _Fake:
    def __init__(self, rotate_ok: bool = True) -> None:
        self.calls: list[str] = []
        self.rotate_ok = rotate_ok

    async def rotate(self) -> bool:
        self.calls.append("rotate")
        return self.rotate_ok

    async def keepalive(self) -> bool:
        self.calls.append("keepalive")
        return True

    async def gap_fill(self, reason: str) -> str:
        self.calls.append(f"gap_fill:{reason}")
        return "report"

    async def snapshot_balances(self) -> str:
        self.calls.append("snapshot")
        return "snap"

    async def sync_clock(self) -> int:
        self.calls.append("sync")
        return 3


async def test_standard_jobs_trigger_their_components() -> None:
    market, user, futures, rec, gw = _Fake(), _Fake(), _Fake(), _Fake(), _Fake()
    sched = build_scheduler(CFG, futures_streams=[futures], market_streams=[market], user_streams=[user],
                            reconciler=rec, gateway=gw)
    assert {s.name: s.interval_s for s in sched.stats.values()} == {
        "futures_keepalive": 1800, "daily_reconnect": 82800, "reconcile": 300, "balance_snapshot": 900,
        "clock_sync": 600}
    for name in sched.stats:
        assert await sched.run_now(name)
    assert market.calls == ["rotate"] and user.calls == ["rotate"]
    assert futures.calls == ["keepalive", "rotate"]
    assert rec.calls == ["gap_fill:periodic", "snapshot"]
    assert gw.calls == ["sync"]
    assert sched.stats["clock_sync"].last_result == "offset 3 ms"


async def test_only_jobs_for_given_components_and_failed_rotation_is_an_error() -> None:
    sched = build_scheduler(CFG, market_streams=[_Fake(rotate_ok=False), ok := _Fake()])
    assert list(sched.stats) == ["daily_reconnect"]
    assert not await sched.run_now("daily_reconnect")
    assert ok.calls == ["rotate"]  # one failure does not stop the others
    assert "1 of 2" in (sched.stats["daily_reconnect"].last_error or "")
    empty: Any = build_scheduler(CFG)
    assert empty.stats == {}


async def test_audit_checkpoint_runs_on_wall_time_whatever_the_sim_speed() -> None:
    calls: list[str] = []

    async def checkpoint() -> str:
        calls.append("checkpoint")
        return "report checkpoint at ..."

    sched = build_scheduler(CFG, time_scale=1000, checkpoint=checkpoint)
    st = sched.stats["audit_checkpoint"]
    assert st.wall_interval_s == pytest.approx(900)  # not 0.9 s: folding the ledger is this machine's work
    assert await sched.run_now("audit_checkpoint") and calls == ["checkpoint"]
    off = SchedulerConfig(**{**CFG.__dict__, "audit_checkpoint_s": 0})
    assert "audit_checkpoint" not in build_scheduler(off, checkpoint=checkpoint).stats
