"""Balances per asset as the ledger holds them, and the account's equity valued at mark."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from executor.core.money import ZERO

__all__ = ["BalanceFigure", "balances", "equity_at_mark"]


@dataclass(frozen=True)
class BalanceFigure:
    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


def balances(rows: Mapping[str, Any] | list[Any]) -> list[BalanceFigure]:
    """Ledger balance rows (``BalanceRecord``-like: asset, free, locked), by asset name; all-zero
    assets are left out."""
    items = rows.values() if isinstance(rows, Mapping) else rows
    out = [BalanceFigure(r.asset, r.free, r.locked) for r in items]
    return sorted((b for b in out if b.free or b.locked), key=lambda b: b.asset)


def equity_at_mark(figures: list[BalanceFigure], marks: Mapping[str, Decimal],
                   quote: str) -> tuple[Decimal, list[str]]:
    """(value of every balance in ``quote``, assets left out for want of a ``<asset><quote>`` mark)."""
    total = ZERO
    unpriced: list[str] = []
    for b in figures:
        if b.asset == quote:
            total += b.total
            continue
        mark = marks.get(f"{b.asset}{quote}")
        if mark is None:
            unpriced.append(b.asset)
        else:
            total += b.total * mark
    return total, unpriced
