"""Open orders and the last fills, from ledger rows."""

from __future__ import annotations

from collections.abc import Iterable

from executor.persistence.records import FillRow, OrderRecord

__all__ = ["last_fills", "open_orders"]


def open_orders(orders: Iterable[OrderRecord], *, ours_only: bool = False) -> list[OrderRecord]:
    """Orders whose outcome is still open (working, or sent and unresolved), newest first."""
    rows = [o for o in orders if not o.is_final and not (ours_only and o.external)]
    return sorted(rows, key=lambda o: o.id, reverse=True)


def last_fills(fills: Iterable[FillRow], limit: int = 50, since_ms: int | None = None) -> list[FillRow]:
    """The newest ``limit`` fills (at or after ``since_ms``), newest first."""
    rows = [f for f in fills if since_ms is None or f.time_ms >= since_ms]
    rows.sort(key=lambda f: (f.time_ms, f.id), reverse=True)
    return rows[:limit]
