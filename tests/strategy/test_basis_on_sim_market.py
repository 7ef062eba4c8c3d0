"""The default basis parameters trade on the embedded exchange's synthetic market.

Drives the sim's own price models (``Market`` random walk and ``FuturesMarket`` OU basis)
on a simulated clock, without sockets: each book update and each 1 s mark goes through
``MarketState`` into the strategy, every intent through the default risk checks, and an
IOC limit at the touch is filled at once (the sim's top of book is deep enough for 50 USDT).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from executor.config import load_config
from executor.core.filters import LotSize, NotionalRule, PriceFilter, SymbolRules
from executor.core.intents import Intent, Place
from executor.core.orders import OrderStatus, Side
from executor.market.state import MarketState
from executor.risk import RiskChecker
from executor.sim.clock import SimClock
from executor.sim.futures_market import FuturesMarket
from executor.sim.market import Market, SymbolSpec
from executor.strategy.base import OrderView, StrategyContext
from executor.strategy.loader import load_strategy

D = Decimal


def run(seed: int, seconds: int, tmp_path: Path) -> tuple[list[Place], int]:
    cfg = load_config(local=None)
    prices = {s: cfg.sim.start_prices[s] for s in cfg.symbols.spot}
    clock = SimClock(1.0, start_ms=1_785_571_200_000)
    specs = {s: SymbolSpec.for_symbol(s, p) for s, p in prices.items()}
    market = Market(clock, specs, prices, seed=seed)

    ticks = {s: sp.tick for s, sp in specs.items()}
    futures = FuturesMarket(clock.now_ms, market.index, list(specs), seed, tick=ticks)
    rules = {s: SymbolRules(s, "TRADING", sp.base, sp.quote, PriceFilter(sp.min_price, sp.max_price, sp.tick),
                            LotSize(sp.min_qty, sp.max_qty, sp.step),
                            notional=NotionalRule(sp.min_notional, D(0), True, False, 5))
             for s, sp in specs.items()}
    state = MarketState(specs)
    held: dict[str, Decimal] = {}
    now = [0.0]
    ctx = StrategyContext(state, rules, list, held, stale_after_s=float(cfg.risk.stale_after_s),
                          clock=lambda: now[0])
    risk_cfg = replace(cfg.risk, kill_switch_file=str(tmp_path / "KILL"))
    risk = RiskChecker(risk_cfg, clock=lambda: now[0])
    strategy = load_strategy(cfg.strategy)
    strategy.bind(ctx)
    filled: list[Place] = []
    refused = 0
    u = 0
    for step in range(seconds * 20):
        clock.advance(50)
        now[0] += 0.05
        market.tick()
        queue: list[Intent] = []
        for symbol, book in market.books.items():
            u += 1
            state.apply_book(symbol, u, book.bid, book.bid_qty, book.ask, book.ask_qty, now[0], now[0])
            queue += strategy.on_book_ticker(symbol, ctx)
        if step % 20 == 0:
            for symbol in specs:
                m = futures.state(symbol)
                assert m is not None
                state.apply_mark(symbol, m.time_ms, m.mark, m.index, None, m.funding_rate, None,
                                 now[0], now[0])
                queue += strategy.on_mark_price(symbol, ctx)
        while queue:
            intent = queue.pop(0)
            assert isinstance(intent, Place), intent  # IOC orders never rest, so nothing to cancel
            if not risk.check(intent, ctx):
                refused += 1
                continue
            base = rules[intent.symbol].base_asset
            held[base] = held.get(base, D(0)) + (intent.qty if intent.side is Side.BUY else -intent.qty)
            assert held[base] >= 0
            filled.append(intent)
            queue += strategy.on_order_update(OrderView(
                f"c{len(filled)}", intent.symbol, intent.side, intent.price or D(0), intent.qty, intent.qty,
                OrderStatus.FILLED, placed_at=now[0]))
    return filled, refused


@pytest.mark.parametrize("seed", [7, 1, 4])
def test_default_parameters_trade_within_a_minute(seed: int, tmp_path: Path) -> None:
    filled, refused = run(seed, 60, tmp_path)
    assert filled, f"seed {seed}: no order in 60 s of synthetic market"
    assert refused == 0
    for p in filled:
        assert p.reason and "mark" in p.reason


def test_default_parameters_round_trip_on_the_default_seed(tmp_path: Path) -> None:
    filled, refused = run(7, 300, tmp_path)
    sides = {p.side for p in filled}
    assert sides == {Side.BUY, Side.SELL}
    assert refused == 0
