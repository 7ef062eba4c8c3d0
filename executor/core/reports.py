"""Venue-neutral reports: what the exchange adapters tell the reconciler about our account.

The adapters (``executor/exchange/``) turn every exchange payload -- stream events, REST
order answers, trade rows, account snapshots, income rows -- into these; the reconciler
(``executor/reconcile/``) reads nothing else (the way an execution engine reads order status
and fill reports, never an exchange's wire format). Each report names its ``venue``; money
is ``Decimal``; statuses and sides are the core's own (``core.orders``).

* ``OrderStatusReport``: one observation of one order (a stream update, a placement, query
  or cancel answer), with the ``FillReport`` it carries (a stream trade, or a placement's
  immediate fills);
* ``FillReport`` (also ``Fill``): one trade of one of our orders, keyed by
  ``(venue, symbol, trade_id)``: spot and USDⓈ-M futures trade ids are separate namespaces;
* ``BalanceReport`` (absolute free/locked of some assets), ``BalanceDeltaReport`` (a
  deposit, withdrawal or transfer), ``AccountReport`` (futures wallet balances and
  ``PositionReport``s), ``AccountSnapshot`` / ``FuturesAccountSnapshot`` (a REST account),
  ``IncomeReport`` (futures funding, commission, realized PnL, transfer rows).

Fields the ledger keeps verbatim (``payload``, ``ref``, ``kind``, ``execution_type``) are
opaque here: the adapter fills them, the reconciler stores them and never looks inside.

``Translator`` is what an adapter offers the reconciler for payloads that reach it raw
(tests, benches, REST answers handed over by the order manager).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from executor.core.money import format_decimal
from executor.core.orders import OrderStatus, Side

__all__ = [
    "FUTURES_PREFIX",
    "AccountReport",
    "AccountSnapshot",
    "AssetBalance",
    "BalanceDeltaReport",
    "BalanceReport",
    "Fill",
    "FillReport",
    "FillSource",
    "FuturesAccountSnapshot",
    "IncomeReport",
    "MalformedEvent",
    "OrderStatusReport",
    "PositionReport",
    "PositionSnapshot",
    "Report",
    "Translator",
    "Venue",
    "VenueError",
    "WalletBalance",
    "WalletSnapshot",
    "balance_identity",
    "ledger_symbol",
    "wire_symbol",
]

# Spot and USD-M share symbol names and overlapping order/trade ids; the ledger (one symbol
# column) keeps futures rows under ``UM:<SYMBOL>``.
FUTURES_PREFIX = "UM:"


class Venue(StrEnum):
    SPOT = "spot"
    USDM = "usdm"  # USDⓈ-M futures


def ledger_symbol(symbol: str, venue: Venue = Venue.USDM) -> str:
    """The ledger's symbol for ``symbol`` on ``venue`` (``BTCUSDT`` -> ``UM:BTCUSDT`` for USD-M)."""
    if venue is Venue.SPOT or symbol.startswith(FUTURES_PREFIX):
        return symbol
    return FUTURES_PREFIX + symbol


def wire_symbol(symbol: str) -> str:
    """``UM:BTCUSDT`` -> ``BTCUSDT`` (a spot symbol is returned as it is)."""
    return symbol[len(FUTURES_PREFIX):] if symbol.startswith(FUTURES_PREFIX) else symbol


class MalformedEvent(ValueError):
    """An exchange payload that does not have the documented shape; the message names the field."""


class VenueError(Exception):
    """A request to the venue failed (the adapter's error types derive from this)."""


class FillSource(StrEnum):
    STREAM = "stream"
    ORDER_RESPONSE = "order_response"
    GAP_FILL = "gap_fill"


@dataclass(frozen=True)
class FillReport:
    """One trade of one of our orders, from any source; identity is ``key``."""

    symbol: str
    trade_id: int
    order_id: int
    side: Side
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str | None  # None when there is no commission
    is_maker: bool
    time_ms: int
    source: FillSource
    client_order_id: str | None = None  # trade-history rows do not carry it
    venue: Venue = Venue.SPOT

    def __post_init__(self) -> None:
        # Rebuilt from the database these may be plain strings; ``side is Side.BUY`` needs enums.
        object.__setattr__(self, "side", Side(self.side))
        object.__setattr__(self, "source", FillSource(self.source))
        object.__setattr__(self, "venue", Venue(self.venue))

    @property
    def key(self) -> tuple[Venue, str, int]:
        return (self.venue, self.symbol, self.trade_id)


Fill = FillReport


@dataclass(frozen=True)
class AssetBalance:
    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True)
class OrderStatusReport:
    """One observation of one order. ``client_order_id`` is the order's own id (a cancel
    answer's request id is ``event_client_id``); ``side``/``order_type`` are None when the
    answer did not carry them (an ACK)."""

    venue: Venue
    symbol: str
    order_id: int
    client_order_id: str
    status: OrderStatus
    executed_qty: Decimal
    cum_quote: Decimal
    side: Side | None = None
    order_type: str | None = None
    time_in_force: str | None = None
    price: Decimal | None = None
    quantity: Decimal | None = None
    event_ms: int | None = None
    created_ms: int | None = None
    reject_reason: str | None = None
    event_client_id: str | None = None
    execution_id: int | None = None  # the venue's id of this execution, when it has one
    execution_type: str | None = None  # the venue's word for it (opaque; stored)
    trade_id: int | None = None
    dedupe_key: str | None = None  # identity of the observation when there is no execution id
    fills: tuple[FillReport, ...] = ()
    payload: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ledger_symbol(self) -> str:
        return ledger_symbol(self.symbol, self.venue)


@dataclass(frozen=True)
class BalanceReport:
    """Absolute free/locked of the assets that may have changed (not every asset)."""

    venue: Venue
    balances: tuple[AssetBalance, ...]
    event_ms: int
    ref: str  # identity of the observation (a redelivery has the same)
    kind: str  # the venue's name for the observation (opaque; stored)
    payload: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class BalanceDeltaReport:
    """A balance change not from trading (deposit, withdrawal, transfer)."""

    venue: Venue
    asset: str
    delta: Decimal
    event_ms: int
    ref: str
    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class WalletBalance:
    asset: str
    wallet_balance: Decimal
    cross_wallet_balance: Decimal | None
    balance_change: Decimal | None


@dataclass(frozen=True)
class PositionReport:
    symbol: str  # the venue's symbol
    amount: Decimal
    entry_price: Decimal | None
    breakeven_price: Decimal | None
    accumulated_realized: Decimal | None
    unrealized_pnl: Decimal | None
    margin_type: str | None
    isolated_wallet: Decimal | None
    position_side: str | None


@dataclass(frozen=True)
class AccountReport:
    """Changed wallet balances and positions of a derivatives account."""

    venue: Venue
    event_ms: int
    transaction_ms: int
    reason: str
    balances: tuple[WalletBalance, ...]
    positions: tuple[PositionReport, ...]
    payload: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class AccountSnapshot:
    """A REST read of a spot account: every balance, as of ``update_ms`` (None: not said)."""

    venue: Venue
    balances: tuple[AssetBalance, ...]
    update_ms: int | None
    ref: str | None = None  # identity of the snapshot as the ledger records it (opaque)


@dataclass(frozen=True)
class WalletSnapshot:
    asset: str
    wallet_balance: Decimal
    update_ms: int


@dataclass(frozen=True)
class PositionSnapshot:
    symbol: str
    amount: Decimal
    entry_price: Decimal
    unrealized_pnl: Decimal
    update_ms: int


@dataclass(frozen=True)
class FuturesAccountSnapshot:
    """A REST read of a derivatives account; ``raw_assets``/``raw_open_positions`` are the
    venue's rows, kept verbatim in the ledger's snapshot record."""

    venue: Venue
    source: str  # what was read, e.g. the endpoint (opaque; stored)
    wallets: tuple[WalletSnapshot, ...]
    positions: tuple[PositionSnapshot, ...]
    raw_assets: tuple[Mapping[str, Any], ...] = field(default=(), compare=False, repr=False)
    raw_open_positions: tuple[Mapping[str, Any], ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class IncomeReport:
    """One income row of a derivatives account, identified by ``tran_id``."""

    venue: Venue
    tran_id: int
    symbol: str  # the venue's symbol; "" when the row has none
    income_type: str
    amount: Decimal
    asset: str
    time_ms: int
    trade_id: str | None
    info: str | None


Report = OrderStatusReport | BalanceReport | BalanceDeltaReport | AccountReport
REPORT_TYPES: tuple[type, ...] = (OrderStatusReport, BalanceReport, BalanceDeltaReport, AccountReport)


def balance_identity(balances: Iterable[Any]) -> str:
    """What tells one balance observation from another of the same millisecond.

    An exchange stamps an account event with times in milliseconds: two different events
    in one millisecond (two symbols filling at once) share them, and keyed by time alone the
    second one's rows would be taken for a duplicate and lost. The balances an event carries
    are its identity: a redelivered event has the same ones (and is deduplicated), a
    different event of the same millisecond has others (and is kept). ``balances`` are
    anything with ``asset``, ``free`` and ``locked``."""
    text = ";".join(f"{r.asset}={format_decimal(r.free)}/{format_decimal(r.locked)}"
                    for r in sorted(balances, key=lambda r: r.asset))
    return "h=" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class Translator(Protocol):
    """What an exchange adapter offers for payloads that reach the reconciler raw."""

    def user_event(self, item: object) -> Report | None:
        """A stream payload (decoded or a text frame) as a report; None for control events
        (nothing to record). Raises ``MalformedEvent``."""
        ...

    def order(self, row: object) -> OrderStatusReport:
        """A REST order answer (placement, query, open-orders row, cancel)."""
        ...

    def trade(self, row: object) -> FillReport:
        """A trade-history row."""
        ...

    def account(self, row: object) -> AccountSnapshot:
        """A REST spot account."""
        ...

    def absent(self, client_order_id: str) -> Mapping[str, Any]:
        """What the ledger records as the venue's answer when it does not know an order."""
        ...
