"""The audit report as a fold: per symbol (and per run and symbol) running state that takes
one order or one fill at a time and can be written out and read back exactly.

Pure: no I/O. The report folds every row in scope; a checkpoint (``executor.audit.checkpoints``)
is this state after the rows up to a cut, so an audit of a large ledger folds only what came
after it. Both paths run this same code, and every part of the state is either a sum (order
independent, exact in Decimal) or, for PnL, fed fills in (time, trade id) order, which a cut
in time preserves; so the two give the same report (tests/audit/test_checkpoint.py).

Choices that make the state small and mergeable:

* percentiles come from histograms: latencies are whole milliseconds (exact), slippage is
  counted in steps of 0.001 bps (``SLIP_STEP``), so p50/p99 of slippage are exact to that
  step; means are exact (sum / count);
* an order's first-fill latency uses the first fill of that order the ledger received (any
  scope), passed in with the order;
* a per-run group opens with the symbol's inventory (FIFO lots, average cost) as it stood
  when the run's first fill came, so per-run PnL carries what earlier runs left.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any

from executor.core.orders import UNRESOLVED, Side
from executor.core.pnl import PREC, AverageBook, FifoBook, TradeTotals, trade_and_fee
from executor.persistence.records import FillRow, OrderRecord

__all__ = [
    "FOLD_VERSION",
    "OUTCOMES",
    "GroupFold",
    "Hist",
    "LedgerFold",
    "Stats",
    "no_cyclic_gc",
    "order_outcome",
    "percentile",
]



@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """The cyclic garbage collector off meanwhile, restored as it was found. An audit holds
    millions of new rows' tuples, strings and Decimals at once, and each full collection
    walks every one of them (measured: 2x at 100k fills, ~0.3-0.6 s of CPU per report
    process at 1M; bench/RESULTS.md, "#16 cold SQLite report, session 8"). They form no
    cycles; reference counting frees them. A forked worker inherits the setting."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


FOLD_VERSION = 3  # bump when the state's meaning or shape changes: old checkpoints are then ignored
ZERO = Decimal(0)
SLIP_STEP = Decimal("0.001")
_SLIP_SCALE = 3
OUTCOMES = (
    "filled",
    "partly filled",
    "cancelled",
    "expired",
    "rejected",
    "never placed",
    "open",
    "unresolved",
)
_ACCEPTED_OUT = frozenset({"never placed", "rejected", "unresolved"})
_CTX = Context(prec=PREC)
# Slippage totals are summed exactly (each value has PREC digits; a sum of a million of them
# needs a few more): the total is then a plain sum, the same whatever order or grouping the
# values come in, so the set-based report (``executor.audit.setbased``) gets it by adding
# value * count per distinct value. The mean is still total / n at PREC digits.
_EXACT = Context(prec=4 * PREC)


def order_outcome(status: str, executed_qty: Decimal) -> str:
    if status == "FILLED":
        return "filled"
    if status in ("CANCELED", "EXPIRED", "EXPIRED_IN_MATCH"):
        if executed_qty > 0:
            return "partly filled"
        return "cancelled" if status == "CANCELED" else "expired"
    if status == "REJECTED":
        return "rejected"
    if status == "NOT_PLACED":
        return "never placed"
    if status in UNRESOLVED:
        return "unresolved"
    return "open"


def percentile(sorted_values: Sequence[Any], p: float) -> Any:
    """Nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Stats:
    n: int
    mean: Decimal | None
    p50: Any
    p99: Any


# (external, decision bid, decision ask) of a fill's order; None when the order is unknown.
OrderRef = tuple[bool, Decimal | None, Decimal | None]
# price_at(symbol, t): the latest known price of ``symbol`` at or before ``t``, else None.
PriceAt = Callable[[str, int], Decimal | None]


class Hist:
    """Counts per integer key, with the exact sum of the values counted."""

    __slots__ = ("counts", "n", "total")

    def __init__(self, total: Decimal | int = 0) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0
        self.total = total

    def add(self, key: int, value: Decimal | int) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        self.n += 1
        self.total += value

    def add_exact(self, key: int, value: Decimal, count: int = 1) -> None:
        """``count`` values ``value`` under ``key``, the total summed exactly (``_EXACT``)."""
        self.counts[key] = self.counts.get(key, 0) + count
        self.n += count
        self.total = _EXACT.add(self.total, _EXACT.multiply(value, count) if count != 1 else value)

    def stats(self, scale: int = 0) -> Stats:
        """p50/p99 (nearest rank) of the keys as ``key * 10**-scale``; mean = total / n."""
        if not self.n:
            return Stats(0, None, None, None)
        keys = sorted(self.counts)
        ranks = [max(1, math.ceil(p / 100 * self.n)) for p in (50, 99)]
        found: list[Any] = []
        seen = 0
        for k in keys:
            seen += self.counts[k]
            while len(found) < len(ranks) and seen >= ranks[len(found)]:
                found.append(Decimal(k).scaleb(-scale) if scale else k)
        if isinstance(self.total, Decimal):
            mean = _CTX.divide(self.total, self.n)
        else:
            mean = Decimal(self.total) / self.n
        return Stats(self.n, mean, found[0], found[1])

    def state(self) -> list[Any]:
        return [
            str(self.total) if isinstance(self.total, Decimal) else self.total,
            self.n,
            list(self.counts.items()),
        ]

    @classmethod
    def from_state(cls, st: list[Any]) -> Hist:
        total, n, items = st
        h = cls(Decimal(total) if isinstance(total, str) else int(total))
        h.n = int(n)
        h.counts = {int(k): int(c) for k, c in items}
        return h


def _slip(side: Side, price: Decimal, reference: Decimal) -> Decimal:
    """``executor.core.pnl.slippage_bps`` for a positive reference, without a local context per
    call: the same three operations at the same precision, so the same result."""
    c = _CTX
    diff = c.subtract(price, reference) if side is Side.BUY else c.subtract(reference, price)
    return c.multiply(c.divide(diff, reference), 10000)


def _slip_key(value: Decimal) -> int:
    return int(value.scaleb(_SLIP_SCALE).to_integral_value(ROUND_HALF_EVEN))


class GroupFold:
    """Everything the report shows for one symbol in one group ("all" or one run)."""

    __slots__ = (
        "ack",
        "avg",
        "counts",
        "executed",
        "external",
        "fifo",
        "fills",
        "fills_without_side",
        "first_fill",
        "known_quote",
        "maker_n",
        "maker_quote",
        "opened",
        "ordered",
        "orders_total",
        "own_qty",
        "resolved_from_unknown",
        "slip_mid",
        "slip_touch",
        "totals",
    )

    def __init__(self) -> None:
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.orders_total = self.external = self.resolved_from_unknown = 0
        self.ordered = self.executed = ZERO
        self.ack = Hist()
        self.first_fill = Hist()
        self.fills = self.fills_without_side = self.maker_n = 0
        self.maker_quote = self.known_quote = ZERO
        self.slip_mid = Hist(ZERO)
        self.slip_touch = Hist(ZERO)
        self.totals = TradeTotals()
        self.fifo = FifoBook()
        self.avg = AverageBook()
        self.opened = False  # a per-run group takes its opening inventory at its first fill
        # The bot's own position from this group's fills of its own (not external) orders:
        # ``core.positions.fill_delta`` per fill, as the tracker and the risk checks count it.
        self.own_qty = ZERO

    def add_order(self, o: OrderRecord, first_fill_ms: int | None) -> None:
        oc = order_outcome(o.status, o.executed_qty)
        self.counts[oc] += 1
        self.orders_total += 1
        self.external += o.external
        self.resolved_from_unknown += o.resolved_from_unknown
        if o.external:
            return
        if oc not in _ACCEPTED_OUT and o.quantity:
            self.ordered += o.quantity
            self.executed += o.executed_qty
        t0 = o.decision_ms if o.decision_ms is not None else o.created_ms
        if o.acked_ms is not None:
            lat = o.acked_ms - t0
            self.ack.add(lat, lat)
        if first_fill_ms is not None:
            self.add_first_fill(o, first_fill_ms)

    def add_first_fill(self, o: OrderRecord, first_fill_ms: int) -> None:
        """The first fill of an order already folded without one."""
        if not o.external:
            lat = first_fill_ms - (o.decision_ms if o.decision_ms is not None else o.created_ms)
            self.first_fill.add(lat, lat)

    def add_fill(
        self,
        f: FillRow,
        slips: tuple[Decimal | None, Decimal | None] | None,
        dq: Decimal,
        fee_quote: Decimal,
        own: bool = False,
    ) -> None:
        self.fills += 1
        if own and f.side is not None:
            self.own_qty += dq
        if f.side is None:
            self.fills_without_side += 1
            return
        if f.is_maker is not None:
            self.known_quote += f.quote_qty
            if f.is_maker:
                self.maker_quote += f.quote_qty
                self.maker_n += 1
        if slips is not None:
            mid, touch = slips
            if mid is not None:
                self.slip_mid.add_exact(_slip_key(mid), mid)
            if touch is not None:
                self.slip_touch.add_exact(_slip_key(touch), touch)
        self.totals.add(f, fee_quote)  # type: ignore[arg-type]
        self.fifo.apply(dq, f.price)
        self.avg.apply(dq, f.price)

    def add_slippage_groups(self, groups: Iterable[tuple[Any, Any, Any, Any, int]]) -> None:
        """Slippage of ``n`` fills per distinct (BUY?, price, bid, ask) (texts or Decimals):
        what ``add_fill`` adds for each of them, in one loop. The same operations at the same
        precision as ``_slip`` / ``_slip_key`` / ``Hist.add_exact`` (so the same keys and the
        same exact totals), without a call per value: at 430,000 groups the calls were most
        of the time (bench/RESULTS.md, "#16 cold audit, session 6").

        Session 10: a fill whose price text is its touch's text (a taker filled at the quote
        it decided on, a maker joining the best price) has a touch slippage of exactly
        ``Decimal(0)``: ``price - touch`` is a zero with their common exponent, divided by the
        touch it has exponent 0, times 10000 still 0; its key is 0, and adding it leaves the
        exact total as it was (a total is never a negative zero and its exponent is never
        above 0). So that case is counted without the five operations. The key is
        ``round(x)`` (``ROUND_HALF_EVEN`` to an int, as ``_slip_key``) in one call."""
        dec = Decimal
        c = _CTX
        sub, div, mul, add, scaleb = c.subtract, c.divide, c.multiply, c.add, c.scaleb
        xadd, xmul = _EXACT.add, _EXACT.multiply
        mid_h, touch_h = self.slip_mid, self.slip_touch
        mid_counts, touch_counts = mid_h.counts, touch_h.counts
        mid_total, touch_total = mid_h.total, touch_h.total
        mid_n = touch_n = at_touch = 0
        for buy, p, bid, ask, n in groups:
            price = dec(p)
            b = None if bid is None else dec(bid)
            a = None if ask is None else dec(ask)
            if b is not None and a is not None and b > 0 and a > 0:
                ref = div(add(b, a), 2)
                v = mul(div(sub(price, ref) if buy else sub(ref, price), ref), 10000)
                k = round(scaleb(v, _SLIP_SCALE))
                mid_counts[k] = mid_counts.get(k, 0) + n
                mid_n += n
                mid_total = xadd(mid_total, xmul(v, n) if n != 1 else v)
            r = a if buy else b
            if r is not None and r > 0:
                if p.__class__ is str and p == (ask if buy else bid):
                    at_touch += n
                    continue
                v = mul(div(sub(price, r) if buy else sub(r, price), r), 10000)
                k = round(scaleb(v, _SLIP_SCALE))
                touch_counts[k] = touch_counts.get(k, 0) + n
                touch_n += n
                touch_total = xadd(touch_total, xmul(v, n) if n != 1 else v)
        if at_touch:
            touch_counts[0] = touch_counts.get(0, 0) + at_touch
        mid_h.n += mid_n
        mid_h.total = mid_total
        touch_h.n += touch_n + at_touch
        touch_h.total = touch_total

    def add_ordered(self, other: GroupFold) -> None:
        """Take ``other``'s figures of the time-ordered read (the set-based report's worker
        or part, ``executor.audit.setbased``): its books and slippage, which this group has
        not begun, and its own position and fees (base and third-asset), added to this
        group's (quote fees and counts come from the aggregates)."""
        self.avg = other.avg
        self.fifo = other.fifo
        self.slip_mid = other.slip_mid
        self.slip_touch = other.slip_touch
        with localcontext(_CTX):
            self.own_qty += other.own_qty
            self.totals.fees += other.totals.fees

    def open_from(self, other: GroupFold) -> None:
        """Start this group's books with ``other``'s inventory at its cost (FIFO and average)."""
        self.opened = True
        with localcontext(_CTX):
            q, c = other.fifo.position()
            if q:
                self.fifo = FifoBook(q, c / q)
            q, c = other.avg.position()
            if q:
                self.avg = AverageBook(q, c / q)

    def state(self) -> dict[str, Any]:
        return {
            "c": self.counts,
            "o": [
                self.orders_total,
                self.external,
                self.resolved_from_unknown,
                str(self.ordered),
                str(self.executed),
            ],
            "h": [h.state() for h in (self.ack, self.first_fill, self.slip_mid, self.slip_touch)],
            "f": [
                self.fills,
                self.fills_without_side,
                self.maker_n,
                str(self.maker_quote),
                str(self.known_quote),
            ],
            "t": self.totals.state(),
            "fifo": self.fifo.state(),
            "avg": self.avg.state(),
            "opened": self.opened,
            "own": str(self.own_qty),
        }

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> GroupFold:
        g = cls()
        g.counts = {k: int(st["c"][k]) for k in OUTCOMES}
        n, ext, rfu, ordered, executed = st["o"]
        g.orders_total, g.external, g.resolved_from_unknown = int(n), int(ext), int(rfu)
        g.ordered, g.executed = Decimal(ordered), Decimal(executed)
        g.ack, g.first_fill, g.slip_mid, g.slip_touch = (Hist.from_state(h) for h in st["h"])
        fills, wos, mn, mq, kq = st["f"]
        g.fills, g.fills_without_side, g.maker_n = int(fills), int(wos), int(mn)
        g.maker_quote, g.known_quote = Decimal(mq), Decimal(kq)
        g.totals = TradeTotals.from_state(st["t"])
        g.fifo = FifoBook.from_state(st["fifo"])
        g.avg = AverageBook.from_state(st["avg"])
        g.opened = bool(st["opened"])
        g.own_qty = Decimal(st["own"])
        return g


GroupKey = tuple[int | None, str]  # (run id, or None for the whole scope; symbol)


class LedgerFold:
    """The report's state over every group. ``pairs`` maps a symbol to (base, quote);
    ``price_at`` values third-asset fees. ``per_run`` keeps the per-run groups too."""

    def __init__(
        self, pairs: Callable[[str], tuple[str, str]], price_at: PriceAt, per_run: bool = True
    ) -> None:
        self.pairs = pairs
        self.price_at = price_at
        self.per_run = per_run
        self.groups: dict[GroupKey, GroupFold] = {}
        # Fees with no price to value them in quote: symbol -> asset -> amount.
        self.unconverted: dict[str, dict[str, Decimal]] = {}
        self._slip_cache: dict[tuple[int, Decimal, Side], tuple[Decimal | None, Decimal | None]] = {}

    def group(self, run_id: int | None, symbol: str) -> GroupFold:
        g = self.groups.get((run_id, symbol))
        if g is None:
            g = self.groups[(run_id, symbol)] = GroupFold()
            g.opened = run_id is None
        return g

    def add_order(self, o: OrderRecord, first_fill_ms: int | None) -> None:
        self.group(None, o.symbol).add_order(o, first_fill_ms)
        if self.per_run and o.run_id is not None:
            self.group(o.run_id, o.symbol).add_order(o, first_fill_ms)

    def add_first_fill(self, o: OrderRecord, first_fill_ms: int) -> None:
        self.group(None, o.symbol).add_first_fill(o, first_fill_ms)
        if self.per_run and o.run_id is not None:
            self.group(o.run_id, o.symbol).add_first_fill(o, first_fill_ms)

    def add_orders(self, orders: Iterable[OrderRecord], first_fill: dict[int, int]) -> None:
        for o in orders:
            self.add_order(o, first_fill.get(o.id))

    def slippage(self, f: FillRow, ref: OrderRef | None) -> tuple[Decimal | None, Decimal | None] | None:
        """(vs mid, vs touch) in bps of one fill against its order's decision-time quotes."""
        if ref is None or f.side is None or f.order_id is None:
            return None
        key = (f.order_id, f.price, f.side)
        sl = self._slip_cache.get(key)
        if sl is None:
            external, bid, ask = ref
            mid = touch = None
            if not external:
                if bid is not None and ask is not None and bid > 0 and ask > 0:
                    mid = _slip(f.side, f.price, _CTX.divide(_CTX.add(bid, ask), 2))
                r = ask if f.side is Side.BUY else bid
                if r is not None and r > 0:
                    touch = _slip(f.side, f.price, r)
            sl = self._slip_cache[key] = (mid, touch)
        return sl

    def add_fills(
        self,
        fills: Iterable[FillRow],
        refs: Callable[[int], OrderRef | None],
        per_fill: dict[int, Any] | None = None,
    ) -> None:
        """Fold fills (those of a symbol in (time, trade id) order); ``refs`` gives a fill's
        order's decision quotes by order row id; ``per_fill`` collects each fill's slippage."""
        with localcontext(_CTX):
            for f in fills:
                sl = self._add_fill(f, refs(f.order_id) if f.order_id is not None else None)
                if per_fill is not None and sl is not None:
                    per_fill[f.id] = sl

    def _add_fill(self, f: FillRow, ref: OrderRef | None) -> tuple[Decimal | None, Decimal | None] | None:
        # Inside a context of PREC digits (add_fills).
        slips = self.slippage(f, ref)
        dq = fee = ZERO
        if f.side is not None:
            dq, fee = trade_and_fee(f, *self.pairs(f.symbol), self._convert)  # type: ignore[arg-type]
        whole = self.group(None, f.symbol)
        own = ref is not None and not ref[0]  # a fill of one of our orders (not external)
        if self.per_run and f.run_id is not None:
            g = self.group(f.run_id, f.symbol)
            if not g.opened and f.side is not None:
                g.open_from(whole)
            g.add_fill(f, slips, dq, fee, own)
        whole.add_fill(f, slips, dq, fee, own)
        return slips

    def _convert(self, asset: str, amount: Decimal, fill: FillRow) -> Decimal:
        price = self.price_at(asset + self.pairs(fill.symbol)[1], fill.time_ms)
        if price is None:
            per = self.unconverted.setdefault(fill.symbol, {})
            per[asset] = per.get(asset, ZERO) + amount
            return ZERO
        return amount * price

    def state(self) -> dict[str, Any]:
        return {
            "per_run": self.per_run,
            "groups": [[rid, sym, g.state()] for (rid, sym), g in self.groups.items()],
            "unconverted": {s: {a: str(v) for a, v in d.items()} for s, d in self.unconverted.items()},
        }

    @classmethod
    def from_state(
        cls, st: dict[str, Any], pairs: Callable[[str], tuple[str, str]], price_at: PriceAt
    ) -> LedgerFold:
        fold = cls(pairs, price_at, bool(st["per_run"]))
        for rid, sym, g in st["groups"]:
            fold.groups[(rid, sym)] = GroupFold.from_state(g)
        fold.unconverted = {s: {a: Decimal(v) for a, v in d.items()} for s, d in st["unconverted"].items()}
        return fold
