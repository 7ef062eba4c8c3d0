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
from executor.risk.checks import RiskChecker
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


def round_trips(filled: list[Place]) -> dict[str, tuple[int, Decimal]]:
    """Per symbol: sells that closed inventory (round trips) and the FIFO gross edge in bps of
    the closed cost, from the fills (at the orders' limit prices, as the harness fills them)."""
    lots: dict[str, list[list[Decimal]]] = {}
    out: dict[str, tuple[int, Decimal]] = {}
    gross: dict[str, Decimal] = {}
    cost: dict[str, Decimal] = {}
    for p in filled:
        assert p.price is not None
        if p.side is Side.BUY:
            lots.setdefault(p.symbol, []).append([p.qty, p.price])
            continue
        qty = p.qty
        n, _ = out.get(p.symbol, (0, D(0)))
        while qty > 0:
            lot = lots[p.symbol][0]
            take = min(qty, lot[0])
            gross[p.symbol] = gross.get(p.symbol, D(0)) + take * (p.price - lot[1])
            cost[p.symbol] = cost.get(p.symbol, D(0)) + take * lot[1]
            lot[0] -= take
            qty -= take
            if lot[0] == 0:
                lots[p.symbol].pop(0)
        out[p.symbol] = (n + 1, gross[p.symbol] / cost[p.symbol] * 10000)
    return out


def test_default_target_edge_exceeds_the_embedded_exchanges_round_trip_fees() -> None:
    from executor.sim.accounts import Account

    params = load_config(local=None).strategy.params
    fees_bps = (Account.taker_rate + Account.taker_rate) * 10000  # IOC takes on both legs
    assert D(params["entry_bps"]) + D(params["exit_bps"]) > fees_bps


@pytest.mark.parametrize("seed", [7, 1, 4])
def test_defaults_trade_both_symbols_and_earn_more_than_the_fees(seed: int, tmp_path: Path) -> None:
    """Five simulated minutes: both symbols close round trips, each symbol's mean gross edge
    per round trip above the 20 bps a round trip pays the embedded exchange."""
    filled, refused = run(seed, 300, tmp_path)
    assert refused == 0
    trips = round_trips(filled)
    assert set(trips) == {"BTCUSDT", "ETHUSDT"}, trips
    for symbol, (n, edge_bps) in trips.items():
        assert n >= 2 and edge_bps > 20, (seed, symbol, n, edge_bps)
