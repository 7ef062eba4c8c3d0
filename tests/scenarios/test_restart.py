"""The bot stopped gracefully mid-run, and killed with SIGKILL at a random moment, then
started again on the same ledger against the same (still running) exchange: once settled,
the ledger equals the exchange exactly, nothing was sent twice, no fill stored twice."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from executor.persistence.db import database_path
from executor.sim.accounts import DEFAULT_ID
from executor.sim.exchange import SimExchange
from tests.conftest import SimHandle, start_sim
from tests.scenarios.harness import (
    SIM_OPTIONS,
    SYMBOLS,
    BotRun,
    ledger_equals_exchange,
    scenario_config,
    until,
)
from tests.scenarios.procs import bot_config, restart_until, sigkill_while_trading, wait_exit


def our_orders(sim: SimHandle) -> int:
    return sum(1 for s in SYMBOLS for o in sim.exchange.engine.orders[s] if o.account_id == DEFAULT_ID)


def runs_of(url: str) -> list[tuple[int, str | None]]:
    with sqlite3.connect(database_path(url)) as conn:
        return conn.execute("SELECT id, ended FROM runs ORDER BY id").fetchall()


@pytest.mark.sim_options(**SIM_OPTIONS)
async def test_graceful_stop_mid_run_then_restart(sim: SimHandle, tmp_path: Path) -> None:
    cfg = scenario_config(tmp_path)
    run = BotRun(sim, cfg)
    try:
        bot = await run.start()
        await run.trade(2)
        assert bot.manager is not None
        manager = bot.manager
        # Stop while an order is on its way: it must settle, not be lost or sent again.
        await until(lambda: manager.in_flight > 0, 10, "an order in flight")
        assert await run.stop("mid-run stop") == "clean"
        first = await ledger_equals_exchange(sim, cfg.database.url)

        await run.start()
        await run.trade(2)
        assert await run.stop() == "clean"
        second = await ledger_equals_exchange(sim, cfg.database.url)
        assert second[1] >= first[1] + 2
        assert [ended for _, ended in runs_of(cfg.database.url)] == ["clean", "clean"]
    finally:
        await run.close()


async def test_sigkill_at_a_random_moment_then_restart(tmp_path: Path) -> None:
    sim = await start_sim(SimExchange.for_tests(**SIM_OPTIONS))
    cfg = scenario_config(tmp_path)
    bot_config(tmp_path)
    secret = sim.creds.api_secret
    assert secret and len(secret) >= 16
    try:
        delay = await sigkill_while_trading(tmp_path, sim.urls.admin, lambda: our_orders(sim) >= 1,
                                            "the first bot trading")
        killed_at = our_orders(sim)
        # The killed run's files as it left them (WAL included) hold no secret either.
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path

        # An order the kill left unresolved keeps its side busy until its absence is
        # confirmed (-2013 past the 2 s request-timeout grace, then again a grace later):
        # the restarted bot must outlive that (and its own start-up) to trade on that side again.
        second = await restart_until(tmp_path, sim.urls.admin, lambda: our_orders(sim) > killed_at,
                                     f"the restarted bot trading (kill after {delay:.2f} s)")
        code = await wait_exit(second)
        assert code == 0, second.output()[-3000:]
        await ledger_equals_exchange(sim, cfg.database.url)
        runs = runs_of(cfg.database.url)
        assert len(runs) == 2 and runs[-1][1] == "clean", runs
    finally:
        await sim.server.stop()
