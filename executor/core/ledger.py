"""Pure balance arithmetic: what fills and balance updates do to per-asset totals.

* ``fill_deltas(fill, base, quote)``: BUY +base qty, -quote qty; SELL -base qty, +quote qty;
  and -commission in the commission's asset (which may be base, quote or a third asset).
* ``Ledger``: folds fills (once per ``(venue, symbol, trade_id)``) and other deltas (once per key,
  e.g. a ``BalanceDeltaReport``'s ``(kind, ref)``) into per-asset totals, starting from an opening
  snapshot. Folding is a sum of distinct items, so any order and any duplication give the
  same totals.
* ``compare_balances(expected, actual)``: the per-asset differences (``Discrepancy``).
* ``fill_coverage(stored_fills, cum_qty, cum_quote)``: whether the fills stored for one
  order account for an event's cumulative z/Z; a shortfall means fills are missing (a
  gap: trigger gap fill), an excess means the event is older than what we already have.

Totals are free + locked: trading moves totals, placing and cancelling orders only moves
amounts between free and locked, so totals are what fills explain.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from executor.core.money import ZERO
from executor.core.orders import Side
from executor.core.reports import AssetBalance, BalanceDeltaReport, Fill, Venue

__all__ = [
    "Discrepancy",
    "FillCoverage",
    "Ledger",
    "compare_balances",
    "fill_coverage",
    "fill_deltas",
    "totals_of",
]


def fill_deltas(fill: Fill, base: str, quote: str) -> dict[str, Decimal]:
    """The change in each asset's total balance caused by one fill."""
    sign = 1 if fill.side is Side.BUY else -1
    out: dict[str, Decimal] = {base: sign * fill.qty}
    out[quote] = out.get(quote, ZERO) - sign * fill.quote_qty
    if fill.commission and fill.commission_asset:
        out[fill.commission_asset] = out.get(fill.commission_asset, ZERO) - fill.commission
    return out


@dataclass(frozen=True)
class Discrepancy:
    asset: str
    expected: Decimal
    actual: Decimal

    @property
    def difference(self) -> Decimal:
        """actual - expected."""
        return self.actual - self.expected

    def __str__(self) -> str:
        return f"{self.asset}: expected {self.expected}, actual {self.actual} (diff {self.difference})"


def compare_balances(expected: Mapping[str, Decimal], actual: Mapping[str, Decimal],
                     tolerance: Decimal = ZERO) -> list[Discrepancy]:
    """Assets whose values differ by more than ``tolerance``; an absent asset counts as 0.

    Sorted by asset for stable reports.
    """
    out = []
    for asset in sorted(set(expected) | set(actual)):
        e, a = expected.get(asset, ZERO), actual.get(asset, ZERO)
        if abs(a - e) > tolerance:
            out.append(Discrepancy(asset, e, a))
    return out


def totals_of(balances: Iterable[AssetBalance]) -> dict[str, Decimal]:
    """free + locked per asset, from an account snapshot or an outboundAccountPosition."""
    return {b.asset: b.total for b in balances}


class Ledger:
    """Per-asset totals from an opening snapshot plus distinct fills and deltas.

    ``pairs`` maps each symbol to its ``(base, quote)`` assets (from ``SymbolRules``).
    Mutable accumulator (folding a million fills must stay linear), but pure: no I/O.
    """

    def __init__(self, pairs: Mapping[str, tuple[str, str]],
                 opening: Mapping[str, Decimal] | None = None) -> None:
        self._pairs = dict(pairs)
        self._totals: dict[str, Decimal] = dict(opening or {})
        self._fills: set[tuple[str, int]] = set()
        self._deltas: set[Hashable] = set()

    def _add(self, asset: str, amount: Decimal) -> None:
        self._totals[asset] = self._totals.get(asset, ZERO) + amount

    def apply_fill(self, fill: Fill) -> bool:
        """Fold a fill in; False (and no change) if its ``(symbol, trade_id)`` was seen."""
        if fill.key in self._fills:
            return False
        try:
            base, quote = self._pairs[fill.symbol]
        except KeyError:
            raise ValueError(f"ledger: no base/quote assets known for symbol {fill.symbol!r}") from None
        self._fills.add(fill.key)
        for asset, amount in fill_deltas(fill, base, quote).items():
            self._add(asset, amount)
        return True

    def apply_delta(self, key: Hashable, asset: str, amount: Decimal) -> bool:
        """Fold a non-trade delta once per ``key``; False if the key was seen."""
        if key in self._deltas:
            return False
        self._deltas.add(key)
        self._add(asset, amount)
        return True

    def apply_balance_update(self, update: BalanceDeltaReport) -> bool:
        return self.apply_delta((update.kind, update.ref), update.asset, update.delta)

    def total(self, asset: str) -> Decimal:
        return self._totals.get(asset, ZERO)

    @property
    def totals(self) -> dict[str, Decimal]:
        return dict(self._totals)

    @property
    def fill_count(self) -> int:
        return len(self._fills)

    def has_fill(self, symbol: str, trade_id: int, venue: Venue = Venue.SPOT) -> bool:
        return (venue, symbol, trade_id) in self._fills

    def compare(self, actual: Mapping[str, Decimal], tolerance: Decimal = ZERO) -> list[Discrepancy]:
        """Discrepancies between these totals (expected) and a snapshot's totals (actual)."""
        return compare_balances(self._totals, actual, tolerance)


@dataclass(frozen=True)
class FillCoverage:
    stored_qty: Decimal
    stored_quote: Decimal
    cum_qty: Decimal
    cum_quote: Decimal

    @property
    def missing_qty(self) -> Decimal:
        return max(self.cum_qty - self.stored_qty, ZERO)

    @property
    def missing_quote(self) -> Decimal:
        return max(self.cum_quote - self.stored_quote, ZERO)

    @property
    def has_gap(self) -> bool:
        """The exchange reports more executed than our stored fills explain: fetch trades.

        Decided on quantity only: quote amounts from different sources may be rounded
        differently by the exchange (see ``quote_differs``).
        """
        return self.cum_qty > self.stored_qty

    @property
    def quote_differs(self) -> bool:
        """Quantities agree but quote totals do not: worth a warning, not a gap fill."""
        return self.cum_qty == self.stored_qty and self.cum_quote != self.stored_quote

    @property
    def is_stale(self) -> bool:
        """Our stored fills go beyond this event: it is older than what we have (reordered)."""
        return self.stored_qty > self.cum_qty

    @property
    def is_complete(self) -> bool:
        return self.stored_qty == self.cum_qty and self.stored_quote == self.cum_quote


def fill_coverage(stored_fills: Iterable[Fill], cum_qty: Decimal, cum_quote: Decimal) -> FillCoverage:
    """Compare one order's stored fills (deduplicated by key) with a cumulative z/Z."""
    seen: dict[tuple[str, int], Fill] = {}
    for f in stored_fills:
        seen.setdefault(f.key, f)
    qty = sum((f.qty for f in seen.values()), ZERO)
    quote = sum((f.quote_qty for f in seen.values()), ZERO)
    return FillCoverage(qty, quote, cum_qty, cum_quote)
