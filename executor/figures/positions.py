"""Positions per base asset over ledger fill rows, for the figures (web, status).

The arithmetic is the bot's one definition, ``executor.core.positions`` (a buy adds its qty,
a sell removes it, a commission charged in the base asset is deducted); this module only
adapts the figures' (symbol -> (base, quote)) pairs to it and counts each (symbol, trade id)
once, since the figures may read overlapping pages of rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from executor.core.positions import positions as core_positions
from executor.persistence.records import FillRow

__all__ = ["positions"]


def positions(fills: Iterable[FillRow], pairs: Mapping[str, tuple[str, str]]) -> dict[str, Decimal]:
    """Base asset -> net position from ``fills`` (each (symbol, trade id) once)."""
    seen: set[tuple[str, int]] = set()
    unique = []
    for f in fills:
        if f.key not in seen:
            seen.add(f.key)
            unique.append(f)

    def base_of(symbol: str) -> str | None:
        pair = pairs.get(symbol)
        return pair[0] if pair is not None else None

    return core_positions(unique, base_of)
