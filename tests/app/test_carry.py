"""CashAndCarry through the whole bot against the embedded exchange: spot and perpetual legs,
the ledger equal to the exchange, funding booked, ``audit verify`` clean; and legging."""

from __future__ import annotations

import argparse
import asyncio
import io
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from executor.audit.carry import carry_report, render_carry
from executor.audit.query import AuditDB, Scope
from executor.audit.verify import render_verify, verify
from executor.config import Config, load_config
from executor.persistence.store import Store
from executor.run.app import Bot, BotOptions
from executor.run.shutdown import Shutdown
from executor.venue.profiles import Venue
from tests.conftest import SimHandle

SYMBOL = "BTCUSDT"
LEDGER = "UM:BTCUSDT"


def config(tmp_path: Path, extra: dict[str, Any] | None = None, **params: Any) -> Config:
    """The carry bot's config; ``params`` override the strategy's, ``extra`` adds tables."""
    strategy = {"entry_bps": "10", "exit_bps": "0", "qty": "0.004", "max_position": "0.008",
                "hedge_timeout_s": "1", "cooldown_s": "0.3", **params}
    over: dict[str, Any] = {
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"},
        "logging": {"dir": str(tmp_path / "logs")},
        "symbols": {"spot": [SYMBOL]},
        "risk": {"kill_switch_file": str(tmp_path / "KILL")},
        "futures": {"trade": True, "leverage": 3, "max_position": {"BTC": "0.02"},
                    "max_net_delta": {"BTC": "0.01"}},
        "strategy": {"path": "executor.strategy.carry:CashAndCarry", "params": strategy},
        **(extra or {}),
    }
    return load_config(local=None, overrides=over)


class Running:
    def __init__(self, bot: Bot, shutdown: Shutdown, out: io.StringIO) -> None:
        self.bot = bot
        self.shutdown = shutdown
        self.out = out

    @property
    def legs(self) -> tuple[Decimal, Decimal] | None:
        return self.bot.strategy.positions(SYMBOL)  # type: ignore[union-attr]

    def hedged_at(self, perp: str) -> bool:
        """Perpetual at ``perp`` and spot the opposite, up to dust: the spot leg is bought
        gross of the commission Binance takes in the base asset, so less than one spot step
        (0.00001) is left over either way."""
        legs = self.legs
        if legs is None:
            return False
        spot, fut = legs
        return fut == Decimal(perp) and Decimal(0) <= spot + fut < Decimal("0.00001")

    async def until(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        async def wait() -> None:
            while not predicate():
                await asyncio.sleep(0.05)
        await asyncio.wait_for(wait(), timeout)

    def settled(self) -> bool:
        working = self.bot.manager.futures.tracker.working() + self.bot.tracker.working()  # type: ignore
        return not working


async def start(sim: SimHandle, cfg: Config) -> Running:
    out = io.StringIO()
    bot = Bot(cfg, Venue("sim", sim.endpoints, sim.endpoints), sim.creds,
              BotOptions(status_out=out, status_tty=False, status_interval_s=0.2, scheduler=True))
    await asyncio.wait_for(bot.start(), 20)
    return Running(bot, Shutdown(), out)


async def stop(run: Running) -> str:
    run.shutdown.request("test over")
    return await run.bot.stop(run.shutdown, reason="test over")


async def ledger_matches_exchange(sim: SimHandle, url: str) -> Decimal:
    """Futures orders, fills and the position in the ledger equal the exchange's; returns the position."""
    orders = sim.exchange.futures.orders
    trades = {t.trade_id: t for t in orders.trades if t.account == "default"}
    store = await Store.open(url)
    try:
        fills = {f.trade_id: f for f in await store.fills(symbol=LEDGER)}
        recs = {r.client_order_id: r for r in await store.list_orders() if r.symbol == LEDGER}
    finally:
        await store.close()
    assert set(fills) == set(trades)
    for tid, f in fills.items():
        t = trades[tid]
        assert (f.price, f.qty, f.exchange_order_id, f.commission) == \
            (t.price, t.qty, t.order_id, t.commission)
    for o in orders.orders.values():
        # Every ADL order is "adl_autoclose" on Binance; the ledger names each by its order id.
        r = recs[f"adl_autoclose-{o.order_id}" if o.client_order_id == "adl_autoclose" else o.client_order_id]
        assert (r.status, r.executed_qty, r.exchange_order_id) == (o.status, o.executed, o.order_id)
    position = sum((f.qty if str(getattr(f.side, "value", f.side)) == "BUY" else -f.qty
                    for f in fills.values()), Decimal(0))
    wallet = sim.exchange.futures.wallet("default").positions.get(SYMBOL)
    assert position == (wallet.amount if wallet else Decimal(0))
    return position


def audit_clean(url: str) -> None:
    path = Path(url.split("///", 1)[1])
    with AuditDB(path) as db:
        res = verify(db, Scope())
    assert res.ok, render_verify(res)


async def test_carry_opens_and_closes_through_a_premium(sim: SimHandle, tmp_path: Path, capsys: Any) -> None:
    cfg = config(tmp_path)
    market = sim.exchange.futures.market
    market.set_basis(SYMBOL, Decimal("0.003"))                        # 30 bps premium: enter
    run = await start(sim, cfg)
    try:
        await run.until(lambda: run.hedged_at("-0.008") and run.settled())
        wallet = sim.exchange.futures.wallet("default")
        assert wallet.positions[SYMBOL].amount == Decimal("-0.008")
        # The fills follow the orders' answers on the futures user stream.
        tracker = run.bot.manager.futures.tracker                      # type: ignore[union-attr]
        await run.until(lambda: tracker.inventory(LEDGER) == Decimal("-0.008"), 5)
        sim.exchange.futures.settle_funding()                          # shorts receive at a positive rate
        market.set_basis(SYMBOL, Decimal("-0.001"))                    # premium gone: exit
        await run.until(lambda: run.hedged_at("0") and run.settled())
        assert not run.bot.strategy.flags()                            # type: ignore[union-attr]
        await run.bot.futures_trading.gap_fill("test")
    finally:
        ended = await stop(run)
    assert ended == "clean"
    assert await ledger_matches_exchange(sim, cfg.database.url) == 0
    store = await Store.open(cfg.database.url)
    try:
        income = await store.futures_income()
    finally:
        await store.close()
    kinds = {r["income_type"] for r in income}
    assert {"FUNDING_FEE", "COMMISSION"} <= kinds
    funding = sum(r["amount"] for r in income if r["income_type"] == "FUNDING_FEE")
    assert funding == sum(h["amount"] for h in sim.exchange.futures.funding_history)
    audit_clean(cfg.database.url)
    # audit carry: one closed position, both legs, funding received, basis in and out
    with AuditDB(Path(cfg.database.url.split("///", 1)[1])) as db:
        (pos,) = carry_report(db)
    # The spot leg, net of its base-asset fee, holds the perpetual's 0.008 plus dust under a step.
    assert pos.closed_ms is not None and pos.fills == 8
    assert Decimal("0.008") <= pos.max_spot < Decimal("0.00801")
    assert pos.funding == funding > 0
    perp_fees = sum(t.commission for t in sim.exchange.futures.orders.trades)
    assert pos.fees > perp_fees > 0
    assert pos.entry_basis_bps is not None and pos.entry_basis_bps > 20
    # The exit is taken once the premium is gone (basis at or under exit_bps = 0): the fills'
    # basis is at most 0, rounded to 0.1 bps (a -0.04 bps exit reads -0.0).
    assert pos.exit_basis_bps is not None and pos.exit_basis_bps <= 0
    assert pos.net == pos.spot_pnl + pos.perp_pnl + pos.funding - pos.fees
    assert "BTCUSDT" in render_carry([pos])
    from executor.audit.cli import audit_command

    capsys.readouterr()
    assert audit_command(cfg, argparse.Namespace(audit_command="carry", db=cfg.database.url)) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("symbol")


async def _spot_leg_then(sim: SimHandle, tmp_path: Path, arrange: Callable[[], None],
                         **params: Any) -> tuple[Running, Config]:
    cfg = config(tmp_path, **{"max_position": "0.004", **params})
    arrange()
    sim.exchange.futures.market.set_basis(SYMBOL, Decimal("0.003"))
    run = await start(sim, cfg)
    return run, cfg


async def test_perp_leg_rejected_ends_flat(sim: SimHandle, tmp_path: Path) -> None:
    # 5 USDT left in the futures wallet: every perpetual sell is -2019 (margin is insufficient).
    def arrange() -> None:
        sim.exchange.futures.transfer("default", "USDT", Decimal("-9995"))

    run, cfg = await _spot_leg_then(sim, tmp_path, arrange)
    try:
        await run.until(lambda: bool(run.bot.strategy.flags()))       # type: ignore[union-attr]
        await run.until(lambda: "!! BTCUSDT UNHEDGED" in run.out.getvalue(), 5)   # on the status
        sim.exchange.futures.market.set_basis(SYMBOL, Decimal(0))     # no new entries after the unwind
        await run.until(lambda: run.hedged_at("0") and run.settled()
                        and not run.bot.strategy.flags())              # type: ignore[union-attr]
    finally:
        await stop(run)
    store = await Store.open(cfg.database.url)
    try:
        recs = await store.list_orders()
    finally:
        await store.close()
    assert any(r.symbol == LEDGER and r.status == "REJECTED" and "-2019" in (r.reject_reason or "")
               for r in recs)
    assert any(r.symbol == SYMBOL and r.side == "SELL" and r.executed_qty > 0 for r in recs)   # unwound
    assert await ledger_matches_exchange(sim, cfg.database.url) == 0
    audit_clean(cfg.database.url)


async def test_perp_leg_partly_filled_is_hedged(sim: SimHandle, tmp_path: Path) -> None:
    def arrange() -> None:
        # The touch shows 0.003 a second: the 0.004 sell fills 0.003; the rest is sent again.
        sim.exchange.futures.orders.liquidity_cap[SYMBOL] = Decimal("0.003")

    run, cfg = await _spot_leg_then(sim, tmp_path, arrange, qty="0.006", max_position="0.006")
    try:
        await run.until(lambda: bool(run.bot.strategy.flags()))       # type: ignore[union-attr]
        await run.until(lambda: run.hedged_at("-0.006") and run.settled())
        assert not run.bot.strategy.flags()                            # type: ignore[union-attr]
    finally:
        await stop(run)
    assert await ledger_matches_exchange(sim, cfg.database.url) == Decimal("-0.006")
    audit_clean(cfg.database.url)


async def test_perp_leg_unknown_is_resolved_never_resent(sim: SimHandle, tmp_path: Path) -> None:
    def arrange() -> None:
        sim.exchange.faults.fail_orders(1, http_status=503, placed=True, venue="futures")

    run, cfg = await _spot_leg_then(sim, tmp_path, arrange)
    try:
        await run.until(lambda: run.hedged_at("-0.004") and run.settled())
        assert not run.bot.strategy.flags()                            # type: ignore[union-attr]
        assert run.bot.manager.futures.counts["unknown"] == 1
    finally:
        await stop(run)
    placed = [o for o in sim.exchange.futures.orders.orders.values()]
    assert len(placed) == 1 and placed[0].status == "FILLED"           # resolved by query, not re-sent
    assert await ledger_matches_exchange(sim, cfg.database.url) == Decimal("-0.004")
    audit_clean(cfg.database.url)


async def test_spot_leg_rejected_is_hedged_by_sending_it_again(sim: SimHandle, tmp_path: Path) -> None:
    def arrange() -> None:
        sim.exchange.faults.fail_orders(1, http_status=400, code=-2010, placed=False, venue="spot")

    run, cfg = await _spot_leg_then(sim, tmp_path, arrange)
    try:
        await run.until(lambda: run.hedged_at("-0.004") and run.settled()
                        and not run.bot.strategy.flags())              # type: ignore[union-attr]
    finally:
        await stop(run)
    store = await Store.open(cfg.database.url)
    try:
        spot = [r for r in await store.list_orders() if r.symbol == SYMBOL]
    finally:
        await store.close()
    assert [r.status for r in spot] == ["REJECTED", "FILLED"]           # the spot leg, sent again
    assert await ledger_matches_exchange(sim, cfg.database.url) == Decimal("-0.004")
    audit_clean(cfg.database.url)


async def test_futures_filters_and_risk_refuse_before_sending(sim: SimHandle, tmp_path: Path) -> None:
    from executor.core.intents import OrderType, Place
    from executor.core.orders import Side
    from executor.risk.checks import Refused

    # No carry entries: a zero basis alone no longer ensures that, since the sim's spot mid
    # strays from the index (its OU dislocation, ~20 bps) and reads as a premium above 10 bps.
    cfg = config(tmp_path, entry_bps="1000")
    sim.exchange.futures.market.set_basis(SYMBOL, Decimal(0))
    run = await start(sim, cfg)
    try:
        await run.until(lambda: run.bot.market.get(SYMBOL) is not None
                        and run.bot.market.get(SYMBOL).mark is not None)  # type: ignore[union-attr]
        router = run.bot.manager
        small = router.submit(Place(SYMBOL, Side.SELL, OrderType.MARKET, Decimal("0.001"), venue="futures"))
        assert isinstance(small, Refused) and small.check == "filters:MIN_NOTIONAL"
        naked = router.submit(Place(SYMBOL, Side.SELL, OrderType.MARKET, Decimal("0.012"), venue="futures"))
        assert isinstance(naked, Refused) and naked.check == "net_delta"     # no spot leg to hedge
    finally:
        await stop(run)
    assert sim.exchange.futures.orders.orders == {}                      # nothing reached the exchange
