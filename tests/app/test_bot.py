"""The whole bot against the embedded exchange: trading, shutdown, and ledger == ground truth."""

from __future__ import annotations

import asyncio
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from executor.config import Config, load_config
from executor.run.app import Bot, BotOptions, fetch_sim_venue
from executor.run.shutdown import Shutdown, StepSkipped
from executor.venue.profiles import Venue
from tests.conftest import SimHandle

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def config(tmp_path: Path, **params: Any) -> Config:
    over: dict[str, Any] = {
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"},
        "logging": {"dir": str(tmp_path / "logs")},
        "risk": {"kill_switch_file": str(tmp_path / "KILL")},
    }
    if params:
        over["strategy"] = {"params": params}
    return load_config(local=None, overrides=over)


async def run_bot_until(sim: SimHandle, cfg: Config, until: Any, timeout: float = 20.0) -> tuple[Bot, str]:
    out = io.StringIO()
    bot = Bot(cfg, Venue("sim", sim.endpoints, sim.endpoints), sim.creds,
              BotOptions(status_out=out, status_tty=False, status_interval_s=0.5, scheduler=True))
    shutdown = Shutdown()
    await asyncio.wait_for(bot.start(), 20)
    try:
        async def wait() -> None:
            while not until(bot):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(wait(), timeout)
    finally:
        shutdown.request("test over")
        ended = await bot.stop(shutdown, reason="test over")
    assert "status bx run" in out.getvalue()
    return bot, ended


async def ground_truth_matches_ledger(sim: SimHandle, ledger_url: str) -> tuple[int, int]:
    from executor.persistence.store import Store

    engine = sim.exchange.engine
    sim_orders = {o.client_order_id: o for s in SYMBOLS for o in engine.orders[s]
                  if o.account_id == "default"}
    sim_trades = {(t.symbol, t.id): t for s in SYMBOLS for t in engine.trades[s]
                  if t.account_id == "default"}
    store = await Store.open(ledger_url)
    try:
        rows = {r.client_order_id: r for r in await store.list_orders()}
        fills = {(f.symbol, f.trade_id): f for f in await store.fills()}
    finally:
        await store.close()
    for cid, o in sim_orders.items():
        r = rows.get(cid)
        assert r is not None, f"exchange order {cid} missing from the ledger"
        assert (r.status, r.executed_qty, r.cum_quote_qty, r.exchange_order_id) == \
            (o.status, o.executed_qty, o.cum_quote, o.order_id), cid
    for cid, r in rows.items():
        if cid not in sim_orders:
            assert r.status in ("NOT_PLACED", "REJECTED"), f"ledger order {cid} ({r.status}) not on exchange"
    assert set(fills) == set(sim_trades)
    for key, f in fills.items():
        t = sim_trades[key]
        assert (f.price, f.qty, f.exchange_order_id) == (t.price, t.qty, t.order_id), key
    return len(sim_orders), len(sim_trades)


async def test_bot_trades_and_ledger_equals_the_exchange_after_shutdown(sim: SimHandle,
                                                                        tmp_path: Path) -> None:
    cfg = config(tmp_path)
    bot, ended = await run_bot_until(sim, cfg, lambda b: b.tracker.stats.fills >= 3)
    assert ended == "clean"
    orders, trades = await ground_truth_matches_ledger(sim, cfg.database.url)
    assert orders >= 3 and trades >= 3
    from executor.persistence.store import Store

    store = await Store.open(cfg.database.url)
    try:
        run = await store.get_run(bot.run_id)  # type: ignore[arg-type]
        recs = await store.list_orders()
    finally:
        await store.close()
    assert run is not None and run["ended"] == "clean" and run["stopped_ms"] is not None
    # Every order explains itself: decision context and the strategy's reason.
    assert all(r.reason and r.decision_mark is not None and r.decision_ask is not None for r in recs)


async def test_shutdown_cancels_our_resting_orders(sim: SimHandle, tmp_path: Path) -> None:
    # Post-only quotes rest on the book; a long TTL keeps them there until shutdown.
    cfg = config(tmp_path, entry_bps="-3", exit_bps="5", order_quote="50", max_inventory_quote="400",
                 post_only=True, quote_ttl_s="600")
    market = sim.exchange.market
    resting: list[str] = []

    def quoting(b: Bot) -> bool:
        for symbol in SYMBOLS:
            if symbol not in market.frozen_symbols:
                market.set_book(symbol)  # the books stop moving: nothing can fill our quotes
        # Resting on the exchange once the books are frozen (the bot may not know yet of a
        # quote that the last move before the freeze filled): these can no longer fill.
        ours = {o.client_id for o in b.tracker.working() if o.status.value == "NEW"}
        resting[:] = [o.client_order_id for s in SYMBOLS for o in sim.exchange.engine.orders[s]
                      if o.client_order_id in ours and o.status == "NEW"]
        return bool(resting)

    bot, ended = await run_bot_until(sim, cfg, quoting)
    assert ended == "clean"
    engine = sim.exchange.engine
    mine = {o.client_order_id: o.status for s in SYMBOLS for o in engine.orders[s]
            if o.account_id == "default"}
    assert not [c for c, st in mine.items() if st in ("NEW", "PARTIALLY_FILLED")]
    assert resting and all(mine[c] == "CANCELED" for c in resting), (resting, mine, bot.manager.counts)
    await ground_truth_matches_ledger(sim, cfg.database.url)


async def test_fetch_sim_venue_reads_the_running_exchange(sim: SimHandle) -> None:
    endpoints, creds = await fetch_sim_venue(sim.urls.admin + "/state")
    assert endpoints == sim.endpoints
    assert creds.api_key == sim.creds.api_key and creds.api_secret == sim.creds.api_secret


async def test_second_signal_abandons_a_stuck_step() -> None:
    shutdown = Shutdown()
    stuck = asyncio.Event()

    async def never() -> None:
        await stuck.wait()

    async def force_soon() -> None:
        await asyncio.sleep(0.05)
        shutdown.forced.set()

    forcer = asyncio.create_task(force_soon())
    with pytest.raises(StepSkipped):
        await asyncio.wait_for(shutdown.step("stuck", never(), timeout=30), 2)
    await forcer
    assert not await shutdown.try_step("after", asyncio.sleep(0), timeout=1)  # forced: skipped at once
    assert await Shutdown().try_step("normal", asyncio.sleep(0, Decimal(1)), timeout=1)
