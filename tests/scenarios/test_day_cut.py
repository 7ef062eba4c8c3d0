"""Binance's 24 h cut on a sped-up exchange: every connection is closed at 24 h of exchange
time, the bot's daily reconnect (23 h) rotates them first, and trading carries on across
the day boundary with the ledger equal to the exchange afterwards."""

from __future__ import annotations

from pathlib import Path

from executor.sim.exchange import SimExchange
from tests.conftest import start_sim
from tests.scenarios.harness import SIM_OPTIONS, BotRun, fills, ledger_equals_exchange, scenario_config, until

TIME_SCALE = 20_000  # one exchange day in 4.3 s of wall time
DAY_MS = 86_400_000


async def test_trading_across_the_24h_cut(tmp_path: Path) -> None:
    # One book update per 5,000 exchange seconds: 4 a second of wall time.
    handle = await start_sim(SimExchange.for_tests(time_scale=TIME_SCALE, book_update_hz=0.0002,
                                                   balances=SIM_OPTIONS["balances"]))
    cfg = scenario_config(tmp_path, {
        "sim": {"time_scale": str(TIME_SCALE)},
        # Exchange seconds (divided by the time scale): keepalive 60 ms, clock sync 180 ms,
        # reconciliation 720 ms and the daily reconnect 4.1 s of wall time.
        "scheduler": {"futures_keepalive_s": 1200, "daily_reconnect_s": 82_800, "reconcile_s": 14_400,
                      "balance_snapshot_s": 28_800, "clock_sync_s": 3600}})
    clock = handle.exchange.clock
    run = BotRun(handle, cfg)
    try:
        bot = await run.start()
        start_ms = clock.now_ms()
        await run.trade(1)
        assert bot.scheduler is not None
        stats = bot.scheduler.stats
        await until(lambda: stats["daily_reconnect"].ok >= 1, 15, "the daily reconnect")
        await until(lambda: clock.now_ms() - start_ms > DAY_MS * 1.05, 15, "past the 24 h cut")
        after_cut = fills(bot)
        await run.trade(2)
        assert fills(bot) > after_cut
        # A busy machine skips overlapping runs (max_instances=1): wait for the counts rather
        # than read them at one instant; the exchange clock keeps running meanwhile.
        await until(lambda: stats["reconcile"].ok >= 3 and stats["clock_sync"].ok >= 5, 15,
                    "three reconciliations and five clock syncs")
        await until(lambda: stats["futures_keepalive"].runs >= 10, 15, "ten keepalives")
        assert bot.user_streams[0].health.rotations >= 1
        assert await run.stop() == "clean"
        _, trades = await ledger_equals_exchange(handle, cfg.database.url)
        assert trades >= 3
    finally:
        await run.close()
        await handle.server.stop()
