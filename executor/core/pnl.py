"""Realized PnL per symbol, by FIFO lots and by average cost, from a set of fills.

Conventions (the audit report states them too):

* fills are deduplicated by ``(symbol, trade_id)`` and taken in ``(time_ms, trade_id)``
  order, so the input order does not matter;
* ``realized_gross`` is trading profit before fees; fees are expensed when paid, in quote:
  a quote fee as is, a base fee at the fill price, a third-asset fee (BNB) through the
  caller's ``convert(asset, amount, fill) -> quote amount``; ``realized = gross - fees``;
* a base-asset fee changes inventory: a BUY of q with fee f adds q - f; a SELL of q with
  fee f removes q + f. The fee units are valued at the fill price, so cash still balances:
  (q - f)·p of inventory + f·p of fee = q·p paid;
* selling more than held opens a short lot (the inventory goes negative), which later buys
  close; pass ``opening_qty``/``opening_price`` for inventory held before the first fill.

Arithmetic runs at 50 significant digits; average cost needs one division per close.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from executor.core.money import ZERO
from executor.core.orders import Side
from executor.core.positions import fill_delta
from executor.core.reports import Fill

__all__ = [
    "PREC",
    "AverageBook",
    "FeeConverter",
    "FifoBook",
    "PnlResult",
    "TradeTotals",
    "average_cost_pnl",
    "fifo_pnl",
    "slippage_bps",
    "trade_and_fee",
]

FeeConverter = Callable[[str, Decimal, Fill], Decimal]
PREC = 50


@dataclass(frozen=True)
class PnlResult:
    symbol: str
    method: str  # "fifo" or "average"
    realized_gross: Decimal
    fees: Decimal  # every fee, in quote
    position_qty: Decimal  # closing inventory in base (negative: short)
    position_cost: Decimal  # cost basis of that inventory in quote (same sign)
    bought_qty: Decimal = ZERO
    sold_qty: Decimal = ZERO
    bought_quote: Decimal = ZERO
    sold_quote: Decimal = ZERO
    fees_by_asset: Mapping[str, Decimal] = field(default_factory=dict)
    fill_count: int = 0

    @property
    def realized(self) -> Decimal:
        """Realized PnL net of fees."""
        return self.realized_gross - self.fees

    @property
    def avg_entry_price(self) -> Decimal | None:
        return self.position_cost / self.position_qty if self.position_qty else None

    def market_value(self, mark: Decimal) -> Decimal:
        """Closing inventory valued at ``mark``."""
        return self.position_qty * mark

    def unrealized(self, mark: Decimal) -> Decimal:
        return self.position_qty * mark - self.position_cost


def _ordered(fills: Iterable[Fill], symbol: str, presorted: bool = False) -> Iterable[Fill]:
    """The fills of ``symbol``, once each, in (time, trade id) order. ``presorted``: the caller
    guarantees that already (e.g. rows of one symbol from a table unique on (symbol, trade_id),
    selected in that order), so the dedupe and the sort, which change nothing then, are skipped."""
    if presorted:
        return fills
    unique: dict[tuple[str, int], Fill] = {}
    for f in fills:
        if f.symbol == symbol:
            unique.setdefault(f.key, f)
    return sorted(unique.values(), key=lambda f: (f.time_ms, f.trade_id))


def trade_and_fee(fill: Fill, base: str, quote: str,
                   convert: FeeConverter | None) -> tuple[Decimal, Decimal]:
    """(signed base change, fee in quote) for one fill. The base change is
    ``core.positions.fill_delta``: the position the tracker and risk see moves the same."""
    dq = fill_delta(fill.side, fill.qty, fill.commission, fill.commission_asset, base)
    fee = fill.commission
    if not fee or not fill.commission_asset:
        return dq, ZERO
    if fill.commission_asset == quote:
        return dq, fee
    if fill.commission_asset == base:
        return dq, fee * fill.price
    if convert is None:
        raise ValueError(f"pnl: fee in {fill.commission_asset} on {fill.symbol} trade {fill.trade_id} "
                         "needs a conversion to quote")
    return dq, convert(fill.commission_asset, fee, fill)


class TradeTotals:
    """Volumes and fees of a run of fills (the part of PnL that is a plain sum)."""

    __slots__ = ("bought_qty", "bought_quote", "by_asset", "count", "fees", "sold_qty", "sold_quote")

    def __init__(self) -> None:
        self.bought_qty = self.sold_qty = self.bought_quote = self.sold_quote = self.fees = ZERO
        self.by_asset: dict[str, Decimal] = {}
        self.count = 0

    def add(self, fill: Fill, fee_quote: Decimal) -> None:
        self.count += 1
        if fill.side is Side.BUY:
            self.bought_qty += fill.qty
            self.bought_quote += fill.quote_qty
        else:
            self.sold_qty += fill.qty
            self.sold_quote += fill.quote_qty
        self.fees += fee_quote
        if fill.commission and fill.commission_asset:
            asset = fill.commission_asset
            self.by_asset[asset] = self.by_asset.get(asset, ZERO) + fill.commission

    def result(self, symbol: str, method: str, gross: Decimal, qty: Decimal, cost: Decimal) -> PnlResult:
        return PnlResult(symbol, method, gross, self.fees, qty, cost, self.bought_qty, self.sold_qty,
                         self.bought_quote, self.sold_quote, dict(self.by_asset), self.count)

    def state(self) -> dict[str, object]:
        return {"q": [str(v) for v in (self.bought_qty, self.sold_qty, self.bought_quote, self.sold_quote,
                                       self.fees)],
                "a": {k: str(v) for k, v in self.by_asset.items()}, "n": self.count}

    @classmethod
    def from_state(cls, st: Mapping[str, object]) -> TradeTotals:
        t = cls()
        q = [Decimal(v) for v in st["q"]]  # type: ignore[attr-defined]
        t.bought_qty, t.sold_qty, t.bought_quote, t.sold_quote, t.fees = q
        t.by_asset = {k: Decimal(v) for k, v in st["a"].items()}  # type: ignore[attr-defined]
        t.count = int(st["n"])  # type: ignore[call-overload]
        return t


class FifoBook:
    """Open lots matched oldest first; ``apply`` a signed base change at a price. Call it inside
    a context of ``PREC`` digits (the functions below do)."""

    __slots__ = ("gross", "lots")

    def __init__(self, opening_qty: Decimal = ZERO, opening_price: Decimal = ZERO) -> None:
        self.lots: deque[list[Decimal]] = deque()  # [signed qty, price]; all lots share one sign
        if opening_qty:
            self.lots.append([opening_qty, opening_price])
        self.gross = ZERO

    def apply(self, dq: Decimal, price: Decimal) -> None:
        lots = self.lots
        while dq and lots and (lots[0][0] > 0) != (dq > 0):
            lot = lots[0]
            matched = min(abs(dq), abs(lot[0]))
            sign = 1 if lot[0] > 0 else -1
            self.gross += matched * (price - lot[1]) * sign
            lot[0] -= matched * sign
            dq += matched * sign
            if not lot[0]:
                lots.popleft()
        if dq:
            lots.append([dq, price])

    def position(self) -> tuple[Decimal, Decimal]:
        """(signed quantity, cost) of the open lots."""
        return sum((lot[0] for lot in self.lots), ZERO), sum((lot[0] * lot[1] for lot in self.lots), ZERO)

    def state(self) -> list[str]:
        return [str(self.gross), *(f"{q} {p}" for q, p in self.lots)]

    @classmethod
    def from_state(cls, st: list[str]) -> FifoBook:
        b = cls()
        b.gross = Decimal(st[0])
        b.lots.extend([Decimal(x) for x in lot.split()] for lot in st[1:])
        return b


class AverageBook:
    """Inventory at its running average cost; ``apply`` as for ``FifoBook``."""

    __slots__ = ("cost", "gross", "qty")

    def __init__(self, opening_qty: Decimal = ZERO, opening_price: Decimal = ZERO) -> None:
        self.qty, self.cost = opening_qty, opening_qty * opening_price
        self.gross = ZERO

    def apply(self, dq: Decimal, price: Decimal) -> None:
        qty = self.qty
        if not dq:
            return
        if not qty or (qty > 0) == (dq > 0):
            self.qty, self.cost = qty + dq, self.cost + dq * price
            return
        avg = self.cost / qty
        closed = min(abs(dq), abs(qty))
        sign = 1 if qty > 0 else -1
        self.gross += closed * (price - avg) * sign
        remainder = dq + closed * sign  # what is left after closing (opposite sign to old qty)
        if closed == abs(qty):
            self.qty, self.cost = remainder, remainder * price
        else:
            self.qty, self.cost = qty - closed * sign, self.cost - closed * sign * avg

    def apply_all(self, moves: Iterable[tuple[Decimal, Decimal]]) -> None:
        """``apply(dq, price)`` for each move in order, with the book's state in locals instead
        of a method call and three attribute writes per move: the same results, digits and
        exponents, in a context that rounds half-even (the audit's, ``PREC`` digits) or in any
        other whose rounding treats both signs alike (tests/core/test_pnl_apply_all.py).

        The audit report runs this over half a million fills a symbol, so the close is
        written once per side of the book: where ``apply`` multiplies by a sign of +-1 and
        takes ``abs``, this negates or takes ``+x`` (``abs`` is exactly that, rounded to the
        context as ``abs`` rounds), and ``x + y * -1`` is ``x - y``. With a sign-dependent
        rounding (``ROUND_FLOOR``, ``ROUND_CEILING``) ``(-c) * avg`` is not ``-(c * avg)``
        and a short position's cost could differ in its last digit. ~40 % less time per move
        (bench/RESULTS.md, "#16 ... session 10")."""
        qty, cost, gross = self.qty, self.cost, self.gross
        for dq, price in moves:
            if not dq:
                continue
            if not qty:
                qty, cost = qty + dq, cost + dq * price
                continue
            if qty > 0:
                if dq > 0:
                    qty, cost = qty + dq, cost + dq * price
                    continue
                # A long position reduced: closed = min(abs(dq), abs(qty)), sign = 1.
                a, b = -dq, +qty
                closed = b if b < a else a  # ``min``: the first of two equal values
                avg = cost / qty
                gross += closed * (price - avg)
                if closed == b:
                    qty = dq + closed
                    cost = qty * price
                else:
                    qty, cost = qty - closed, cost - closed * avg
            else:
                if dq < 0:
                    qty, cost = qty + dq, cost + dq * price
                    continue
                # A short position reduced: sign = -1.
                a, b = +dq, -qty
                closed = b if b < a else a
                avg = cost / qty
                gross -= closed * (price - avg)
                if closed == b:
                    qty = dq - closed
                    cost = qty * price
                else:
                    qty, cost = qty + closed, cost + closed * avg
        self.qty, self.cost, self.gross = qty, cost, gross

    def position(self) -> tuple[Decimal, Decimal]:
        return self.qty, self.cost

    def state(self) -> list[str]:
        return [str(self.gross), str(self.qty), str(self.cost)]

    @classmethod
    def from_state(cls, st: list[str]) -> AverageBook:
        b = cls()
        b.gross, b.qty, b.cost = (Decimal(x) for x in st)
        return b


def fifo_pnl(fills: Iterable[Fill], symbol: str, base: str, quote: str, convert: FeeConverter | None = None,
             opening_qty: Decimal = ZERO, opening_price: Decimal = ZERO, *,
             presorted: bool = False) -> PnlResult:
    """Realized PnL matching each reduction against the oldest open lot first. ``presorted``:
    see ``_ordered`` (every fill must then be of ``symbol``)."""
    return _run(FifoBook(opening_qty, opening_price), "fifo", fills, symbol, base, quote, convert, presorted)


def average_cost_pnl(fills: Iterable[Fill], symbol: str, base: str, quote: str,
                     convert: FeeConverter | None = None, opening_qty: Decimal = ZERO,
                     opening_price: Decimal = ZERO, *, presorted: bool = False) -> PnlResult:
    """Realized PnL against the running average cost of the inventory. ``presorted``: see
    ``_ordered`` (every fill must then be of ``symbol``)."""
    return _run(AverageBook(opening_qty, opening_price), "average", fills, symbol, base, quote, convert,
                presorted)


def _run(book: FifoBook | AverageBook, method: str, fills: Iterable[Fill], symbol: str, base: str, quote: str,
         convert: FeeConverter | None, presorted: bool) -> PnlResult:
    with localcontext() as ctx:
        ctx.prec = PREC
        totals = TradeTotals()
        for fill in _ordered(fills, symbol, presorted):
            dq, fee = trade_and_fee(fill, base, quote, convert)
            totals.add(fill, fee)
            book.apply(dq, fill.price)
        qty, cost = book.position()
        return totals.result(symbol, method, book.gross, qty, cost)


def slippage_bps(side: Side, price: Decimal, reference: Decimal) -> Decimal:
    """How much worse than ``reference`` (e.g. decision-time mid or touch) ``price`` was, in bps.

    Positive is a cost: a BUY above the reference, a SELL below it; negative is improvement.
    """
    if reference <= 0:
        raise ValueError(f"slippage: reference price must be positive, got {reference}")
    with localcontext() as ctx:
        ctx.prec = PREC
        diff = price - reference if Side(side) is Side.BUY else reference - price
        return diff / reference * 10000
