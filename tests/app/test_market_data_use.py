"""The bot uses the exchange's market data and fee endpoints: its fee model comes from the
account's commission rates read at start (GET /api/v3/account/commission), and a strategy
that asks ``view.candles`` gets the exchange's candles from the kline stream."""

from __future__ import annotations

import asyncio
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

from executor.config import Config, load_config
from executor.core.intents import Intent, OrderType, Place, TimeInForce
from executor.core.orders import Side
from executor.run.app import Bot, BotOptions
from executor.run.shutdown import Shutdown
from executor.strategy.base import Params, Strategy
from executor.venue.profiles import Venue
from tests.conftest import SimHandle


class CandleBreakout(Strategy):
    """Test strategy: once two 1s candles have closed, buy a little at the ask when the last
    close is above the one before (an IOC limit), at most ``max_orders`` times."""

    candle_intervals = ("1s",)

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        p = Params(params)
        self.max_orders = int(p.decimal("max_orders", "1", positive=True))
        p.finish()
        self.placed = 0
        self.seen: list[tuple[str, int, Decimal, int]] = []   # (symbol, open time, close, trades), closed

    def on_timer(self, now: float) -> list[Intent]:
        out: list[Intent] = []
        for symbol in self.ctx.symbols:
            closed = [c for c in self.ctx.candles(symbol, "1s", 10) if c.closed]
            for c in closed:
                row = (symbol, c.open_time, c.close, c.trades)
                if row not in self.seen:
                    self.seen.append(row)
            book = self.ctx.market(symbol)
            if len(closed) < 2 or book is None or book.ask is None or self.placed >= self.max_orders:
                continue
            prev, last = closed[-2], closed[-1]
            rules = self.ctx.rules(symbol)
            qty = rules.round_qty(Decimal(20) / book.ask)
            self.placed += 1
            out.append(Place(symbol, Side.BUY, OrderType.LIMIT, qty, book.ask, tif=TimeInForce.IOC,
                             reason=f"1s close {last.close} vs {prev.close}"))
        return out


def config(tmp_path: Path, strategy: dict[str, Any] | None = None) -> Config:
    over: dict[str, Any] = {
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"},
        "logging": {"dir": str(tmp_path / "logs")},
        "risk": {"kill_switch_file": str(tmp_path / "KILL")},
    }
    if strategy:
        over["strategy"] = strategy
    return load_config(local=None, overrides=over)


async def run_until(sim: SimHandle, cfg: Config, until: Any, timeout: float = 20.0) -> Bot:
    bot = Bot(cfg, Venue("sim", sim.endpoints, sim.endpoints), sim.creds,
              BotOptions(status_out=io.StringIO(), status_tty=False, scheduler=False))
    shutdown = Shutdown()
    await asyncio.wait_for(bot.start(), 20)
    try:
        async def wait() -> None:
            while not until(bot):
                await asyncio.sleep(0.05)
        await asyncio.wait_for(wait(), timeout)
    finally:
        shutdown.request("test over")
        await bot.stop(shutdown, reason="test over")
    return bot


async def test_fee_model_is_the_accounts_commission_read_at_start(sim: SimHandle, tmp_path: Path) -> None:
    acct = sim.exchange.default_account
    acct.maker_rate, acct.taker_rate = Decimal("0.00025"), Decimal("0.00075")
    cfg = config(tmp_path)
    bot = await run_until(sim, cfg, lambda b: b.tracker.stats.fills >= 1)
    assert bot.ctx is not None
    rates = bot.ctx.fees("BTCUSDT")
    assert rates is not None and (rates.maker, rates.taker) == (Decimal("0.00025"), Decimal("0.00075"))
    assert rates.round_trip_bps(maker=False) == Decimal("15")
    from executor.persistence.store import Store

    store = await Store.open(cfg.database.url)
    try:
        reasons = [r.reason for r in await store.list_orders()]
    finally:
        await store.close()
    # The reference strategy trades IOC (taker) by default: its reasons carry the taker rate.
    assert reasons and all("taker fee 7.5 bps" in r for r in reasons)


async def test_a_strategy_using_view_candles_runs_on_the_kline_stream(sim: SimHandle, tmp_path: Path) -> None:
    # An IOC at the ask the bot last saw can miss when the book moved meanwhile (a busy
    # machine): a few tries, until one fills.
    cfg = config(tmp_path, {"path": "tests.app.test_market_data_use:CandleBreakout",
                            "params": {"max_orders": "20"}})
    bot = await run_until(sim, cfg, lambda b: b.strategy.placed >= 1 and b.tracker.stats.fills >= 1)
    assert bot.market.candle_intervals == {"1s"} and isinstance(bot.strategy, CandleBreakout)
    # Every closed candle the strategy saw is the exchange's own candle of its trade tape.
    tape = sim.exchange.tape
    assert len(bot.strategy.seen) >= 2
    for symbol, open_time, close, trades in bot.strategy.seen:
        want = tape.candles(symbol, "1s", start=open_time, end=open_time, limit=1)
        assert want and want[0].open_time == open_time
        assert (want[0].close, want[0].count) == (close, trades)
