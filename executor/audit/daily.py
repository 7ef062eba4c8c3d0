"""``audit daily``: per UTC day and quote asset, PnL, fees, volume, round trips and win rate.

Pure: fills in, rows out. The arithmetic is ``executor.core.pnl``'s (``FifoBook``,
``trade_and_fee``), with the report's conventions: fills in (time, trade id) order, the
FIFO book of each symbol carried across days (a day's realized PnL includes closing what an
earlier day opened), fees expensed on the day they are paid, in quote (base fees at the fill
price, third-asset fees at the latest known ``<asset><quote>`` price, else left out and
counted in ``unconverted``).

A **round trip** is a fill that closes (part of) an open position, FIFO. Its *gross edge*
is the realized PnL of that close before fees; its *fees* are its own fee (the closing
share of it) plus the fees of the opening fills it closes, pro rata by quantity. It is a
win when the gross edge exceeds those fees. The fees of a position still open are in the
day's fees but in no round trip yet.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Context, Decimal, localcontext

from executor.core.pnl import PREC, FifoBook, trade_and_fee
from executor.persistence.records import FillRow

__all__ = ["DayFigures", "daily"]

ZERO = Decimal(0)
_CTX = Context(prec=PREC)


@dataclass
class DayFigures:
    day: str  # YYYY-MM-DD (UTC)
    quote: str
    fills: int = 0
    volume: Decimal = ZERO  # quote value traded, both sides
    fees: Decimal = ZERO  # in quote, paid this day
    gross: Decimal = ZERO  # realized FIFO before fees
    round_trips: int = 0
    wins: int = 0
    trip_gross: Decimal = ZERO  # sum of the round trips' gross edge
    trip_fees: Decimal = ZERO  # sum of the fees attributed to the round trips
    unconverted: dict[str, Decimal] = field(default_factory=dict)

    @property
    def realized(self) -> Decimal:
        """Realized PnL net of the day's fees."""
        return self.gross - self.fees

    @property
    def win_rate(self) -> Decimal | None:
        return Decimal(self.wins) / self.round_trips if self.round_trips else None

    @property
    def edge_per_trip(self) -> Decimal | None:
        return self.trip_gross / self.round_trips if self.round_trips else None

    @property
    def fees_per_trip(self) -> Decimal | None:
        return self.trip_fees / self.round_trips if self.round_trips else None


class _Symbol:
    """One symbol's FIFO book, and beside it the fee per unit of each open lot."""

    __slots__ = ("book", "fee_lots", "open_qty")

    def __init__(self) -> None:
        self.book = FifoBook()
        self.fee_lots: deque[list[Decimal]] = deque()  # [quantity left, fee per unit], oldest first
        self.open_qty = ZERO  # signed, equals the book's position

    def take(self, dq: Decimal, price: Decimal, fee: Decimal) -> tuple[Decimal, Decimal, Decimal]:
        """Apply a fill; returns (quantity it closed, gross of the close, fees of the close)."""
        size = abs(dq)
        if not size:
            return ZERO, ZERO, ZERO
        closing = min(size, abs(self.open_qty)) if self.open_qty and (self.open_qty > 0) != (dq > 0) else ZERO
        before = self.book.gross
        self.book.apply(dq, price)
        gross = self.book.gross - before
        per_unit = fee / size
        trip_fees = closing * per_unit
        left = closing
        while left and self.fee_lots:
            lot = self.fee_lots[0]
            used = min(left, lot[0])
            trip_fees += used * lot[1]
            lot[0] -= used
            left -= used
            if not lot[0]:
                self.fee_lots.popleft()
        if size > closing:
            self.fee_lots.append([size - closing, per_unit])
        self.open_qty += dq
        return closing, gross, trip_fees


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date().isoformat()


def daily(fills: Iterable[FillRow], pairs: Callable[[str], tuple[str, str]],
          price_at: Callable[[str, int], Decimal | None]) -> list[DayFigures]:
    """Per (day, quote) figures of ``fills`` (each (symbol, trade id) once), oldest day first."""
    unique = {f.key: f for f in fills if f.side is not None}
    ordered = sorted(unique.values(), key=lambda f: (f.time_ms, f.trade_id))
    books: dict[str, _Symbol] = {}
    days: dict[tuple[str, str], DayFigures] = {}
    with localcontext(_CTX):
        for f in ordered:
            base, quote = pairs(f.symbol)
            key = (_day(f.time_ms), quote)
            row = days.get(key)
            if row is None:
                row = days[key] = DayFigures(*key)
            missing: list[Decimal] = []

            def convert(asset: str, amount: Decimal, fill: FillRow, quote: str = quote,
                        missing: list[Decimal] = missing) -> Decimal:
                price = price_at(asset + quote, fill.time_ms)
                if price is None:
                    missing.append(amount)
                    return ZERO
                return amount * price

            dq, fee = trade_and_fee(f, base, quote, convert)  # type: ignore[arg-type]
            if missing and f.commission_asset:
                asset = f.commission_asset
                row.unconverted[asset] = row.unconverted.get(asset, ZERO) + missing[0]
            book = books.get(f.symbol)
            if book is None:
                book = books[f.symbol] = _Symbol()
            closed, gross, trip_fees = book.take(dq, f.price, fee)
            row.fills += 1
            row.volume += f.quote_qty
            row.fees += fee
            row.gross += gross
            if closed:
                row.round_trips += 1
                row.trip_gross += gross
                row.trip_fees += trip_fees
                if gross > trip_fees:
                    row.wins += 1
    return [days[k] for k in sorted(days)]
