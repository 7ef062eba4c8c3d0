"""Positions per base asset from our fills, net of base-asset commissions.

A BUY of q with a fee f in the base asset adds q - f; a SELL of q with fee f removes q + f
(the fee is taken from what we hold). Fees in any other asset leave the base position alone.

Note for the lead: the branch ``ledger-positions`` adds ``executor/core/positions.py`` with
the same definition; this minimal one is here so the web figures do not wait for it. Unify
them (keep one) when both are merged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from executor.core.money import ZERO
from executor.core.orders import Side
from executor.persistence.records import FillRow

__all__ = ["positions"]


def positions(fills: Iterable[FillRow], pairs: Mapping[str, tuple[str, str]]) -> dict[str, Decimal]:
    """Base asset -> net position from ``fills`` (each (symbol, trade id) once)."""
    out: dict[str, Decimal] = {}
    seen: set[tuple[str, int]] = set()
    for f in fills:
        if f.side is None or f.symbol not in pairs or f.key in seen:
            continue
        seen.add(f.key)
        base = pairs[f.symbol][0]
        fee = f.commission if f.commission_asset == base else ZERO
        change = f.qty - fee if f.side is Side.BUY else -(f.qty + fee)
        out[base] = out.get(base, ZERO) + change
    return out
