"""This bot's position per base asset, derived from its own fills. Pure: no I/O.

The ledger is the bot's state, so its position is not a running figure kept in memory but
a function of the ledger: the fills of its own orders (the ledger's ``external`` flag says
which orders are ours; fills of anyone else's orders move the account, not the bot's
position). One fill changes the position in its symbol's base asset by

* ``+qty`` for a buy, ``-qty`` for a sell, and
* ``-commission`` when the commission was charged in the base asset (Binance charges a
  BUY's commission in the asset received unless BNB pays it), whichever the side.

A commission charged in the quote asset (or in BNB for another symbol) does not move the
base position. The order tracker (start-up and after every gap fill, then fill by fill),
the risk checks and the strategy's ``view.inventory`` read the tracker's figure, and the
audit folds the same ``fill_delta`` per fill, so all of them show the same number.

A perpetual position is one per symbol per account (one-way mode), so when the exchange
closes it -- a liquidation or an auto-deleveraging order, which the ledger records as an
external order -- that close moves the bot's position too: the futures tracker reads those
fills with its own (the venue adapter says which client ids are the exchange's closes) and
reports each as an ``ExchangeClose``, so nobody keeps believing in a position that is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from executor.core.money import ZERO
from executor.core.orders import Side

__all__ = ["ExchangeClose", "PositionFill", "fill_delta", "positions"]


class PositionFill(Protocol):
    """What a fill must carry to move a position (core ``Fill``, the store's rows)."""

    @property
    def symbol(self) -> str: ...

    @property
    def side(self) -> Side | str | None: ...

    @property
    def qty(self) -> Decimal: ...

    @property
    def commission(self) -> Decimal: ...

    @property
    def commission_asset(self) -> str | None: ...


def fill_delta(side: Side | str, qty: Decimal, commission: Decimal, commission_asset: str | None,
               base: str) -> Decimal:
    """How one fill changes the position in ``base`` (the fill's symbol's base asset)."""
    delta = qty if side == Side.BUY else -qty
    if commission and commission_asset == base:
        delta -= commission
    return delta


def positions(fills: Iterable[PositionFill], base_of: Callable[[str], str | None]) -> dict[str, Decimal]:
    """The position per base asset over ``fills`` (each counted once: the caller's rows are
    the ledger's, keyed by (symbol, tradeId)). ``base_of(symbol)`` is None for a symbol the
    bot does not trade (its fills are left out); a fill without a side is left out too."""
    out: dict[str, Decimal] = {}
    for f in fills:
        if f.side is None:
            continue
        base = base_of(f.symbol)
        if base is None:
            continue
        out[base] = out.get(base, ZERO) + fill_delta(f.side, f.qty, f.commission, f.commission_asset, base)
    return out


@dataclass(frozen=True)
class ExchangeClose:
    """A fill of the exchange's own closing order (liquidation or auto-deleveraging) on the
    bot's perpetual position. ``seq`` numbers them within one run (1, 2, ...), so a reader
    can tell which ones it has already taken into account."""

    seq: int
    symbol: str          # the ledger symbol (``UM:BTCUSDT``)
    kind: str            # "liquidation" or "ADL"
    client_order_id: str
    trade_id: int
    side: Side
    qty: Decimal
    price: Decimal | None

    @property
    def delta(self) -> Decimal:
        """How the close moved the position (a BUY closes a short: positive)."""
        return self.qty if self.side is Side.BUY else -self.qty
