"""The 24-hour connection cut, on every WebSocket kind, seen in seconds with a fast clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import websockets

from tests.conftest import wait_for
from tests.sim2.test_faults import KINDS, open_kind

DAY_MS = 24 * 3600 * 1000


@pytest.mark.parametrize("kind", KINDS)
async def test_24h_cut(sim: Any, client: Any, kind: str) -> None:
    ex = sim.exchange
    async with open_kind(sim, client, kind) as ws:
        opened = ex.clock.now_ms()
        ex.clock.set_time_scale(DAY_MS / 1500)        # a sim day in 1.5 wall seconds

        async def drain() -> None:
            while True:
                await ws.recv()

        with pytest.raises(websockets.ConnectionClosedOK):
            await asyncio.wait_for(drain(), 10)
        closed = ex.clock.now_ms()
    # Never before 24 h; after it by at most a few hundred wall ms of scheduling (6 sim-hours
    # at this pace). Not cut earlier for a missed pong either: pings were answered throughout.
    assert DAY_MS <= closed - opened < DAY_MS * 1.25
    await wait_for(lambda: ex.faults.connections.count(kind) == 0, 5)
