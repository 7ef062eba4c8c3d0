"""REST gap fill for USD-M futures orders, fills and income.

The futures user stream (ORDER_TRADE_UPDATE) is the fast path; this is the exhaustive one,
run at start, after every futures (re)connect, from the periodic jobs and at shutdown:

1. fills: ``GET /fapi/v1/userTrades`` from the last stored futures trade id + 1 per symbol,
   stored under the ledger symbol ``UM:<SYMBOL>`` (so spot and futures trade ids never
   collide) through the reconciler, keyed (symbol, tradeId): stored once whichever path
   brings a fill first; a trade whose order the ledger lacks (a liquidation while the bot
   was down) has that order fetched by its orderId and recorded first;
2. orders: each of our futures orders the ledger holds as not final is queried by its client
   id (``GET /fapi/v1/order``) and the answer applied; one the exchange does not know (-2013)
   and sent more than ``not_found_grace_s`` ago (or never sent) becomes NOT_PLACED;
3. income: ``GET /fapi/v1/income`` since the newest stored row (funding fees, commissions,
   realized PnL, transfers), stored once by ``tranId``.

Every run is recorded as a reconciliation with what it found. The venue's rows become
reports through the adapter's translator (``translate``: fills, order answers, income);
nothing here reads a venue field.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from executor.core.reports import (
    FillReport,
    IncomeReport,
    OrderStatusReport,
    VenueError,
    ledger_symbol,
    wire_symbol,
)

__all__ = ["FuturesGapFill", "FuturesGapFillReport", "FuturesTranslator"]

log = logging.getLogger(__name__)
NOT_PLACED = "NOT_PLACED"
INCOME_PAGE = 1000
RUN_PREFIX = "futures:"  # the reason of every run recorded in reconciliation_runs
MAX_INCOME_PAGES = 50      # one run catches up at most 50,000 rows; the next run goes on
# NOT_FOUND too: the order manager's first -2013 after an unknown outcome; absent again here
# after the grace, it is confirmed NOT_PLACED (found after all: the exchange's status).
OPEN_STATES = ("PENDING_SEND", "SENT", "UNKNOWN", "NOT_FOUND", "NEW", "PARTIALLY_FILLED", "PENDING_NEW")


class FuturesTranslator(Protocol):
    """The USD-M adapter's translations this gap fill needs."""

    def trade(self, row: object) -> FillReport: ...

    def order(self, row: object) -> OrderStatusReport: ...

    def income(self, row: Mapping[str, Any]) -> IncomeReport: ...


@dataclass
class FuturesGapFillReport:
    reason: str
    fills_seen: int = 0
    fills_added: int = 0
    orders_queried: int = 0
    orders_not_placed: int = 0
    income_added: int = 0
    errors: list[str] = field(default_factory=list)


class FuturesGapFill:
    """The futures REST reconciliation (see the module docstring)."""

    def __init__(self, store: Any, gateway: Any, reconciler: Any, symbols: Iterable[str], *,
                 prefix: str, translate: FuturesTranslator, not_found_grace_s: float = 3.0) -> None:
        self.store = store
        self.gateway = gateway
        self.translate = translate
        self.reconciler = reconciler
        self.symbols = [wire_symbol(s) for s in symbols]
        self.prefix = prefix
        self.not_found_grace_s = not_found_grace_s
        self.runs = 0

    async def run(self, reason: str) -> FuturesGapFillReport:
        report = FuturesGapFillReport(reason)
        rec_id = await self.store.start_reconciliation(f"{RUN_PREFIX}{reason}")
        started = time.monotonic()
        try:
            await self._fills(report)
            await self._orders(report)
            await self._income(report)
        except VenueError as exc:
            report.errors.append(str(exc))
            log.warning("futures gap fill (%s) incomplete: %s", reason, exc)
        self.runs += 1
        counts = {"fills_seen": report.fills_seen, "fills_added": report.fills_added,
                  "orders_queried": report.orders_queried, "orders_not_placed": report.orders_not_placed,
                  "income_added": report.income_added}
        await self.store.finish_reconciliation(
            rec_id, found=report.fills_added + report.orders_not_placed, fixed=report.fills_added,
            counts=counts, error="; ".join(report.errors) or None)
        log.info("futures gap fill (%s) in %.2f s: %s", reason, time.monotonic() - started, counts)
        return report

    async def _fills(self, report: FuturesGapFillReport) -> None:
        # Where to read from: not the newest stored trade (a trade stored by the stream or an
        # adoption after a gap would hide an older one the stream never delivered: found by
        # a chaos run with ADL), but the newest stored before the last complete scan began:
        # every trade up to then is in the ledger. The trades since are read again; storing
        # them is idempotent.
        since = await self.store.last_complete_reconciliation_ms(RUN_PREFIX)
        for symbol in self.symbols:
            last = None if since is None else \
                await self.store.last_trade_id(ledger_symbol(symbol), received_before_ms=since)
            rows = await self.gateway.trades_since(symbol, 0 if last is None else last + 1)
            if not rows:
                continue
            report.fills_seen += len(rows)
            fills = [self.translate.trade(r) for r in rows]
            await self._explain_orders(symbol, fills, report)
            result = await self.reconciler.apply_fills(fills, source="gap_fill")
            report.fills_added += result.fills_added

    async def _explain_orders(self, symbol: str, fills: list[FillReport],
                              report: FuturesGapFillReport) -> None:
        """A trade names only its orderId: record first the orders the ledger does not hold
        (the exchange's liquidation or ADL order of a position closed while the bot was down,
        an order placed by hand), so every fill has its order and the position derived from
        the ledger counts the exchange's closes (``autoclose-``/``adl_autoclose`` ids)."""
        ledger = ledger_symbol(symbol)
        for order_id in dict.fromkeys(f.order_id for f in fills):
            if await self.store.get_order_by_exchange_id(ledger, order_id) is not None:
                continue
            found = await self.gateway.get_order_by_id(symbol, order_id)
            report.orders_queried += 1
            if found is not None:
                await self.reconciler.apply_order_response(self.translate.order(found), source="gap_fill")

    async def _orders(self, report: FuturesGapFillReport) -> None:
        now_ms = time.time_ns() // 1_000_000
        for rec in await self.store.orders_not_final(include_external=False):
            if not rec.symbol.startswith("UM:") or rec.status not in OPEN_STATES:
                continue
            report.orders_queried += 1
            found = await self.gateway.get_order(wire_symbol(rec.symbol), rec.client_order_id)
            if found is not None:
                await self.reconciler.apply_order_response(self.translate.order(found), source="rest_query")
                continue
            sent_ms = rec.sent_ms or rec.created_ms
            if now_ms - int(sent_ms) < self.not_found_grace_s * 1000:
                continue
            why = "-2013: the exchange does not know this futures client order id"
            await self.store.update_order_status(rec.client_order_id, NOT_PLACED, source="rest_query",
                                                 reject_reason=why)
            report.orders_not_placed += 1

    async def _income(self, report: FuturesGapFillReport) -> None:
        since = await self.store.last_futures_income_ms()
        start = since if since is not None else 0
        for _ in range(MAX_INCOME_PAGES):
            # startTime is inclusive: rows of the last stored millisecond come again and are
            # skipped by their tranId; a full page means there may be more after its last row.
            rows = [self.translate.income(r) for r in await self.gateway.income(start_time=start,
                                                                                 limit=INCOME_PAGE)]
            await self._store_income(report, rows)
            if len(rows) < INCOME_PAGE or rows[-1].time_ms == start:
                return
            start = rows[-1].time_ms

    async def _store_income(self, report: FuturesGapFillReport, rows: list[IncomeReport]) -> None:
        report.income_added += await self.store.add_futures_income(
            {"tran_id": r.tran_id, "symbol": ledger_symbol(r.symbol, r.venue) if r.symbol else "",
             "income_type": r.income_type, "amount": r.amount, "asset": r.asset, "time_ms": r.time_ms,
             "trade_id": r.trade_id, "info": r.info} for r in rows)
