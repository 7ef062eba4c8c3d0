"""Wiring for trading the USD-M perpetuals next to spot (``[futures] trade = true``).

``FuturesTrading.open`` (at start, before anything trades): the futures gateway on the futures
client (sharing the spot gateway's ban gate and clock), the perpetuals' rules, and the account
set up and checked (one-way mode, margin type, leverage; refused above ``max_leverage``).
``build`` then makes the futures order manager (its own tracker; positions per ledger symbol
``UM:<SYMBOL>``), the futures risk checks and the futures gap fill, and returns the
``VenueRouter`` the strategy loop submits to. ``gap_fill`` is run at start, after every
futures user-stream (re)connect, from the periodic reconciliation and at shutdown; each one
also reads ``positionRisk`` into ``liquidation`` (the liquidation prices the risk check reads),
as does every change of the bot's perpetual position (one read at a time, repeated if the
position moved meanwhile).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from executor.config import Config, ConfigError
from executor.core.filters import SymbolRules
from executor.core.ids import ClientIdFactory
from executor.core.money import ZERO
from executor.exchange import binance_reports
from executor.exchange.futures_rest import (
    FuturesGateway,
    FuturesSetupError,
    LedgerFuturesGateway,
    ledger_symbol,
    wire_symbol,
)
from executor.exchange.rest import GatewayError
from executor.market.state import MarketState
from executor.orders.manager import OrderManager, ResolveTiming
from executor.orders.tracker import OrderTracker
from executor.orders.venues import FuturesMarketView, FuturesRiskView, VenueRouter
from executor.reconcile.futures_gapfill import FuturesGapFill, FuturesGapFillReport
from executor.risk.checks import RiskChecker
from executor.risk.futures import FuturesRiskChecker
from executor.risk.liquidation import LiquidationPrices

__all__ = ["FuturesTrading"]

log = logging.getLogger(__name__)


class FuturesTrading:
    """The futures side of one run (see the module docstring)."""

    def __init__(self, cfg: Config, symbols: list[str]) -> None:
        self.cfg = cfg
        self.symbols = list(symbols)
        self.gateway: FuturesGateway | None = None
        self.rules: dict[str, SymbolRules] = {}          # wire symbol -> rules
        self.ledger_rules: dict[str, SymbolRules] = {}   # UM:<SYMBOL> -> the same rules
        self.tracker: OrderTracker | None = None
        self.manager: OrderManager | None = None
        self.gapfill: FuturesGapFill | None = None
        self.liquidation = LiquidationPrices()
        self._liq_task: asyncio.Task[None] | None = None
        self._liq_again = False

    async def open(self, client: Any, spot_gateway: Any) -> None:
        fut = self.cfg.futures
        if fut.leverage > fut.max_leverage:
            raise ConfigError(f"futures.leverage {fut.leverage} is above futures.max_leverage "
                              f"{fut.max_leverage}")
        self.gateway = FuturesGateway(client, spot=spot_gateway)
        try:
            self.rules = await self.gateway.load_rules(self.symbols)
            await self.gateway.configure_account(self.symbols, leverage=fut.leverage,
                                                 margin_type=fut.margin_type)
        except FuturesSetupError as exc:
            # One line and exit 2, like any setting the bot cannot run with.
            raise ConfigError(f"futures.trade: {exc}") from None
        self.ledger_rules = {ledger_symbol(s): dataclasses.replace(r, symbol=ledger_symbol(s))
                             for s, r in self.rules.items()}

    def manager_views(self) -> list[Any]:
        """Our working futures orders as the strategy sees them (empty before ``build``)."""
        return [] if self.tracker is None else self.tracker.views()

    def position(self, symbol: str) -> Decimal:
        """The bot's perpetual position in ``symbol`` (net of its own futures fills)."""
        return ZERO if self.tracker is None else self.tracker.inventory(ledger_symbol(symbol))

    def build(self, *, store: Any, reconciler: Any, spot_manager: OrderManager, spot_risk: RiskChecker,
              spot_inventory: Callable[[str], Decimal], spot_rules: Mapping[str, SymbolRules],
              market: MarketState, ids: ClientIdFactory, timing: ResolveTiming | None) -> VenueRouter:
        assert self.gateway is not None
        # Inventory per ledger symbol: the perpetual's signed position. Only futures updates
        # reach this tracker; a stream fill may name the wire symbol (BTCUSDT), a REST one UM:.
        self.tracker = tracker = OrderTracker(ledger_symbol)
        perp_market = FuturesMarketView(market)
        view = FuturesRiskView(perp_market, self.ledger_rules, tracker.views, tracker.inventory,
                               spot_inventory, spot_rules, liquidation=self._liquidation_price)
        risk = FuturesRiskChecker(self.cfg.futures, spot_risk,
                                  assets=lambda s: self.rules[wire_symbol(s)].base_asset,
                                  clock=time.monotonic)
        self.manager = OrderManager(gateway=LedgerFuturesGateway(self.gateway), store=store,
                                    reconciler=reconciler, tracker=tracker, risk=risk,  # type: ignore[arg-type]
                                    view=view, rules=self.ledger_rules, ids=ids,
                                    market=perp_market,  # type: ignore[arg-type]
                                    timing=timing, resp_type="RESULT")
        self.gapfill = FuturesGapFill(store, self.gateway, reconciler, self.symbols,
                                      prefix=self.cfg.orders.client_id_prefix, translate=binance_reports.USDM)
        return VenueRouter(spot_manager, self.manager)

    def route_update(self, spot: Callable[[Any], None]) -> Callable[[Any], None]:
        """The reconciler's order-update callback: futures updates to the futures tracker."""
        def route(update: Any) -> None:
            if str(update.symbol).startswith("UM:"):
                assert self.tracker is not None
                before = self.tracker.inventory(update.symbol)
                self.tracker.apply_update(update)
                if self.tracker.inventory(update.symbol) != before:
                    self._read_liquidation_soon()
            else:
                spot(update)
        return route

    async def gap_fill(self, reason: str) -> FuturesGapFillReport | None:
        if self.gapfill is None:
            return None
        report = await self.gapfill.run(reason)
        await self._read_liquidation()
        return report

    # -- liquidation prices (see the module docstring) ------------------------------------------

    def _liquidation_price(self, symbol: str, position: Decimal) -> tuple[bool, Decimal | None]:
        """The risk check's reading; an unknown one (the position moved some way no update
        reported: a ledger reload) asks for a read at once."""
        known, price = self.liquidation.get(symbol, position)
        if not known:
            self._read_liquidation_soon()
        return known, price

    async def _read_liquidation(self) -> None:
        if self.gateway is None:
            return
        try:
            rows = await self.gateway.position_risk()
        except (GatewayError, ValueError, KeyError) as exc:   # fail closed until a read succeeds
            log.warning("positionRisk read for the liquidation prices failed: %s: %s",
                        type(exc).__name__, exc)
            return
        self.liquidation.update(rows, self.position)

    def _read_liquidation_soon(self) -> None:
        if self._liq_task is not None and not self._liq_task.done():
            self._liq_again = True
            return
        self._liq_task = asyncio.get_running_loop().create_task(self._read_liquidation_loop())

    async def _read_liquidation_loop(self) -> None:
        while True:
            self._liq_again = False
            await self._read_liquidation()
            if not self._liq_again:
                return
