"""The reconciliation fault tests of ``test_faults.py`` / ``test_restart.py``, for futures: the
bot trading ``CashAndCarry`` with ``[futures] trade = true`` (the test swings the perpetual's
basis so both legs keep opening and closing) under one fault per test — the futures user
stream dropped, its listenKey expired, a 5xx on ``POST /fapi/v1/order``, a graceful stop and
restart, a SIGKILL at a random moment and restart. Once settled, the ledger equals the
exchange (spot and futures orders, trades, positions, income: ``executor.chaos.truth``), no
client order id reached the exchange twice and ``audit verify`` (futures wallet included) is
clean."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from executor.audit.query import AuditDB, Scope
from executor.audit.verify import render_verify, verify
from executor.chaos.truth import compare_ledger
from executor.config import Config, load_config
from executor.persistence.db import database_path
from executor.sim.accounts import DEFAULT_ID
from executor.sim.exchange import SimExchange
from tests.conftest import SimHandle, start_sim
from tests.scenarios.harness import SIM_OPTIONS, BotRun, overrides, recon_reasons, until, write_toml
from tests.scenarios.procs import restart_until, sigkill_while_trading, wait_exit

pytestmark = pytest.mark.sim_options(**SIM_OPTIONS)
SYMBOL = "BTCUSDT"
CARRY: dict[str, Any] = {
    "symbols": {"spot": [SYMBOL]},
    "futures": {"trade": True, "leverage": 3, "max_position": {"BTC": "0.05"},
                "max_net_delta": {"BTC": "0.02"}},
    "strategy": {"path": "executor.strategy.carry:CashAndCarry",
                 "params": {"entry_bps": "10", "exit_bps": "0", "qty": "0.004", "max_position": "0.008",
                            "hedge_timeout_s": "1", "cooldown_s": "0.2"}},
}


def carry_overrides(tmp_path: Path) -> dict[str, Any]:
    """The scenarios' settings with the carry strategy (its own parameters) and futures on."""
    return {**overrides(tmp_path), **CARRY}


def carry_config(tmp_path: Path) -> Config:
    return load_config(local=None, overrides=carry_overrides(tmp_path))


def futures_trades(sim: SimHandle) -> int:
    return sum(1 for t in sim.exchange.futures.orders.trades if t.account == DEFAULT_ID)


async def _swing(sim: SimHandle, period_s: float = 1.2) -> None:
    """Premium on, premium off: the carry enters and exits over and over."""
    market = sim.exchange.futures.market
    high = True
    while True:
        market.set_basis(SYMBOL, Decimal("0.004") if high else Decimal("-0.002"))
        high = not high
        await asyncio.sleep(period_s)


@pytest.fixture
async def swing(sim: SimHandle) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(_swing(sim))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
async def run(sim: SimHandle, tmp_path: Path, swing: None) -> AsyncIterator[BotRun]:
    made = BotRun(sim, carry_config(tmp_path))
    yield made
    await made.close()


async def trade_futures(sim: SimHandle, n: int, timeout: float = 20.0) -> None:
    target = futures_trades(sim) + n
    await until(lambda: futures_trades(sim) >= target, timeout, f"{target} futures trades")


async def settled_equal(sim: SimHandle, url: str, *, exchange: Any = None) -> None:
    found = await compare_ledger(exchange or sim.exchange, url, DEFAULT_ID)
    assert found.ok, found.examples
    assert found.futures_orders >= 2 and found.futures_trades >= 2, found
    with AuditDB(database_path(url)) as db:
        res = verify(db, Scope())
    assert res.ok, render_verify(res)
    assert any(n.startswith("futures wallet:") for n in res.notes), res.notes


async def finish(run: BotRun, sim: SimHandle) -> None:
    await trade_futures(sim, 2)
    assert await run.stop() == "clean"
    await settled_equal(sim, run.cfg.database.url)


async def test_futures_user_stream_drop(sim: SimHandle, run: BotRun) -> None:
    bot = await run.start()
    await trade_futures(sim, 2)
    (fstream,) = bot.futures_streams
    health = fstream.health
    await until(lambda: health.gap_fills >= 1, 5, "futures start-up gap fill")
    assert await sim.exchange.faults.connections.drop("private") >= 1
    await until(lambda: health.reconnects >= 1 and health.gap_fills >= 2, 10, "reconnect + futures gap fill")
    await finish(run, sim)
    assert "futures_reconnect" in recon_reasons(run.cfg.database.url)


async def test_futures_listen_key_expiry_mid_trading(sim: SimHandle, run: BotRun) -> None:
    bot = await run.start()
    await trade_futures(sim, 2)
    health = bot.futures_streams[0].health
    await until(lambda: health.gap_fills >= 1, 5, "futures start-up gap fill")
    assert sim.exchange.futures.listen_keys.expire_now(account_id=DEFAULT_ID)
    await until(lambda: health.keys_expired >= 1 and health.key_recreations >= 1 and health.gap_fills >= 2,
                10, "new listenKey, reconnect, futures gap fill")
    await finish(run, sim)


@pytest.mark.parametrize(("status", "placed"), [(503, True), (502, False)],
                         ids=["503-placed", "502-not-placed"])
async def test_5xx_on_futures_order(sim: SimHandle, run: BotRun, status: int, placed: bool) -> None:
    bot = await run.start()
    await trade_futures(sim, 2)
    sim.exchange.faults.fail_orders(1, http_status=status, placed=placed, venue="futures")
    futures = bot.futures_trading.manager
    await until(lambda: futures.counts["unknown"] >= 1, 15, "a futures order with an unknown outcome")
    await finish(run, sim)


async def test_graceful_stop_mid_run_then_restart(sim: SimHandle, run: BotRun) -> None:
    bot = await run.start()
    await trade_futures(sim, 2)
    futures = bot.futures_trading.manager
    await until(lambda: futures.in_flight > 0, 15, "a futures order in flight")
    assert await run.stop("mid-run stop") == "clean"
    await settled_equal(sim, run.cfg.database.url)
    await run.start()
    await finish(run, sim)


async def test_sigkill_at_a_random_moment_then_restart(tmp_path: Path) -> None:
    sim = await start_sim(SimExchange.for_tests(**SIM_OPTIONS))
    swinging = asyncio.get_running_loop().create_task(_swing(sim))
    cfg = carry_config(tmp_path)
    write_toml(tmp_path / "bot.toml", carry_overrides(tmp_path))
    try:
        delay = await sigkill_while_trading(tmp_path, sim.urls.admin, lambda: futures_trades(sim) >= 2,
                                            "the first bot trading futures")
        killed_at = futures_trades(sim)
        second = await restart_until(tmp_path, sim.urls.admin, lambda: futures_trades(sim) > killed_at,
                                     f"the restarted bot trading futures (kill after {delay:.2f} s)")
        code = await wait_exit(second)
        assert code == 0, second.output()[-3000:]
        await settled_equal(sim, cfg.database.url)
    finally:
        swinging.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await swinging
        await sim.server.stop()
