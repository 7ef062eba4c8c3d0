"""Ctrl-C during a 429/418: stop() skips the REST steps at once instead of waiting out the
ban, says so in one WARNING (until when, what was skipped, our orders left on the book)
and in the run row, and the next start's gap fill brings the ledger level with the
exchange again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import pytest

from executor.core.intents import Place
from executor.orders.tracker import TrackedOrder
from executor.persistence.store import Store
from tests.conftest import SimHandle
from tests.scenarios.harness import (
    SIM_OPTIONS,
    BotRun,
    ledger_equals_exchange,
    recon_reasons,
    scenario_config,
    until,
)

pytestmark = pytest.mark.sim_options(**SIM_OPTIONS)

RETRY_AFTER_S = 60  # the sim's 429 burst answers Retry-After: 60
# Never trades on its own (no 10 % basis), so the ledger can be compared while it runs.
IDLE_PARAMS = {"entry_bps": "1000", "exit_bps": "1000", "quote_ttl_s": "600"}


@pytest.fixture
async def runs() -> AsyncIterator[list[BotRun]]:
    made: list[BotRun] = []
    yield made
    for run in made:
        await run.close()


async def _rest_order(run: BotRun) -> TrackedOrder:
    """A BUY resting 1 % under the bid (inside the price band, far from any fill)."""
    bot = run.bot
    assert bot is not None and bot.manager is not None
    state = bot.market.get("BTCUSDT")
    assert state is not None and state.bid is not None
    # The manager snaps price and quantity to the symbol's filters.
    price = (state.bid * Decimal("0.99")).quantize(Decimal("0.01"), ROUND_DOWN)
    qty = (Decimal("60") / price).quantize(Decimal("0.00001"), ROUND_DOWN)
    order = await bot.manager.place(Place("BTCUSDT", "BUY", "LIMIT", qty, price, reason="test: rests"))
    assert isinstance(order, TrackedOrder) and order.status.value == "NEW", order
    return order


async def _ledger_matches(run: BotRun, sim: SimHandle, timeout: float) -> None:
    last: list[str] = []

    async def check() -> bool:
        try:
            await ledger_equals_exchange(sim, run.cfg.database.url)
        except AssertionError as exc:
            last[:] = [str(exc)]
            return False
        return True

    async def poll() -> None:
        while not await check():
            await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"ledger != exchange after {timeout} s: {last}") from None


async def test_stop_during_429_skips_rest_and_next_start_reconciles(
        sim: SimHandle, tmp_path: Path, runs: list[BotRun], caplog: pytest.LogCaptureFixture) -> None:
    cfg = scenario_config(tmp_path, {"strategy": {"params": {"quote_ttl_s": "600"}}})
    # The spot stream's session.status probe is a WS API request, which shares the IP's
    # limits: probing inside the Retry-After would earn a 418 of its own. Not probing keeps
    # this test about stop().
    run = BotRun(sim, cfg, probe_every_s=600.0)
    runs.append(run)
    bot = await run.start()
    await run.trade(1)
    resting = await _rest_order(run)
    # The next REST request (the strategy keeps ordering) gets a 429 with Retry-After: 60 s.
    sim.exchange.faults.burst_429(1)
    gate = bot.gateway.gate
    await until(lambda: not gate.is_open, 10, "the 429 closing the REST gate")
    assert gate.remaining() > 40
    run_id = bot.run_id
    sent_before = bot.gateway.sent

    caplog.set_level(logging.WARNING, logger="executor.run.app")
    # Unfixed, the cancel, settle and reconciliation steps each wait out their 15-30 s bound.
    ended = await asyncio.wait_for(run.stop("test: ctrl-c during a 429"), 8)
    assert ended == "unclean"  # orders of ours were left on the book: not a clean stop
    assert not gate.is_open, "stop() must not have waited the ban out"
    assert bot.gateway.sent == sent_before, "nothing may be sent while the gate is closed"
    # Nothing at all (REST or WS API) reached the exchange inside the Retry-After: no 418.
    assert all(st.bans == 0 for st in sim.exchange.ratelimiter._ips.values())
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "executor.run.app" and "REST is rate limited (429) until" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    text = warnings[0]
    for part in ("cancel our open orders", "final reconciliation", resting.client_id,
                 "next start reconciles"):
        assert part in text, (part, text)
    # The order really is still on the book, and the run row says why.
    assert [o.client_order_id for o in sim.exchange.engine.orders["BTCUSDT"]
            if o.client_order_id == resting.client_id and o.status == "NEW"] == [resting.client_id]
    store = await Store.open(cfg.database.url)
    try:
        row = await store.get_run(run_id)
    finally:
        await store.close()
    assert row is not None and row["ended"] == "unclean"
    assert "REST rate limited (429) until" in row["end_reason"]
    assert "final reconciliation" in row["end_reason"] and resting.client_id in row["end_reason"]

    # Later (the exchange's Retry-After has passed) the next start's gap fill reconciles.
    sim.exchange.clock.advance((RETRY_AFTER_S + 1) * 1000)
    idle = scenario_config(tmp_path, {"strategy": {"params": IDLE_PARAMS}})
    again = BotRun(sim, idle)
    runs.append(again)
    bot2 = await again.start()
    assert bot2.tracker is not None and resting.client_id in bot2.tracker, "left order adopted"
    await _ledger_matches(again, sim, 15)
    # A normal stop now cancels it and stays level with the exchange.
    assert await again.stop() == "clean"
    await ledger_equals_exchange(sim, idle.database.url)
    assert not [o for o in sim.exchange.engine.orders["BTCUSDT"]
                if o.client_order_id == resting.client_id and o.status == "NEW"]


async def test_a_short_pause_is_waited_out_not_skipped(
        sim: SimHandle, tmp_path: Path, runs: list[BotRun], caplog: pytest.LogCaptureFixture) -> None:
    """A gate that reopens within a step's bound is waited for: cancels and the final
    reconciliation still run, and nothing is reported as skipped."""
    cfg = scenario_config(tmp_path, {"strategy": {"params": IDLE_PARAMS}})
    run = BotRun(sim, cfg, probe_every_s=600.0)
    runs.append(run)
    bot = await run.start()
    resting = await _rest_order(run)
    bot.gateway.gate.trip(1.0, banned=False, source="test")
    caplog.set_level(logging.WARNING, logger="executor.run.app")
    assert await asyncio.wait_for(run.stop(), 20) == "clean"
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]
    assert "shutdown" in recon_reasons(cfg.database.url)
    await ledger_equals_exchange(sim, cfg.database.url)
    assert not [o for o in sim.exchange.engine.orders["BTCUSDT"]
                if o.client_order_id == resting.client_id and o.status == "NEW"]
