"""Issue 6: the API secret never appears in a log file, the console output or the ledger.

The bot runs as a user runs it (``run.py --exchange``, DEBUG logging) with the exchange's
HMAC key, through faults that exercise its error paths (an order answered 503 and resolved by
query, a dropped user stream resubscribed); afterwards every file it wrote (log files, the SQLite
database with its -wal/-shm) and its stdout/stderr are searched for the secret."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from executor.sim.exchange import SimExchange
from tests.conftest import start_sim
from tests.scenarios.harness import SIM_OPTIONS, until
from tests.scenarios.procs import bot_config, spawn_bot, wait_exit
from tests.scenarios.test_restart import our_orders


async def test_the_secret_appears_nowhere(tmp_path: Path) -> None:
    sim = await start_sim(SimExchange.for_tests(**SIM_OPTIONS))
    secret = sim.creds.api_secret
    assert secret and len(secret) >= 16
    bot_config(tmp_path)
    try:
        bot = await spawn_bot(tmp_path, sim.urls.admin, "bot", "--duration", "3", "--log-level", "DEBUG")
        await until(lambda: our_orders(sim) >= 1, 60, "the bot trading")
        async with aiohttp.ClientSession() as http:
            for path, body in (("orders", {"count": 1, "status": 503}), ("drop", {"kind": "ws_api"})):
                async with http.post(f"{sim.urls.admin}/faults/{path}", json=body) as resp:
                    assert resp.status == 200, await resp.text()
        assert await wait_exit(bot) == 0, bot.output()[-3000:]
    finally:
        await sim.server.stop()
    assert sim.exchange.faults.order_failures == type(sim.exchange.faults.order_failures)()  # used
    logs = list((tmp_path / "logs").rglob("*.log"))
    assert logs and sum(p.stat().st_size for p in logs) > 10_000  # DEBUG: plenty written
    assert list(tmp_path.glob("ledger.db*"))
    needle = secret.encode()
    searched = 0
    for path in tmp_path.rglob("*"):
        if path.is_file():
            searched += 1
            assert needle not in path.read_bytes(), f"the secret is in {path}"
    assert searched >= 4  # config, stdout, stderr, log, ledger
    assert secret not in bot.output()
