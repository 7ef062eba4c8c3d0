"""Honest endings: the run row says how a run ended, and the exit code agrees.

clean (every shutdown step finished) exits 0; unclean (a step failed: here the exchange's
WAF refuses every REST request, so our open orders cannot be listed and the final
reconciliation fails) names the steps and exits 6; forced (a second signal while a step
hangs) is written before the exit and exits 130; a run that never closed is marked
abandoned by the next start. And one data folder: a run started from another folder
honours the kill switch inside it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

from executor.config import ROOT
from executor.persistence.db import database_path
from executor.run.app import run_ending
from executor.run.failures import EXIT_FORCED, EXIT_OK, EXIT_UNCLEAN
from executor.sim.exchange import SimExchange
from tests.conftest import start_sim
from tests.scenarios.harness import SIM_OPTIONS, BotRun, scenario_config, until
from tests.scenarios.procs import BotProcess, bot_config, spawn_bot, wait_exit
from tests.scenarios.test_restart import our_orders


def runs(ledger: Path) -> list[tuple[str | None, str | None]]:
    with sqlite3.connect(ledger) as conn:
        return conn.execute("SELECT ended, end_reason FROM runs ORDER BY id").fetchall()


def test_run_ending_rules() -> None:
    assert run_ending("clean", "SIGINT", failed=[], skipped=[], forced=False) == ("clean", "SIGINT")
    ended, reason = run_ending("clean", "SIGINT", failed=["final reconciliation"], skipped=[], forced=False)
    assert ended == "unclean" and "final reconciliation" in reason and reason.startswith("SIGINT")
    skipped = ["cancel our open orders"]
    assert run_ending("clean", "x", failed=[], skipped=skipped, forced=False)[0] == "unclean"
    assert run_ending("clean", "x", failed=["a"], skipped=[], forced=True)[0] == "forced"
    assert run_ending("error", "boom", failed=[], skipped=[], forced=False) == ("error", "boom")


async def test_a_failed_shutdown_is_recorded_unclean(tmp_path: Path) -> None:
    sim = await start_sim(SimExchange.for_tests(**SIM_OPTIONS))
    cfg = scenario_config(tmp_path)
    run = BotRun(sim, cfg)
    try:
        bot = await run.start()
        await run.trade(1)
        # From now on the exchange's WAF answers every REST request with a 403 page.
        sim.exchange.faults.waf_block(1_000_000)
        ended = await run.stop("test: stop during a WAF block")
    finally:
        await run.close()
        await sim.server.stop()
    assert ended == "unclean"
    ((row_ended, reason),) = runs(database_path(cfg.database.url))
    assert row_ended == "unclean" and bot.run_id == 1
    assert "cancel our open orders" in reason and "final reconciliation" in reason, reason


async def _wait_output(bot: BotProcess, text: str, timeout: float = 60.0) -> None:
    await until(lambda: text in bot.output(), timeout, repr(text))


async def test_unclean_exits_non_zero_and_forced_is_written_before_exit(tmp_path: Path) -> None:
    sim = await start_sim(SimExchange.for_tests(**SIM_OPTIONS))
    ledger = tmp_path / "ledger.db"
    try:
        # Unclean: SIGTERM while the WAF refuses REST -> exit 6, run row "unclean".
        bot_config(tmp_path)
        bot = await spawn_bot(tmp_path, sim.urls.admin, "unclean")
        await until(lambda: our_orders(sim) >= 1, 60, "the bot trading")
        sim.exchange.faults.waf_block(1_000_000)
        bot.proc.send_signal(signal.SIGTERM)
        assert await wait_exit(bot) == EXIT_UNCLEAN, bot.output()[-3000:]
        assert runs(ledger)[-1][0] == "unclean"
        assert "Traceback" not in bot.output()
        sim.exchange.faults.reset()

        # Forced: the shutdown hangs on held REST answers; a second SIGTERM ends it at once,
        # and the run row already says "forced".
        bot = await spawn_bot(tmp_path, sim.urls.admin, "forced")
        await _wait_output(bot, "bot running")
        sim.exchange.faults.hold(1_000_000, 20.0)
        bot.proc.send_signal(signal.SIGTERM)
        await _wait_output(bot, "stopping gracefully")
        bot.proc.send_signal(signal.SIGTERM)
        assert await wait_exit(bot, 15) == EXIT_FORCED, bot.output()[-3000:]
        ended, reason = runs(ledger)[-1]
        assert ended == "forced" and "second signal" in (reason or "")
        sim.exchange.faults.reset()

        # Abandoned: a run killed outright is marked by the next start; that one ends clean.
        bot = await spawn_bot(tmp_path, sim.urls.admin, "killed")
        await _wait_output(bot, "bot running")
        bot.proc.kill()
        await bot.proc.wait()
        bot = await spawn_bot(tmp_path, sim.urls.admin, "after", "--duration", "1")
        assert await wait_exit(bot) == EXIT_OK, bot.output()[-3000:]
        assert [e for e, _ in runs(ledger)] == ["unclean", "forced", "abandoned", "clean"]
    finally:
        await sim.server.stop()


async def test_a_run_started_from_another_folder_honours_the_kill_switch(tmp_path: Path) -> None:
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    data.mkdir()
    elsewhere.mkdir()
    (data / "KILL").write_text("test: no trading\n")
    # Only relative names (the defaults: KILL, logs, sim.db) and a strategy that wants
    # to trade at once; the run starts in another folder.
    cfg = tmp_path / "c.toml"
    cfg.write_text('[strategy.params]\nentry_bps = "-50"\nexit_bps = "51"\n'
                   '[sim]\nbook_update_hz = "5"\n', encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "run.py"), "--config", str(cfg), "--data-dir", str(data),
        "--duration", "4", cwd=elsewhere, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == EXIT_OK, err.decode()[-3000:]
    # The default ledger is per profile now (sim.db), so the per-run ones are sim/sim-<stamp>.db.
    (ledger,) = (data / "sim").glob("sim-*.db")
    with sqlite3.connect(ledger) as conn:
        orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        refused = conn.execute("SELECT count(*) FROM risk_refusals WHERE rule = 'kill_switch'").fetchone()[0]
    assert orders == 0 and refused > 0
    assert list((data / "logs").glob("run-*.log"))
    assert not list(elsewhere.iterdir())  # nothing written where it was started
