"""The ledger is the bot's state: its position survives restarts and counts commissions
charged in the base asset, a sell beyond what it holds is refused, and an order whose
answer was lost and that reaches the book late is adopted, never doubled.

Every test runs the whole bot against the embedded exchange over real HTTP/WebSocket.
"""

from __future__ import annotations

import signal
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from executor.audit.query import AuditDB, Scope
from executor.audit.report import build_report
from executor.core.intents import OrderType, Place, TimeInForce
from executor.core.orders import OrderStatus, Side
from executor.core.positions import positions
from executor.persistence.db import database_path
from executor.persistence.store import Store
from executor.risk.checks import Refused
from executor.sim.accounts import DEFAULT_ID
from executor.sim.exchange import SimExchange
from tests.conftest import SimHandle, start_sim
from tests.scenarios.harness import (
    SIM_OPTIONS,
    BotRun,
    ledger_equals_exchange,
    scenario_config,
    until,
)
from tests.scenarios.procs import bot_config, restart_until, spawn_bot, wait_exit

D = Decimal
START_BTC = D(SIM_OPTIONS["balances"]["BTC"])  # type: ignore[index]


def exchange_btc(sim: SimHandle) -> Decimal:
    free, locked = sim.exchange.balances(DEFAULT_ID)["BTC"]
    return free + locked


def our_buys(sim: SimHandle, symbol: str = "BTCUSDT") -> list:
    return [o for o in sim.exchange.engine.orders[symbol] if o.account_id == DEFAULT_ID and o.side == "BUY"]


@pytest.mark.sim_options(**SIM_OPTIONS)
async def test_base_commission_keeps_tracker_exchange_and_audit_equal_and_oversells_are_refused(
        sim: SimHandle, tmp_path: Path) -> None:
    # Buy only (never an exit), so every fill is a BUY whose commission is charged in BTC.
    cfg = scenario_config(tmp_path, {"strategy": {"params": {"exit_bps": "1000"}}})
    run = BotRun(sim, cfg)
    try:
        bot = await run.start()
        await run.trade(3)
        assert bot.tracker is not None and bot.manager is not None
        trades = [t for t in sim.exchange.engine.trades["BTCUSDT"] if t.account_id == DEFAULT_ID]
        assert trades and all(t.commission_asset == "BTC" and t.commission > 0 for t in trades)

        # A sell larger than the position held is refused with a reason, and recorded.
        held = bot.tracker.inventory("BTC")
        market = bot.market.get("BTCUSDT")
        assert market is not None and market.bid is not None
        too_much = Place("BTCUSDT", Side.SELL, OrderType.LIMIT, held + D("0.001"), market.bid,
                         TimeInForce.IOC,
                         reason="more than held")
        decision = bot.manager.submit(too_much)
        assert isinstance(decision, Refused) and decision.check == "sell_position"
        assert f"exceeds the position held {held}" in decision.reason
        assert await run.stop() == "clean"

        # tracker = exchange = audit = a fresh derivation from the ledger.
        position = exchange_btc(sim) - START_BTC
        trades = [t for t in sim.exchange.engine.trades["BTCUSDT"] if t.account_id == DEFAULT_ID]
        gross = sum((t.qty for t in trades), D(0))
        assert position < gross  # the commission really was taken in BTC
        assert bot.tracker.inventory("BTC") == position
        store = await Store.open(cfg.database.url)
        try:
            rows = await store.own_fills()
        finally:
            await store.close()
        assert positions(rows, {"BTCUSDT": "BTC", "ETHUSDT": "ETH"}.get)["BTC"] == position
        with AuditDB(database_path(cfg.database.url)) as db:
            report = build_report(db, Scope(), use_checkpoint=False)
            rejected = db.conn.execute("SELECT rule, reason FROM risk_refusals WHERE rule = 'sell_position'"
                                       ).fetchall()
        (btc,) = [r for r in report.symbols if r.symbol == "BTCUSDT"]
        assert btc.own_position_qty == position
        assert rejected and "exceeds the position held" in rejected[0][1]
        await ledger_equals_exchange(sim, cfg.database.url)
    finally:
        await run.close()


@pytest.mark.sim_options(**SIM_OPTIONS)
@pytest.mark.parametrize("delay_ms", [1200, 3000])
async def test_late_order_is_adopted_and_never_doubled(sim: SimHandle, tmp_path: Path, delay_ms: int) -> None:
    """The order is accepted, the connection drops before the answer, and the exchange shows
    it only ``delay_ms`` later. The grace is the request timeout (2 s): at 1.2 s the order is
    simply found; at 3 s it is first NOT_FOUND, which still counts as working (no
    replacement), then adopted when it shows up."""
    cfg = scenario_config(tmp_path, {"strategy": {"params": {"exit_bps": "1000"}}})
    run = BotRun(sim, cfg)
    faults = sim.exchange.faults
    try:
        bot = await run.start()
        await run.trade(1)
        tracker = bot.tracker
        assert tracker is not None and bot.manager is not None
        faults.late_order(1, delay_ms)
        await until(lambda: bool(faults.late_accepted), 15, "an order accepted late")
        cid, accepted_ms = faults.late_accepted[0]
        late = tracker.get(cid)
        assert late is not None
        symbol, side = late.symbol, late.side
        seen: set[OrderStatus] = set()

        def resolved() -> bool:
            o = tracker.get(cid)
            if o is not None:
                seen.add(o.status)
            return o is not None and not o.unresolved

        await until(resolved, 20, f"{cid} resolved")
        assert faults.late_placed == 1
        if delay_ms > 2000:
            assert OrderStatus.NOT_FOUND in seen
        await run.trade(1)  # it goes on trading afterwards
        assert await run.stop() == "clean"

        on_exchange = [o for o in sim.exchange.engine.orders[symbol] if o.account_id == DEFAULT_ID]
        (placed,) = [o for o in on_exchange if o.client_order_id == cid]
        # Nothing of ours on that symbol and side was sent while the late order was in limbo.
        meanwhile = [o.client_order_id for o in on_exchange
                     if o.side == side.value and o.client_order_id != cid
                     and accepted_ms <= o.time <= placed.time]
        assert meanwhile == [], f"a second order was sent while {cid} was unresolved: {meanwhile}"
        store = await Store.open(cfg.database.url)
        try:
            rec = await store.get_order_by_client_id(cid)
        finally:
            await store.close()
        assert rec is not None and rec.resolved_from_unknown and rec.status == placed.status
        await ledger_equals_exchange(sim, cfg.database.url)
    finally:
        await run.close()


async def test_sigkill_with_a_position_open_then_restart_keeps_max_position(tmp_path: Path) -> None:
    """A buy-only bot up against ``max_position``, killed, started again: the restarted bot
    knows the position from the ledger, so the exchange never holds more than the limit
    plus one order."""
    sim = await start_sim(SimExchange.for_tests(**SIM_OPTIONS))
    limit = D("0.004")
    order_quote = D("50")  # about 0.00083 BTC an order at 60000
    extra = {"strategy": {"params": {"exit_bps": "1000", "order_quote": str(order_quote)}},
             "risk": {"max_position": {"BTC": str(limit), "ETH": "40"}}}
    bot_config(tmp_path, extra)
    cfg = scenario_config(tmp_path, extra)
    one_order = order_quote / D(50000)  # generous: the price stays well above 50000
    try:
        first = await spawn_bot(tmp_path, sim.urls.admin, "first")
        try:
            # Up against the limit: the next buy would cross it.
            await until(lambda: exchange_btc(sim) - START_BTC > limit - one_order, 60,
                        "position near the limit")
        finally:
            first.proc.send_signal(signal.SIGKILL)
            await first.proc.wait()
        killed_at = len(our_buys(sim))
        def refused() -> int:  # max_position refusals of the restarted run
            with sqlite3.connect(database_path(cfg.database.url)) as conn:
                return int(conn.execute(
                    "SELECT count(*) FROM risk_refusals WHERE rule = 'max_position' "
                    "AND run_id = (SELECT max(id) FROM runs) AND run_id > 1").fetchone()[0])

        # The restarted bot keeps trying to buy and is refused: a few refusals, then it stops.
        second = await restart_until(tmp_path, sim.urls.admin, lambda: refused() >= 3,
                                     "the restarted bot refused by max_position")
        code = await wait_exit(second)
        assert code == 0, second.output()[-3000:]
        held = exchange_btc(sim) - START_BTC
        assert held <= limit + one_order, f"holding {held} BTC with max_position {limit}"
        assert len(our_buys(sim)) - killed_at <= 1
        await ledger_equals_exchange(sim, cfg.database.url)
    finally:
        await sim.server.stop()
