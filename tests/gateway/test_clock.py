"""Server clock offset: measurement, application to the client, coalesced re-syncs."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from executor.exchange.clock import ServerClock


class FakeExchangeTime:
    """Local clock plus a fixed server skew; each fetch takes ``rtt`` local ms."""

    def __init__(self, skew_ms: float, rtts: list[float]) -> None:
        self.local = 1_700_000_000_000.0
        self.skew_ms = skew_ms
        self.rtts = list(rtts)
        self.fetches = 0

    def local_ms(self) -> float:
        return self.local

    async def fetch(self) -> int:
        self.fetches += 1
        rtt = self.rtts.pop(0) if self.rtts else 10.0
        self.local += rtt / 2
        server = self.local + self.skew_ms
        self.local += rtt / 2
        await asyncio.sleep(0)
        return int(server)


async def test_sync_applies_offset_to_client_using_best_sample() -> None:
    ex = FakeExchangeTime(skew_ms=2500, rtts=[400.0, 6.0, 90.0])
    client = SimpleNamespace(timestamp_offset=0)
    clock = ServerClock(client, ex.fetch, local_ms=ex.local_ms, samples=3)
    offset = await clock.sync()
    assert abs(offset - 2500) <= 1 and client.timestamp_offset == offset
    assert clock.rtt_ms == 6.0 and clock.generation == 1
    assert abs(clock.server_now_ms() - (ex.local + 2500)) <= 1


async def test_resync_follows_a_changed_skew() -> None:
    ex = FakeExchangeTime(skew_ms=0, rtts=[])
    client = SimpleNamespace(timestamp_offset=0)
    clock = ServerClock(client, ex.fetch, local_ms=ex.local_ms, samples=1)
    await clock.sync()
    ex.skew_ms = -30_000
    await clock.sync()
    assert abs(client.timestamp_offset + 30_000) <= 1 and clock.generation == 2


async def test_concurrent_minus_1021_resyncs_fetch_once() -> None:
    ex = FakeExchangeTime(skew_ms=15_000, rtts=[])
    client = SimpleNamespace(timestamp_offset=0)
    clock = ServerClock(client, ex.fetch, local_ms=ex.local_ms, samples=1)
    generation = clock.generation
    await asyncio.gather(*(clock.resync_after(generation) for _ in range(5)))
    assert ex.fetches == 1 and abs(client.timestamp_offset - 15_000) <= 1
