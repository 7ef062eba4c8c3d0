"""The ledger's public record and input types: what ``Store`` reads back (``FillRecord``,
``BalanceRecord``, ``StatusChange``), what writers queue (``OrderEventIn``, ``FillIn``, ...,
``BatchItem``), what a batch returns (``BatchResult``), the store's errors, and the pure
helpers that validate and key them (``order_event_key``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from executor.persistence.models import (
    STATUS_RANK,
)
from executor.persistence.records import FillRow
from executor.persistence.types import to_decimal

SIDES = ("BUY", "SELL")
_ZERO = Decimal(0)


class StoreError(Exception):
    """A write the ledger refuses (bad input or a broken invariant), phrased for a human."""


class DuplicateClientOrderId(StoreError):
    """An order intent reused a client order id: sending it would risk a double order."""


# ---------------------------------------------------------------- records returned by reads


# A stored fill, as the store and the audit read it (one row type: ``records.FillRow``).
FillRecord = FillRow


@dataclass(frozen=True, slots=True)
class BalanceRecord:
    asset: str
    free: Decimal
    locked: Decimal
    source: str
    event_ref: str | None
    event_ms: int | None
    updated_ms: int

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class StatusChange:
    """What ``update_order_status`` did. ``applied`` is False for a duplicate or an older
    observation; ``stale`` says the update was behind what was stored; ``conflict`` names a
    contradiction (kept out of the order row, left for the reconciler to report)."""

    client_order_id: str
    found: bool
    applied: bool = False
    previous_status: str | None = None
    status: str | None = None
    executed_qty: Decimal | None = None
    cum_quote_qty: Decimal | None = None
    stale: bool = False
    resolved_from_unknown: bool = False
    conflict: str | None = None


# ---------------------------------------------------------------- inputs (also usable in batches)
#
# Treat inputs as immutable. The per-event ones (order events, fills, status updates, external
# orders) are deliberately not ``frozen``: a frozen dataclass __init__ sets every field
# through object.__setattr__, ~5-10 us per item, which was a tenth of the reconciler's
# budget per executionReport.


@dataclass(frozen=True, slots=True)
class BalanceRow:
    asset: str
    free: Decimal
    locked: Decimal


@dataclass(slots=True)
class OrderEventIn:
    symbol: str
    status: str
    source: str
    payload: Any
    exchange_order_id: int | None = None
    client_order_id: str | None = None
    event_client_id: str | None = None
    execution_id: int | None = None
    execution_type: str | None = None
    executed_qty: Decimal | None = None
    cum_quote_qty: Decimal | None = None
    trade_id: int | None = None
    event_ms: int | None = None
    received_ms: int | None = None
    dedupe_key: str | None = None


@dataclass(slots=True)
class FillIn:
    symbol: str
    trade_id: int
    price: Decimal
    qty: Decimal
    source: str
    quote_qty: Decimal | None = None
    commission: Decimal = _ZERO
    commission_asset: str | None = None
    is_maker: bool | None = None
    trade_ms: int | None = None
    side: str | None = None
    client_order_id: str | None = None
    exchange_order_id: int | None = None
    received_ms: int | None = None


@dataclass(slots=True)
class StatusUpdateIn:
    client_order_id: str | None
    status: str
    source: str
    symbol: str | None = None
    exchange_order_id: int | None = None
    executed_qty: Decimal | None = None
    cum_quote_qty: Decimal | None = None
    event_ms: int | None = None
    reject_reason: str | None = None


@dataclass(slots=True)
class ExternalOrderIn:
    """An order we did not place, found on the exchange (stream or REST)."""

    symbol: str
    exchange_order_id: int
    client_order_id: str
    side: str
    type: str
    status: str
    source: str
    time_in_force: str | None = None
    price: Decimal | None = None
    quantity: Decimal | None = None
    quote_order_qty: Decimal | None = None
    executed_qty: Decimal = _ZERO
    cum_quote_qty: Decimal = _ZERO
    created_ms: int | None = None
    event_ms: int | None = None


@dataclass(frozen=True, slots=True)
class BalancesIn:
    rows: tuple[BalanceRow, ...]
    source: str
    event_ref: str | None = None
    event_ms: int | None = None
    kind: str | None = None
    payload: Any = None
    force: bool = False


@dataclass(frozen=True, slots=True)
class BalanceEventIn:
    kind: str
    asset: str
    source: str
    free: Decimal | None = None
    locked: Decimal | None = None
    delta: Decimal | None = None
    event_ms: int | None = None
    event_ref: str | None = None
    payload: Any = None
    dedupe_key: str | None = None


@dataclass(frozen=True, slots=True)
class FuturesUpdateIn:
    payload: Any
    event_ms: int | None = None
    transaction_ms: int | None = None
    reason: str | None = None
    balances: Any = None
    positions: Any = None


BatchItem = (
    OrderEventIn | FillIn | StatusUpdateIn | ExternalOrderIn | BalancesIn | BalanceEventIn | FuturesUpdateIn
)


@dataclass
class BatchResult:
    """What one committed batch changed."""

    events_added: int = 0
    events_duplicate: int = 0
    new_event_keys: list[str] = field(default_factory=list)
    fills_added: list[tuple[str, int]] = field(default_factory=list)
    fills_duplicate: int = 0
    status_changes: list[StatusChange] = field(default_factory=list)
    external_orders_added: list[str] = field(default_factory=list)
    balances_changed: list[str] = field(default_factory=list)
    balance_events_added: int = 0
    futures_updates_added: int = 0


# ---------------------------------------------------------------- pure helpers


def _dec(value: Any) -> Decimal | None:
    return None if value is None else to_decimal(value)


def _key_dec(value: Decimal | None) -> str:
    """Value-based text for dedupe keys: 1.0 and 1.00000000 are the same observation."""
    if value is None:
        return "-"
    norm = value.normalize()
    return format(norm, "f") if norm.as_tuple().exponent <= 0 else str(norm)  # type: ignore[operator]


def order_event_key(ev: OrderEventIn) -> str:
    """The dedupe key of an order observation (see ``models.OrderEvent``)."""
    if ev.dedupe_key:
        return ev.dedupe_key
    if ev.execution_id is not None:
        if ev.exchange_order_id is None:
            raise StoreError(f"{ev.symbol}: an event with an execution id needs the exchange order id")
        return f"exec:{ev.symbol}:{ev.exchange_order_id}:{ev.execution_id}"
    if ev.exchange_order_id is not None:
        ref = str(ev.exchange_order_id)
    elif ev.client_order_id:
        ref = "c:" + ev.client_order_id
    else:
        raise StoreError(f"{ev.symbol}: an order event needs an exchange order id or a client order id")
    when = ev.event_ms if ev.event_ms is not None else "-"
    return f"obs:{ev.symbol}:{ref}:{ev.status}:{_key_dec(_dec(ev.executed_qty))}:{when}"


def _check_status(status: str) -> None:
    if status not in STATUS_RANK:
        raise StoreError(f"unknown order status {status!r} (known: {', '.join(STATUS_RANK)})")
