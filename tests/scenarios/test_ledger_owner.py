"""One owner, one namespace and one venue per ledger, with ``python run.py`` as a user runs it
(subprocesses with ``--exchange`` against an embedded exchange the test owns):

* a second bot on a ledger another bot is trading on is refused: exit 2, one line naming the
  holder, no run row; ``audit`` (read-only) still works meanwhile;
* a lease left by a SIGKILLed bot is taken over and the killed run marked abandoned;
* two bots with separate ledgers trading on one account at once each cancel only their own
  orders at shutdown (never each other's, never an order of another prefix), and each
  ledger's ``audit verify`` is clean; ``audit`` shows each ledger's prefix and venue;
* a ledger opened for another exchange (subprocess, exit 2) or another profile is refused.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import socket
import sqlite3
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from executor.config import ROOT
from executor.persistence.db import database_path
from executor.persistence.identity import LedgerMismatch
from executor.run.app import Bot, BotOptions
from executor.run.shutdown import Shutdown
from executor.sim.accounts import DEFAULT_ID
from executor.sim.exchange import SimExchange
from executor.venue.profiles import Venue
from tests.conftest import SimHandle, build_client, start_sim
from tests.scenarios.harness import SIM_OPTIONS, SYMBOLS, scenario_config, until, write_toml
from tests.scenarios.harness import overrides as scenario_overrides
from tests.scenarios.procs import BotProcess, bot_config, spawn_bot, wait_exit


def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


def query(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return []


# An INFO record as the stderr log handler writes it (executor.run.logs.TextFormatter).
_INFO_RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO ")


def refusal_lines(err: Path) -> list[str]:
    """stderr without its INFO log records: what a refusal printed besides them.

    The run logs its start line (venue, exchange URL, ledger) at INFO on stderr before it
    opens the ledger (issue #13: the start names them; every start-up failure is then one
    line after it, as in tests/app/test_startup_failures.py). The refusal itself must still
    be exactly one line, with no warning, error or traceback beside it.
    """
    text = err.read_text()
    assert "Traceback" not in text, text[-3000:]
    return [line for line in text.splitlines() if line.strip() and not _INFO_RECORD.match(line)]


def lease_run(path: Path) -> int | None:
    rows = query(path, "SELECT run_id FROM ledger_leases")
    return int(rows[0][0]) if rows and rows[0][0] is not None else None  # type: ignore[arg-type]


def prefix_of(path: Path) -> str:
    return str(query(path, "SELECT value FROM ledger_meta WHERE key = 'client_prefix'")[0][0])


def open_on_sim(sim: SimHandle, prefix: str) -> list[str]:
    return [o.client_order_id for s in SYMBOLS for o in sim.exchange.engine.orders[s]
            if o.account_id == DEFAULT_ID and o.is_open and o.client_order_id.startswith(prefix + "-")]


async def run_cli(*args: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "run.py"), *args, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def stop(bot: BotProcess) -> int:
    bot.proc.send_signal(signal.SIGTERM)
    return await wait_exit(bot)


async def test_second_bot_on_the_same_ledger_is_refused_with_one_line(tmp_path: Path) -> None:
    sim = await start_sim(SimExchange.for_tests(**SIM_OPTIONS))
    bot_config(tmp_path)
    path = ledger(tmp_path)
    try:
        first = await spawn_bot(tmp_path, sim.urls.admin, "first")
        try:
            await until(lambda: lease_run(path) is not None, 60, "the first bot holding the lease")
            second = await spawn_bot(tmp_path, sim.urls.admin, "second", "--duration", "30")
            assert await wait_exit(second) == 2, second.output()[-3000:]
            lines = refusal_lines(second.err)
            assert len(lines) == 1, lines
            assert lines[0].startswith(f"ledger {path} is in use by run 1 (pid {first.proc.pid} on "
                                       f"{socket.gethostname()}, last heartbeat "), lines[0]
            assert "s ago)" in lines[0]
            assert query(path, "SELECT id, ended FROM runs") == [(1, None)]  # no run row of its own
            assert first.proc.returncode is None  # and the first one trades on
            # Read-only commands take no lease.
            code, _, err = await run_cli("audit", "--db", f"sqlite+aiosqlite:///{path}", cwd=tmp_path)
            assert code == 0, err
        finally:
            assert await stop(first) == 0, first.output()[-3000:]
        assert query(path, "SELECT id, ended FROM runs") == [(1, "clean")]
        assert query(path, "SELECT * FROM ledger_leases") == []  # released at a clean stop
    finally:
        await sim.server.stop()


async def test_lease_of_a_sigkilled_bot_is_taken_over(tmp_path: Path) -> None:
    sim = await start_sim(SimExchange.for_tests(**SIM_OPTIONS))
    bot_config(tmp_path)
    path = ledger(tmp_path)
    try:
        first = await spawn_bot(tmp_path, sim.urls.admin, "first")
        try:
            await until(lambda: lease_run(path) == 1, 60, "the first bot holding the lease")
        finally:
            first.proc.send_signal(signal.SIGKILL)
            await first.proc.wait()
        assert lease_run(path) == 1  # left behind
        second = await spawn_bot(tmp_path, sim.urls.admin, "second", "--duration", "2")
        assert await wait_exit(second) == 0, second.output()[-3000:]
        (killed, restarted) = query(path, "SELECT ended, end_reason FROM runs ORDER BY id")
        assert killed[0] == "abandoned"
        assert f"lease taken over at start of a new run: pid {first.proc.pid} is not running" \
            in str(killed[1])
        assert restarted[0] == "clean"
        assert query(path, "SELECT * FROM ledger_leases") == []
    finally:
        await sim.server.stop()


@pytest.mark.sim_options(**SIM_OPTIONS)
async def test_two_ledgers_on_one_account_each_cancel_only_their_own(sim: SimHandle, tmp_path: Path) -> None:
    # Bot "a" takes liquidity (IOC, fills at once); bot "b" keeps post-only bids resting for a
    # minute, so it has orders open when "a" stops.
    dirs = [tmp_path / "a", tmp_path / "b"]
    resting = {"strategy": {"params": {"post_only": True, "quote_ttl_s": "60"}}}
    for d, extra in zip(dirs, ({}, resting), strict=True):
        d.mkdir()
        write_toml(d / "bot.toml", scenario_overrides(d, extra))
    # Orders on the same account that are neither bot's: a manual one, and one in the old
    # shared default namespace ``bx``.
    client = build_client(sim.creds, sim.endpoints)
    try:
        for cid in ("manual-keep-1", "bx-mhx2k9q0a7f3-o1"):
            await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                      quantity="0.001", price="30000", newClientOrderId=cid)
    finally:
        await client.close_connection()
    paths = [ledger(d) for d in dirs]
    bots = [await spawn_bot(d, sim.urls.admin, d.name) for d in dirs]
    try:
        await until(lambda: all(lease_run(p) is not None for p in paths), 60, "both bots running")
        a, b = (prefix_of(p) for p in paths)
        assert a != b
        await until(lambda: bool(open_on_sim(sim, b)), 60, "bot b with orders resting")
        await until(lambda: len(own_fills(paths[0])) >= 3, 60, "bot a trading")
        assert await stop(bots[0]) == 0, bots[0].output()[-3000:]
        assert open_on_sim(sim, a) == []
        assert open_on_sim(sim, b), "the first bot's shutdown cancelled the second one's orders"
    finally:
        for bot in bots:
            if bot.proc.returncode is None:
                assert await stop(bot) == 0, bot.output()[-3000:]
    assert open_on_sim(sim, b) == []
    still = {o.client_order_id for o in sim.exchange.engine.orders["BTCUSDT"] if o.is_open}
    assert still == {"manual-keep-1", "bx-mhx2k9q0a7f3-o1"}
    # Every cancel on the exchange came from the order's own namespace.
    for s in SYMBOLS:
        for o in sim.exchange.engine.orders[s]:
            if o.status == "CANCELED" and o.client_order_id.startswith((a + "-", b + "-")):
                assert o.cancel_client_id.split("-")[0] == o.client_order_id.split("-")[0], o
    for path, mine, theirs in ((paths[0], a, b), (paths[1], b, a)):
        ours = [str(r[0]) for r in query(path, "SELECT client_order_id FROM orders WHERE NOT external")]
        assert ours and all(cid.startswith(mine + "-") for cid in ours)
        assert not query(path, "SELECT 1 FROM orders WHERE NOT external AND client_order_id LIKE ?",
                         theirs + "-%")
        url = f"sqlite+aiosqlite:///{path}"
        code, out, err = await run_cli("audit", "verify", "--db", url, cwd=tmp_path)
        assert code == 0, out + err
        code, out, err = await run_cli("audit", "--db", url, cwd=tmp_path)
        assert code == 0, err
        assert f"ledger: client id prefix {mine} · venue sim at 127.0.0.1:" in out
        assert f"account {sim.exchange.default_account.uid}" in out
    # "a"'s trades while "b" ran are in "b"'s ledger too, as external: they moved the balances
    # (so verify explains them) but are not "b"'s inventory.
    external = query(paths[1], "SELECT o.client_order_id FROM fills f JOIN orders o ON f.order_id = o.id "
                               "WHERE o.external")
    assert external and all(str(r[0]).startswith(a + "-") for r in external)


def own_fills(path: Path) -> list[tuple[object, ...]]:
    return query(path, "SELECT f.id FROM fills f JOIN orders o ON f.order_id = o.id WHERE NOT o.external")


async def test_ledger_of_another_exchange_is_refused_exit_2(tmp_path: Path) -> None:
    first_sim = await start_sim(SimExchange.for_tests(**SIM_OPTIONS))
    bot_config(tmp_path)
    path = ledger(tmp_path)
    try:
        bot = await spawn_bot(tmp_path, first_sim.urls.admin, "first", "--duration", "1")
        assert await wait_exit(bot) == 0, bot.output()[-3000:]
    finally:
        await first_sim.server.stop()
    other_sim = await start_sim(SimExchange.for_tests(**SIM_OPTIONS))
    try:
        before = query(path, "SELECT * FROM runs")
        bot = await spawn_bot(tmp_path, other_sim.urls.admin, "second", "--duration", "1")
        assert await wait_exit(bot) == 2, bot.output()[-3000:]
        lines = refusal_lines(bot.err)
        was, now = (urlsplit(s.endpoints.spot_rest).netloc for s in (first_sim, other_sim))
        assert lines == [f"ledger {path} belongs to sim at {was}, account "
                         f"{first_sim.exchange.default_account.uid}, not sim at {now}; give this venue "
                         "its own [database] url"], lines
        assert query(path, "SELECT * FROM runs") == before
        # Even on the same port a restarted exchange is another account: its ids restarted.
        assert other_sim.exchange.default_account.uid != first_sim.exchange.default_account.uid
    finally:
        await other_sim.server.stop()


@pytest.mark.sim_options(**SIM_OPTIONS)
async def test_ledger_opened_for_another_profile_is_refused(sim: SimHandle, tmp_path: Path) -> None:
    cfg = scenario_config(tmp_path)
    path = database_path(cfg.database.url)
    first = Bot(cfg, Venue("sim", sim.endpoints, sim.endpoints), sim.creds,
                BotOptions(status_out=io.StringIO()))
    try:
        await asyncio.wait_for(first.start(), 30)
    finally:
        await first.stop(Shutdown(), reason="test")
    before = query(path, "SELECT * FROM runs")
    # The same ledger for testnet (pointed at the embedded exchange, so nothing leaves this machine).
    testnet = cfg.__class__(**{**cfg.__dict__, "profile": "testnet"})
    second = Bot(testnet, Venue("testnet", sim.endpoints, sim.endpoints), sim.creds, BotOptions())
    try:
        with pytest.raises(LedgerMismatch,
                           match=r"belongs to sim at 127\.0\.0\.1:\d+, account \d+, not testnet "):
            await asyncio.wait_for(second.start(), 30)
    finally:
        await second.stop(Shutdown(), reason="test")
    assert query(path, "SELECT * FROM runs") == before
    assert query(path, "SELECT * FROM ledger_leases") == []


@pytest.mark.sim_options(**SIM_OPTIONS)
async def test_a_bot_whose_lease_is_taken_stops_trading_and_leaves_the_ledger(sim: SimHandle,
                                                                                tmp_path: Path) -> None:
    cfg = scenario_config(tmp_path, {"strategy": {"params": {"post_only": True, "quote_ttl_s": "60"}}})
    path = database_path(cfg.database.url)
    bot = Bot(cfg, Venue("sim", sim.endpoints, sim.endpoints), sim.creds,
              BotOptions(status_out=io.StringIO()))
    asked: list[str] = []
    bot.on_lease_lost = asked.append
    try:
        await asyncio.wait_for(bot.start(), 30)
        assert bot.prefix == prefix_of(path)
        await until(lambda: bool(open_on_sim(sim, bot.prefix)), 30, "an order resting")
        # Another process takes the ledger over (as after a takeover): the next heartbeat sees it.
        # (From a thread: the bot's own writes need this event loop to finish their transactions.)
        def take_over() -> None:
            with sqlite3.connect(path, timeout=30) as conn:
                conn.execute("UPDATE ledger_leases SET token = 'theirs', pid = 4242, host = 'otherbox', "
                             "run_id = NULL")

        await asyncio.to_thread(take_over)
        await until(lambda: bot.lease_lost is not None, 15, "the lost lease noticed")
        assert asked == [bot.lease_lost] and "pid 4242 on otherbox" in str(bot.lease_lost)
        assert bot.manager is not None and not bot.manager.accepting
    finally:
        ended = await bot.stop(Shutdown(), reason="test")
    assert ended == "error"
    # The new owner's business now: no cancels of "ours", the run row and its lease untouched.
    assert open_on_sim(sim, bot.prefix)
    assert query(path, "SELECT ended FROM runs") == [(None,)]
    assert query(path, "SELECT token FROM ledger_leases") == [("theirs",)]


async def test_two_bots_starting_at_once_on_a_new_ledger_exactly_one_wins(tmp_path: Path) -> None:
    sim = await start_sim(SimExchange.for_tests(**SIM_OPTIONS))
    bot_config(tmp_path)
    path = ledger(tmp_path)
    try:
        # Long enough that the winner still holds the lease when the other (started at the same
        # moment, however slowly on a loaded machine) asks for it.
        bots = await asyncio.gather(*(spawn_bot(tmp_path, sim.urls.admin, name, "--duration", "8")
                                      for name in ("one", "two")))
        codes = sorted([await wait_exit(bot) for bot in bots])
        assert codes == [0, 2], [bot.output()[-2000:] for bot in bots]
        (loser,) = [bot for bot in bots if bot.proc.returncode == 2]
        assert "is in use by" in loser.err.read_text()
        assert query(path, "SELECT id, ended FROM runs") == [(1, "clean")]  # none for the loser
        assert len(query(path, "SELECT key FROM ledger_meta WHERE key = 'client_prefix'")) == 1
    finally:
        await sim.server.stop()
