"""``Reconciler.settle`` at shutdown: it waits for events the streams still expect (orders
sent, no event yet), at most its limit, and not at all when none is expected (a fixed 0.3 s
sleep at every stop before)."""

from __future__ import annotations

import asyncio

from executor.persistence.store import Store
from executor.reconcile import Reconciler
from tests.reconcile.conftest import PREFIX


async def test_settle_waits_only_while_events_are_expected(store: Store) -> None:
    rec = Reconciler(store, prefix=PREFIX)
    await rec.start()
    loop = asyncio.get_running_loop()
    try:
        t0 = loop.time()
        await rec.settle(30.0, in_flight=lambda: 0)
        assert loop.time() - t0 < 5.0                           # nothing expected: no wait

        expected = [1]
        loop.call_later(0.2, expected.clear)                    # the awaited event arrives
        t0 = loop.time()
        await rec.settle(30.0, in_flight=lambda: len(expected))
        assert 0.2 <= loop.time() - t0 < 15.0

        t0 = loop.time()
        await rec.settle(0.3, in_flight=lambda: 1)              # never arrives: the limit
        assert 0.3 <= loop.time() - t0 < 15.0
    finally:
        await rec.stop()
