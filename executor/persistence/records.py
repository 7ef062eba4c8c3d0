"""Read-side row types shared by the store and the audit.

An ``OrderRecord`` is one row of ``orders`` as both the bot (through the store) and the
offline audit (through plain sqlite3, built positionally with ``_make`` for speed) read it:
one definition so the two can never drift apart. ``FillRow`` is a row of ``fills`` as the
audit reads it (``side`` as a ``Side``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

__all__ = ["FINAL_STATUSES", "FillRow", "OrderRecord", "PositionRow"]

# From core, not through ``models`` (the same object): the audit reads these rows without
# loading the ORM models (~0.1 s of its start-up).
from executor.core.orders import FINAL_STATUSES, Side


class OrderRecord(NamedTuple):
    id: int
    client_order_id: str
    exchange_order_id: int | None
    run_id: int | None
    symbol: str
    side: str
    type: str
    time_in_force: str | None
    price: Decimal | None
    quantity: Decimal | None
    quote_order_qty: Decimal | None
    status: str
    status_source: str
    executed_qty: Decimal
    cum_quote_qty: Decimal
    created_ms: int
    sent_ms: int | None
    acked_ms: int | None
    updated_ms: int
    exchange_update_ms: int | None
    decision_bid: Decimal | None
    decision_ask: Decimal | None
    decision_mark: Decimal | None
    decision_ms: int | None
    reason: str | None
    external: bool
    resolved_from_unknown: bool
    reject_reason: str | None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class FillRow(NamedTuple):
    """A stored fill. It also quacks like ``executor.core.reports.FillReport`` (``side`` is a
    ``Side``, ``key``, ``time_ms``) so ``executor.core.pnl`` takes it without a copy."""

    id: int
    symbol: str
    trade_id: int
    order_id: int | None
    client_order_id: str | None
    exchange_order_id: int | None
    side: Side | None
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str | None
    is_maker: bool | None
    trade_ms: int | None
    source: str
    received_ms: int
    run_id: int | None

    @property
    def key(self) -> tuple[str, int]:
        return (self.symbol, self.trade_id)

    @property
    def time_ms(self) -> int:
        # Exchange time when known; a fill without T is placed by when we received it.
        return self.trade_ms if self.trade_ms is not None else self.received_ms


class PositionRow(NamedTuple):
    """The part of a fill of one of our orders that moves the bot's position
    (``executor.core.positions``); ``Store.own_fills`` reads these."""

    symbol: str
    trade_id: int
    side: Side | None
    qty: Decimal
    commission: Decimal
    commission_asset: str | None
    fill_id: int = 0  # the fills row id: a later load asks only for newer rows
    client_order_id: str | None = None  # the order's (an exchange close's when asked for)
    price: Decimal | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.symbol, self.trade_id)
