"""Started during a 418 IP ban, the bot waits the ban out (saying so) and then trades,
instead of exiting with a traceback; it earns no second ban on the way."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import SimHandle
from tests.scenarios.harness import SIM_OPTIONS, BotRun, scenario_config

pytestmark = pytest.mark.sim_options(**SIM_OPTIONS)

BAN_S = 3


@pytest.fixture
async def runs() -> AsyncIterator[list[BotRun]]:
    made: list[BotRun] = []
    yield made
    for run in made:
        await run.close()


async def _earn_a_ban(sim: SimHandle) -> None:
    """A 429, then a request inside its Retry-After (what a careless client does): 418."""
    sim.exchange.ratelimiter.limits.ban_first_s = BAN_S
    sim.exchange.faults.burst_429(1)
    url = sim.endpoints.spot_rest.rstrip("/") + "/v3/time"
    async with aiohttp.ClientSession() as http:
        for want in (429, 418):
            async with http.get(url) as resp:
                assert resp.status == want
    assert sim.exchange.ratelimiter.bans() == 1


async def test_bot_started_during_a_ban_waits_then_trades(
        sim: SimHandle, tmp_path: Path, runs: list[BotRun], caplog: pytest.LogCaptureFixture) -> None:
    await _earn_a_ban(sim)
    caplog.set_level(logging.WARNING)
    run = BotRun(sim, scenario_config(tmp_path))
    runs.append(run)
    await run.start()  # waits the ban out instead of raising
    await run.trade(2)
    assert sim.exchange.ratelimiter.bans() == 1, "no second ban on the way"
    said = [r.getMessage() for r in caplog.records]
    assert any("banned (418)" in m and "waiting it out" in m for m in said), said
    assert await run.stop() == "clean"
