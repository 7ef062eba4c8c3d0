"""The bot on a PostgreSQL ledger: it trades on the embedded exchange under duplicated and
reordered user events, and once settled its ledger equals the exchange's ground truth and
``audit verify`` on the server is clean. Skips unless ``BX_TEST_PG_URL`` names a server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from executor.audit.query import AuditDB, Scope
from executor.audit.verify import verify
from tests.conftest import SimHandle
from tests.ledger_backends import SKIP_NO_PG, PgDatabases
from tests.scenarios.harness import SIM_OPTIONS, BotRun, ledger_equals_exchange, scenario_config, until

pytestmark = pytest.mark.sim_options(**SIM_OPTIONS)


@pytest.fixture
async def runs() -> AsyncIterator[list[BotRun]]:
    made: list[BotRun] = []
    yield made
    for run in made:
        await run.close()


async def test_bot_on_postgresql_equals_the_exchange(
    sim: SimHandle, tmp_path: Path, runs: list[BotRun], pg_databases: PgDatabases | None
) -> None:
    if pg_databases is None:
        pytest.skip(SKIP_NO_PG)
    url = await pg_databases.create(migrated=False)  # the bot migrates it on start
    run = BotRun(sim, scenario_config(tmp_path, {"database": {"url": url}}))
    runs.append(run)
    bot = await run.start()
    await run.trade(1)
    faults = sim.exchange.faults
    faults.duplicate_events(6)
    faults.events.reorder = 6
    await until(lambda: faults.events.duplicate == 0 and faults.events.reorder == 0, 15,
                "every duplicated and reordered event delivered")
    assert bot.user_streams[0].health.events > bot.reconciler.totals.order_events_added
    await run.trade(2)
    assert await run.stop() == "clean"
    orders, trades = await ledger_equals_exchange(sim, url)
    assert orders >= 3 and trades >= 3
    with AuditDB.from_url(url) as db:
        res = verify(db, Scope())
    assert res.ok, res.notes


async def test_two_bots_on_two_accounts_share_one_postgresql(
    sim: SimHandle, tmp_path: Path, runs: list[BotRun], pg_databases: PgDatabases | None
) -> None:
    """The fleet: two bots, two accounts of the exchange, one PostgreSQL database, each bot
    in its namespace (``?bot=NAME``); both trade at once, each ledger equals its account's
    ground truth and each ``audit verify --bot`` is clean."""
    if pg_databases is None:
        pytest.skip(SKIP_NO_PG)
    from executor.cli import main
    from executor.persistence.db import with_bot

    server = await pg_databases.create(migrated=False)
    sim.exchange.add_account("second", SIM_OPTIONS["balances"])
    bots = {"alpha": ("default", sim.creds), "beta": ("second", sim.exchange.credentials("HMAC", "second"))}
    for name, (_account, creds) in bots.items():
        cfg = scenario_config(tmp_path / name, {"database": {"url": with_bot(server, name)}})
        runs.append(BotRun(sim, cfg, creds=creds))
    await asyncio.gather(*(r.start() for r in runs))
    await asyncio.gather(*(r.trade(3, timeout=30) for r in runs))
    assert await asyncio.gather(*(r.stop() for r in runs)) == ["clean", "clean"]
    for name, (account, _creds) in bots.items():
        orders, trades = await ledger_equals_exchange(sim, with_bot(server, name), account)
        assert orders >= 3 and trades >= 3
    for name in bots:
        code = await asyncio.to_thread(main, ["audit", "verify", "--db", server, "--bot", name])
        assert code == 0, name
