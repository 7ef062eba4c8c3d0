"""A power cut under ``synchronous=FULL``: the ledger as it was at an fsync (a copy taken
right after the run's first block of client ids was reserved), while the exchange has
orders sent after it whose intents (committed without an fsync) the cut took away.

The first bot runs as ``python run.py`` and is SIGKILLed; its database files are replaced
by the copy; a second bot starts on it. It must find every order of the lost intents by
its reserved client id (spot ``allOrders``), adopt it with its fills, send nothing twice,
and end with a ledger equal to the exchange."""

from __future__ import annotations

import signal
import sqlite3
from collections import Counter
from pathlib import Path

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
from tests.scenarios.procs import bot_config, spawn_bot


def our_client_ids(sim: SimHandle) -> list[str]:
    return [o.client_order_id for s in SYMBOLS for o in sim.exchange.engine.orders[s]
            if o.account_id == DEFAULT_ID]


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def blocks_reserved(path: Path) -> int:
    if not path.exists():  # (connecting would create it)
        return 0
    try:
        return int(rows(path, "SELECT count(*) FROM id_blocks")[0][0])
    except sqlite3.Error:  # not created / migrated yet
        return 0


def snapshot(path: Path, copy: Path) -> None:
    """A consistent copy of the ledger's committed state (SQLite's backup API reads the WAL)."""
    with sqlite3.connect(path) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)


async def test_power_cut_loses_intents_but_no_order(tmp_path: Path) -> None:
    sim = await start_sim(SimExchange.for_tests(**SIM_OPTIONS))
    extra = {"database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}?synchronous=full"}}
    cfg = scenario_config(tmp_path, extra)
    bot_config(tmp_path, extra)
    path = database_path(cfg.database.url)
    copy = tmp_path / "at-last-fsync.db"
    run = BotRun(sim, cfg)
    try:
        first = await spawn_bot(tmp_path, sim.urls.admin, "first")
        try:
            # The block's reservation is an fsynced commit: the copy is the ledger as a
            # power cut right after it would leave it (orders after it are not in it).
            await until(lambda: blocks_reserved(path) >= 1, 60, "the first block of ids reserved")
            snapshot(path, copy)
            in_copy = {r[0] for r in rows(copy, "SELECT client_order_id FROM orders WHERE external = 0")}
            # Orders sent after the copy, all within the first block (64 ids; the next block
            # is reserved after 32, and it would be fsynced, so a cut could not lose it).
            await until(lambda: len(set(our_client_ids(sim)) - in_copy) >= 3, 60,
                        "orders sent after the fsync")
        finally:
            first.proc.send_signal(signal.SIGKILL)
            await first.proc.wait()
        sent_before_cut = our_client_ids(sim)
        lost = set(sent_before_cut) - in_copy
        assert lost, "the cut must have taken some intents away"
        assert len(sent_before_cut) < 64, "the test assumes the orders stayed in the first block"
        # The power cut: the database files as at the fsync.
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        copy.replace(path)

        bot = await run.start()
        resolution = bot.id_resolution
        assert resolution is not None and resolution.blocks == 1
        assert lost <= set(resolution.adopted), (lost, resolution)
        await run.trade(1, timeout=30)
        assert await run.stop() == "clean"

        sent = our_client_ids(sim)
        assert [cid for cid, n in Counter(sent).items() if n > 1] == []  # nothing sent twice
        recorded = Counter(r[0] for r in rows(path, "SELECT client_order_id FROM orders"))
        assert all(recorded[cid] == 1 for cid in sent), "every order of ours in the ledger once"
        await ledger_equals_exchange(sim, cfg.database.url)
        states = rows(path, "SELECT r.ended, b.state, b.adopted FROM id_blocks b "
                            "JOIN runs r ON r.id = b.run_id ORDER BY b.id")
        assert states[0] == ("abandoned", "resolved", len(resolution.adopted)), states
        assert {s[1] for s in states[1:]} == {"released"}, states  # the clean run's blocks

        # After a clean end nothing is asked: its unused ids were released.
        bot = await run.start()
        assert bot.id_resolution is not None and bot.id_resolution.blocks == 0
        assert bot.id_resolution.queries == 0
        assert await run.stop() == "clean"
    finally:
        await run.close()
        await sim.server.stop()
