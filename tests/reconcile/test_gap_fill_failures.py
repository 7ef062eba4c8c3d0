"""A gap fill that fails never strands anyone: the requests that queued behind it get their
own run and its outcome, the stream's runner retries with backoff until one succeeds, and
stopping the reconciler cancels gap fills still running in the background.

Failures come from the embedded exchange's WAF fault (a 403 page before the API sees the
request), over real HTTP with the real python-binance client.
"""

from __future__ import annotations

import asyncio

import pytest

from executor.exchange.market_stream import Backoff
from executor.exchange.rest import GatewayError
from executor.exchange.stream_supervision import GapFillRunner, UserStreamHealth
from tests.reconcile.test_sim import Rig, rig  # noqa: F401  (the fixture)


async def _until(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout)


async def test_failed_gap_fill_releases_its_waiters(rig: Rig) -> None:  # noqa: F811
    faults = rig.sim.exchange.faults
    faults.hold(1, 0.5)  # the first request's answer (a WAF page) arrives late: time to queue
    faults.waf_block(1)
    first = asyncio.create_task(rig.rec.gap_fill("first"))
    await asyncio.sleep(0.1)  # let it take the lock and send its first request
    waiter = asyncio.create_task(rig.rec.gap_fill("second"))
    with pytest.raises(GatewayError):
        await asyncio.wait_for(first, 10)
    report = await asyncio.wait_for(waiter, 10)  # settled, not stranded
    assert report.error is None
    assert report.reason == "second"


async def test_failing_gap_fill_is_retried_until_it_succeeds(rig: Rig) -> None:  # noqa: F811
    health = UserStreamHealth(name="spot")
    runner = GapFillRunner(rig.rec.gap_fill, health, backoff=Backoff(base_s=0.05, cap_s=0.2))
    rig.sim.exchange.faults.waf_block(3)
    runner.spawn("stream_gap")
    await _until(lambda: health.gap_fills == 1)
    assert health.gap_fill_errors >= 1
    assert health.last_gap_fill_reason is not None and health.last_gap_fill_reason.startswith("retry:")
    await runner.close()


async def test_stop_cancels_background_gap_fills(rig: Rig) -> None:  # noqa: F811
    faults = rig.sim.exchange.faults
    faults.hold(1, 30.0)  # a gap fill that would take 30 s
    rig.rec.request_background_gap_fill("apply_error")
    await asyncio.sleep(0.1)
    await asyncio.wait_for(rig.rec.stop(), 5)  # does not wait the 30 s out
    assert not rig.rec.background_tasks
