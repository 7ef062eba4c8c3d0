"""A gap fill asked for while the gap lock is held by something that is not a gap fill (a
balance snapshot, a targeted missing-fill check) waits for the lock and runs; it must not
wait for a follow-up run that nobody will ever start (found by bench/soak.py: the
periodic reconciliation hung for good once it met a balance snapshot)."""

from __future__ import annotations

import asyncio

from tests.reconcile.test_sim import Rig, rig  # noqa: F401 (fixture)


async def test_gap_fill_requested_during_a_balance_snapshot_runs(rig: Rig) -> None:  # noqa: F811
    snapshot = asyncio.create_task(rig.rec.snapshot_balances())
    await asyncio.sleep(0)  # one turn: the snapshot takes the gap lock and starts its REST read
    gap = asyncio.create_task(rig.rec.gap_fill("periodic"))
    await asyncio.wait_for(snapshot, 10)
    report = await asyncio.wait_for(gap, 10)
    assert report.reason == "periodic" and report.error is None


async def test_requests_during_a_gap_fill_still_coalesce_into_one_follow_up(rig: Rig) -> None:  # noqa: F811
    first = asyncio.create_task(rig.rec.gap_fill("periodic"))
    await asyncio.sleep(0)
    second = asyncio.create_task(rig.rec.gap_fill("stream_gap"))
    third = asyncio.create_task(rig.rec.gap_fill("daily_reconnect"))
    a, b, c = await asyncio.wait_for(asyncio.gather(first, second, third), 10)
    assert a.reason == "periodic" and b is c and b.reason == "stream_gap+daily_reconnect"
