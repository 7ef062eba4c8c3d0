"""PnL figures per period: realized (FIFO, net of fees), unrealized at mark, and fees.

The arithmetic is ``executor.core.pnl``'s (``FifoBook``, ``TradeTotals``, ``trade_and_fee``):
the same conventions as the audit report. Fees are in quote (a base-asset fee valued at the
fill price; a third-asset fee such as BNB through ``<asset><quote>`` at its mark when one is
known, otherwise left out and listed in ``fees_unconverted``). A period counts only the fills
in it, as a scoped audit does: inventory held before the period starts is not included.

``PnlFold`` takes fills one at a time in (time, trade id) order per symbol; ``add`` answers
False for a fill that would sort before one already taken (the caller then folds the period
afresh from the ledger), so an incremental fold always equals ``pnl`` over the same fills.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from executor.core.money import ZERO
from executor.core.pnl import PREC, FifoBook, TradeTotals, trade_and_fee
from executor.persistence.records import FillRow

__all__ = ["PERIODS", "PnlFigures", "PnlFold", "SymbolPnl", "period_start_ms", "pnl"]

PERIODS = ("run", "day", "all")


def period_start_ms(period: str, now_ms: int) -> int | None:
    """The first millisecond of ``day`` (UTC midnight of ``now_ms``); None for other periods."""
    if period != "day":
        return None
    day = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date()
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


@dataclass(frozen=True)
class SymbolPnl:
    symbol: str
    base: str
    quote: str
    realized: Decimal  # FIFO, net of fees, in quote
    realized_gross: Decimal
    fees: Decimal  # in quote
    unrealized: Decimal | None  # closing inventory at mark minus its FIFO cost; None without a mark
    position: Decimal  # closing inventory of the period's fills, base (negative: short)
    position_cost: Decimal
    mark: Decimal | None
    fills: int
    fees_by_asset: Mapping[str, Decimal] = field(default_factory=dict)
    fees_unconverted: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class PnlFigures:
    period: str
    since_ms: int | None
    symbols: list[SymbolPnl]
    totals: dict[str, dict[str, Decimal]]  # quote asset -> realized, unrealized, fees, total
    fills: int

    def total(self, quote: str, name: str) -> Decimal:
        return self.totals.get(quote, {}).get(name, ZERO)


class _SymbolFold:
    __slots__ = ("book", "last", "totals", "unconverted")

    def __init__(self) -> None:
        self.book = FifoBook()
        self.totals = TradeTotals()
        self.unconverted: dict[str, Decimal] = {}
        self.last: tuple[int, int] | None = None


class PnlFold:
    """Running PnL of one period's fills. ``marks`` (symbol -> mark price) value third-asset
    fees when a fill is taken and the closing inventory when ``figures`` is asked."""

    def __init__(self, pairs: Mapping[str, tuple[str, str]], *, period: str = "all",
                 since_ms: int | None = None, run_id: int | None = None) -> None:
        self.pairs = pairs
        self.period = period
        self.since_ms = since_ms
        self.run_id = run_id
        self._folds: dict[str, _SymbolFold] = {}
        self.count = 0

    def wants(self, fill: FillRow) -> bool:
        """Whether ``fill`` belongs to this period."""
        if self.run_id is not None and fill.run_id != self.run_id:
            return False
        return self.since_ms is None or fill.time_ms >= self.since_ms

    def add(self, fill: FillRow, marks: Mapping[str, Decimal] | None = None) -> bool:
        """Take one fill (ignored when outside the period, or without a side or known pair).
        False: it sorts before a fill already taken; fold the period afresh."""
        return self.add_many((fill,), marks)

    def add_many(self, fills: Iterable[FillRow], marks: Mapping[str, Decimal] | None = None) -> bool:
        """``add`` for each fill, in the order given; False if any sorted before one already
        taken (that one is skipped; fold the period afresh)."""
        ok = True
        with localcontext() as ctx:
            ctx.prec = PREC
            for fill in fills:
                ok = self._add(fill, marks) and ok
        return ok

    def _add(self, fill: FillRow, marks: Mapping[str, Decimal] | None) -> bool:
        if not self.wants(fill) or fill.side is None or fill.symbol not in self.pairs:
            return True
        f = self._folds.get(fill.symbol)
        if f is None:
            f = self._folds[fill.symbol] = _SymbolFold()
        order = (fill.time_ms, fill.trade_id)
        if f.last is not None and order <= f.last:
            return order == f.last  # the same fill again is harmless; an older one is not
        base, quote = self.pairs[fill.symbol]
        asset = fill.commission_asset
        unconverted = None
        if fill.commission and asset and asset not in (base, quote):
            price = (marks or {}).get(f"{asset}{quote}")
            if price is None:
                unconverted = fill.commission
                dq, fee = trade_and_fee(fill, base, quote, lambda *_: ZERO)  # type: ignore[arg-type]
            else:
                dq, fee = trade_and_fee(fill, base, quote, lambda _a, amount, _f: amount * price)  # type: ignore[arg-type]
        else:
            dq, fee = trade_and_fee(fill, base, quote, None)  # type: ignore[arg-type]
        f.totals.add(fill, fee)  # type: ignore[arg-type]
        f.book.apply(dq, fill.price)
        if unconverted is not None and asset:
            f.unconverted[asset] = f.unconverted.get(asset, ZERO) + unconverted
        f.last = order
        self.count += 1
        return True

    def figures(self, marks: Mapping[str, Decimal]) -> PnlFigures:
        symbols: list[SymbolPnl] = []
        totals: dict[str, dict[str, Decimal]] = {}
        with localcontext() as ctx:
            ctx.prec = PREC
            for symbol in sorted(self._folds):
                f = self._folds[symbol]
                base, quote = self.pairs[symbol]
                qty, cost = f.book.position()
                mark = marks.get(symbol)
                unrealized = None if mark is None else qty * mark - cost
                if mark is None and not qty:
                    unrealized = ZERO  # nothing held: nothing to value
                t = f.totals
                symbols.append(SymbolPnl(symbol, base, quote, f.book.gross - t.fees, f.book.gross, t.fees,
                                         unrealized, qty, cost, mark, t.count, dict(t.by_asset),
                                         dict(f.unconverted)))
                tot = totals.setdefault(quote, {"realized": ZERO, "unrealized": ZERO, "fees": ZERO})
                tot["realized"] += f.book.gross - t.fees
                tot["fees"] += t.fees
                tot["unrealized"] += unrealized or ZERO
            for tot in totals.values():
                tot["total"] = tot["realized"] + tot["unrealized"]
        return PnlFigures(self.period, self.since_ms, symbols, totals, self.count)


def pnl(fills: Iterable[FillRow], marks: Mapping[str, Decimal], pairs: Mapping[str, tuple[str, str]], *,
        period: str = "all", since_ms: int | None = None, run_id: int | None = None) -> PnlFigures:
    """PnL of the fills in the period (``run_id`` and/or ``since_ms`` select it), at ``marks``."""
    fold = PnlFold(pairs, period=period, since_ms=since_ms, run_id=run_id)
    unique = {f.key: f for f in fills}
    fold.add_many(sorted(unique.values(), key=lambda f: (f.time_ms, f.trade_id)), marks)
    return fold.figures(marks)
