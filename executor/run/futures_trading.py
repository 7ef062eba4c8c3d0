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

**The position is the exchange's.** In one-way mode an account has one position per perpetual,
so the exchange's own closing orders (liquidation, ADL: external orders in the ledger, never
ours to cancel or adopt) move the bot's position as well. After every futures gap fill, and
after an ``ACCOUNT_UPDATE`` whose position differs from the bot's (``note_account``: the
ledger is drained and read again every moment; still different at the second read, a gap
fill fetches the trades, at most one such gap fill per ``GAP_FILL_EVERY_S``, the ledger read on
until it is allowed), the futures tracker is reloaded from the ledger under the reconciler's apply lock
with those closes' fills (``binance_reports.EXCHANGE_CLOSE_PREFIXES``). Each close found is an
``ExchangeClose`` in ``exchange_closes`` (what the strategy reads through its context) and
goes to ``on_exchange_close`` (the app: a WARNING and an alert).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from executor.config import Config, ConfigError
from executor.core.filters import SymbolRules
from executor.core.ids import ClientIdFactory
from executor.core.money import ZERO
from executor.core.positions import ExchangeClose
from executor.core.reports import AccountReport
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
KEEP_CLOSES = 1000            # exchange closes remembered for the strategy (the newest)
CONFIRM_S = 0.5               # an account update's position that still differs after a
                              # reload is read again this much later before a gap fill
GAP_FILL_EVERY_S = 30.0       # at most one such gap fill this often (someone else trading)


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
        self.store: Any = None
        self.reconciler: Any = None
        self.closes: deque[ExchangeClose] = deque(maxlen=KEEP_CLOSES)
        self.on_exchange_close: Callable[[ExchangeClose], None] | None = None
        self._reported: dict[str, Decimal] = {}   # ledger symbol -> position the exchange reported
        self._sync_task: asyncio.Task[None] | None = None
        self._sync_again = False
        self._last_sync_gap_fill = -1e18

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
        """The bot's perpetual position in ``symbol``: its own futures fills and the
        exchange's closes of it (see the module docstring)."""
        return ZERO if self.tracker is None else self.tracker.inventory(ledger_symbol(symbol))

    def exchange_closes(self, symbol: str) -> list[ExchangeClose]:
        """The exchange's closes of ``symbol``'s position found during this run, oldest first."""
        sym = ledger_symbol(symbol)
        return [c for c in self.closes if c.symbol == sym]

    def build(self, *, store: Any, reconciler: Any, spot_manager: OrderManager, spot_risk: RiskChecker,
              spot_inventory: Callable[[str], Decimal], spot_rules: Mapping[str, SymbolRules],
              market: MarketState, ids: ClientIdFactory, timing: ResolveTiming | None) -> VenueRouter:
        assert self.gateway is not None
        # Inventory per ledger symbol: the perpetual's signed position. Only futures updates
        # reach this tracker; a stream fill may name the wire symbol (BTCUSDT), a REST one UM:.
        self.tracker = tracker = OrderTracker(ledger_symbol)
        self.store, self.reconciler = store, reconciler
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
        if self.tracker is not None and not self.tracker.positions_loaded:
            # First the position the ledger holds from before this start: whatever this gap
            # fill then stores (fills made while the bot was down) is news, and a liquidation
            # or ADL among them is reported like one seen live, not folded silently into the
            # starting position.
            await self.reload("start")
        report = await self.gapfill.run(reason)
        await self.reload(reason)
        await self._read_liquidation()
        return report

    # -- the position from the ledger, the exchange's closes included ---------------------------

    async def reload(self, why: str) -> list[ExchangeClose]:
        """The futures tracker's position from the ledger (see the module docstring); returns
        the exchange's closes it found."""
        if self.tracker is None or self.reconciler is None:
            return []
        tracker = self.tracker

        async def load() -> list[Any]:
            return await tracker.load(self.store, symbol_prefix="UM:",
                                      exchange_closes=binance_reports.EXCHANGE_CLOSE_PREFIXES)

        fresh = await self.reconciler.exclusive(load)
        found: list[ExchangeClose] = []
        for row in fresh:
            kind = binance_reports.exchange_close_kind(row.client_order_id)
            if kind is None or row.side is None:
                continue
            seq = self.closes[-1].seq + 1 if self.closes else 1
            close = ExchangeClose(seq, row.symbol, kind, row.client_order_id, row.trade_id, row.side,
                                  row.qty, row.price)
            self.closes.append(close)
            found.append(close)
            if self.on_exchange_close is not None:
                try:
                    self.on_exchange_close(close)
                except Exception:
                    log.exception("exchange close callback failed for %s", close.client_order_id)
        if fresh:
            log.info("futures position reloaded after %s: %s", why, ", ".join(
                f"{wire_symbol(s)} {self.position(s)}" for s in sorted({r.symbol for r in fresh})))
            self._read_liquidation_soon()
        return found

    def note_account(self, report: Any) -> None:
        """An account update on its way to the ledger: a position the exchange reports that
        differs from the bot's starts a resync (see the module docstring)."""
        if not isinstance(report, AccountReport) or self.tracker is None:
            return
        differs = False
        for p in report.positions:
            if p.position_side not in (None, "BOTH") or wire_symbol(p.symbol) not in self.rules:
                continue
            sym = ledger_symbol(p.symbol)
            self._reported[sym] = p.amount
            differs |= p.amount != self.tracker.inventory(sym)
        if differs:
            self._sync_soon()

    def _differs(self) -> list[str]:
        assert self.tracker is not None
        return [s for s, amount in self._reported.items() if amount != self.tracker.inventory(s)]

    def _sync_soon(self) -> None:
        if self._sync_task is not None and not self._sync_task.done():
            self._sync_again = True
            return
        loop = asyncio.get_running_loop()
        self._sync_task = loop.create_task(self._sync_loop(), name="futures-position-sync")

    async def _sync_loop(self) -> None:
        try:
            while True:
                self._sync_again = False
                await self._sync()
                if not self._sync_again:
                    return
        except Exception:
            log.exception("futures position resync after an account update failed")

    async def _sync(self) -> None:
        # The fill behind the update may still be queued (or on its way): commit what is
        # queued and read the ledger, again every CONFIRM_S; from the second read on, a gap
        # fill asks REST for the trades once one is allowed (one per GAP_FILL_EVERY_S). Until
        # then the ledger is read on: an exchange close's fill that reaches the ledger late
        # (a slow stream) is still taken up as soon as it is stored, not at the next
        # account update or periodic reconciliation.
        reads = 0
        while True:
            await self.reconciler.drain()
            await self.reload("account update")
            if not self._differs():
                return
            reads += 1
            now = time.monotonic()
            if reads >= 2 and now - self._last_sync_gap_fill >= GAP_FILL_EVERY_S:
                break
            await asyncio.sleep(CONFIRM_S)
        self._last_sync_gap_fill = time.monotonic()
        log.warning("futures position differs from the exchange's after an account update (%s): gap fill",
                    ", ".join(f"{wire_symbol(s)} ours {self.position(s)} vs {self._reported[s]}"
                              for s in self._differs()))
        await self.gap_fill("position differs")

    async def stop(self) -> None:
        """Cancel the account-update resync and liquidation-price tasks still running."""
        tasks = [t for t in (self._sync_task, self._liq_task) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

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
