"""Two order managers, one strategy: intents routed to spot or to the USD-M perpetuals.

``VenueRouter`` stands where the strategy loop expects one order manager. A ``Place`` with
``venue="futures"`` (and a ``Replace`` whose new order is one) goes to the futures manager,
under the ledger symbol ``UM:<SYMBOL>``; everything else goes to spot. A ``Cancel`` goes to
the manager whose tracker holds that client id. Both managers draw client ids from one
``ClientIdFactory`` (the ledger's namespace), so an id is never reused across venues.

``FuturesMarketView`` is the futures manager's market: the perpetual of ``UM:X`` priced by its
mark (``mid`` = mark, for notional and price-band checks), with the spot book's bid/ask as the
decision context. ``FuturesRiskView`` is what the futures risk checks read: the futures
positions (the futures tracker's inventory per ledger symbol), the spot inventory, our working
futures orders, the gross notional of both venues at the mark and the liquidation prices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from executor.core.filters import SymbolRules
from executor.core.intents import Cancel, Intent, Place, Replace
from executor.core.money import ZERO
from executor.core.orders import Side
from executor.core.reports import ledger_symbol, wire_symbol
from executor.market.state import MarketState
from executor.risk.checks import Decision, Refused

__all__ = ["FuturesMarketView", "FuturesRiskView", "PerpState", "VenueRouter"]

BOTH = ("accepting", "paused", "wait_for_ids")  # set on the router: both managers alike


@dataclass(frozen=True)
class PerpState:
    """A perpetual's prices as the futures order manager and risk checks read them."""

    symbol: str
    mark: Decimal | None
    bid: Decimal | None
    ask: Decimal | None
    recv_mono: float | None
    book_recv_mono: float | None

    @property
    def mid(self) -> Decimal | None:
        return self.mark


class FuturesMarketView:
    """``get("UM:BTCUSDT")``: the perpetual's mark with the spot book (or None)."""

    def __init__(self, market: MarketState) -> None:
        self._market = market

    def get(self, symbol: str) -> PerpState | None:
        st = self._market.get(wire_symbol(symbol))
        if st is None:
            return None
        # Read several times per futures decision (market, risk, record): no temporaries.
        mark_at, book_at = st.mark_recv_mono, st.book_recv_mono
        recv = None if mark_at is None or book_at is None else min(mark_at, book_at)
        return PerpState(symbol, st.mark, st.bid, st.ask, recv, book_at)


class FuturesRiskView:
    """The futures risk checks' view (see the module docstring)."""

    def __init__(self, market: FuturesMarketView, rules: Mapping[str, SymbolRules],
                 orders: Callable[[], list[Any]], positions: Callable[[str], Decimal],
                 spot_inventory: Callable[[str], Decimal], spot_rules: Mapping[str, SymbolRules],
                 liquidation: Callable[[str, Decimal], tuple[bool, Decimal | None]] | None = None) -> None:
        self._market = market
        self._liquidation = liquidation   # (wire symbol, our position) -> (known, price)
        self._rules = rules
        self._orders = orders
        self._positions = positions
        self._spot_inventory = spot_inventory
        self._spot_rules = spot_rules

    def market(self, symbol: str) -> PerpState | None:
        return self._market.get(symbol)

    def rules(self, symbol: str) -> SymbolRules:
        return self._rules[symbol]

    def open_orders(self, symbol: str | None = None, side: Side | None = None) -> list[Any]:
        return [o for o in self._orders() if o.working and symbol in (None, o.symbol)
                and side in (None, o.side)]

    def inventory(self, asset: str) -> Decimal:
        return self._spot_inventory(asset)

    def position(self, symbol: str) -> Decimal:
        return self._positions(ledger_symbol(symbol))

    def liquidation(self, symbol: str) -> tuple[bool, Decimal | None]:
        """(known, liquidation price) of ``symbol``'s position (None: none reachable)."""
        if self._liquidation is None:
            return (True, None)
        return self._liquidation(wire_symbol(symbol), self.position(symbol))

    def gross_notional(self) -> Decimal:
        total = ZERO
        for symbol, rules in self._spot_rules.items():
            st = self._market.get(ledger_symbol(symbol))
            if st is None or st.mark is None:
                continue
            total += (abs(self._spot_inventory(rules.base_asset)) + abs(self.position(symbol))) * st.mark
        return total


class VenueRouter:
    """Where the strategy loop submits intents when futures are traded (see module docstring)."""

    def __init__(self, spot: Any, futures: Any) -> None:
        self.spot = spot
        self.futures = futures

    def __getattr__(self, name: str) -> Any:   # counts, hooks, ... are the spot manager's
        return getattr(self.spot, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("spot", "futures"):
            object.__setattr__(self, name, value)
        elif name in BOTH:
            setattr(self.spot, name, value)
            setattr(self.futures, name, value)
        else:
            # The stream-stall hooks (on_sending, on_no_effect) watch the spot user stream.
            setattr(self.spot, name, value)

    def _to_futures(self, place: Place) -> Place:
        return dataclasses.replace(place, symbol=ledger_symbol(place.symbol))

    def submit(self, intent: Intent) -> Decision:
        if isinstance(intent, Place) and intent.venue == "futures":
            return self.futures.submit(self._to_futures(intent))
        if isinstance(intent, Replace) and intent.place.venue == "futures":
            return self.futures.submit(dataclasses.replace(intent, place=self._to_futures(intent.place)))
        if isinstance(intent, Cancel) and intent.client_order_id in self.futures.tracker:
            return self.futures.submit(intent)
        if isinstance(intent, Replace) and intent.client_order_id in self.futures.tracker:
            return Refused("a spot order cannot replace a futures order", "order_sanity")
        return self.spot.submit(intent)

    async def cancel_all_ours(self, reason: str, *, include_exchange: bool = True) -> int:
        n = await self.spot.cancel_all_ours(reason, include_exchange=include_exchange)
        return n + await self.futures.cancel_all_ours(reason, include_exchange=include_exchange)

    async def drain(self, timeout: float | None = None) -> bool:
        done = await self.spot.drain(timeout)
        return await self.futures.drain(timeout) and done

    async def stop(self, timeout: float = 10.0) -> bool:
        done = await self.spot.stop(timeout)
        return await self.futures.stop(timeout) and done

    @property
    def in_flight(self) -> int:
        return int(self.spot.in_flight) + int(self.futures.in_flight)
