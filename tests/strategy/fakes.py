"""Hand-built market states, orders and contexts for strategy and risk tests."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import Decimal

from executor.core.filters import LotSize, NotionalRule, PriceFilter, SymbolRules
from executor.core.orders import OrderStatus, Side
from executor.market.state import MarketState
from executor.strategy.base import OrderView, StrategyContext

D = Decimal


def make_rules(symbol: str = "BTCUSDT", base: str = "BTC", tick: str = "0.01", step: str = "0.00001",
               min_notional: str = "5") -> SymbolRules:
    return SymbolRules(
        symbol=symbol, status="TRADING", base_asset=base, quote_asset="USDT",
        price_filter=PriceFilter(D(tick), D("1000000"), D(tick)),
        lot_size=LotSize(D(step), D("9000"), D(step)),
        notional=NotionalRule(D(min_notional), D("9000000"), True, False, 5),
        order_types=frozenset({"LIMIT", "LIMIT_MAKER", "MARKET"}),
    )


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


_ids = itertools.count(1)


@dataclass
class World:
    """A market, our orders and inventory, on a fake clock; ``ctx`` reads them live."""

    clock: FakeClock = field(default_factory=FakeClock)
    rules: dict[str, SymbolRules] = field(default_factory=lambda: {
        "BTCUSDT": make_rules(), "ETHUSDT": make_rules("ETHUSDT", "ETH")})
    orders: list[OrderView] = field(default_factory=list)
    held: dict[str, Decimal] = field(default_factory=dict)
    free: dict[str, Decimal] = field(default_factory=dict)  # free balances the exchange reported
    stale_after_s: float = 5.0

    def __post_init__(self) -> None:
        self.market = MarketState(self.rules)
        self._u = itertools.count(1)
        self._e = itertools.count(1)
        self.ctx = StrategyContext(self.market, self.rules, lambda: list(self.orders), self.held,
                                   stale_after_s=self.stale_after_s, clock=self.clock,
                                   free_balance=self.free.get)

    def book(self, symbol: str, bid: str, ask: str, age: float = 0.0, bid_qty: str = "2",
             ask_qty: str = "2") -> None:
        t = self.clock() - age
        self.market.apply_book(symbol, next(self._u), D(bid), D(bid_qty), D(ask), D(ask_qty), t, t)

    def mark(self, symbol: str, mark: str, age: float = 0.0) -> None:
        t = self.clock() - age
        self.market.apply_mark(symbol, next(self._e), D(mark), D(mark), None, D("0.0001"), None, t, t)

    def order(self, symbol: str = "BTCUSDT", side: Side = Side.BUY, price: str = "60000", qty: str = "0.001",
              filled: str = "0", age: float = 0.0, status: OrderStatus = OrderStatus.NEW,
              cancel_requested: bool = False) -> OrderView:
        o = OrderView(client_id=f"bx-t-{next(_ids)}", symbol=symbol, side=side, price=D(price), qty=D(qty),
                      filled=D(filled), status=status, placed_at=self.clock() - age,
                      cancel_requested=cancel_requested)
        self.orders.append(o)
        return o
