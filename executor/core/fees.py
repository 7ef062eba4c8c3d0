"""The fee model: the account's commission rates per symbol and what a fill will cost.

Pure: rates come from the exchange's ``GET /api/v3/account/commission`` answer (read by the
app at start, ``parse_commission``), never from configuration. As Binance's commission FAQ
describes it, a fill pays, on what it receives, the sum over the standard, tax and special
commission of the role's rate (maker or taker) plus the side's rate (buyer or seller).
The BNB discount is not applied: whether it applies depends on the BNB balance at fill
time, so the model stays on the safe (higher) side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from executor.core.money import ZERO, parse_decimal

__all__ = ["FeeRates", "parse_commission"]

_KINDS = ("standardCommission", "taxCommission", "specialCommission")
_BPS = Decimal(10000)


@dataclass(frozen=True)
class FeeRates:
    """One symbol's commission rates (fractions: 0.001 is 0.1 %), summed over the kinds."""

    symbol: str
    maker: Decimal
    taker: Decimal
    buyer: Decimal = ZERO
    seller: Decimal = ZERO

    def rate(self, *, maker: bool, buy: bool) -> Decimal:
        """The fraction a fill pays on what it receives."""
        return (self.maker if maker else self.taker) + (self.buyer if buy else self.seller)

    def rate_bps(self, *, maker: bool, buy: bool) -> Decimal:
        return self.rate(maker=maker, buy=buy) * _BPS

    def round_trip_bps(self, *, maker: bool) -> Decimal:
        """A buy and a sell of the same role, in basis points of notional."""
        return self.rate_bps(maker=maker, buy=True) + self.rate_bps(maker=maker, buy=False)

    def fee(self, qty: Decimal, price: Decimal, *, maker: bool, buy: bool) -> tuple[Decimal, str]:
        """(amount, "base" or "quote"): a buy pays in the base it receives, a sell in quote."""
        rate = self.rate(maker=maker, buy=buy)
        return (qty * rate, "base") if buy else (qty * price * rate, "quote")


def parse_commission(payload: Mapping[str, Any]) -> FeeRates:
    """``GET /api/v3/account/commission`` (or WS ``account.commission``'s result) -> FeeRates.

    Raises ValueError naming the field when a rate is missing or not a decimal string.
    """
    symbol = payload.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise ValueError("commission: missing symbol")
    totals = dict.fromkeys(("maker", "taker", "buyer", "seller"), ZERO)
    for kind in _KINDS:
        part = payload.get(kind)
        if part is None and kind != "standardCommission":
            continue
        if not isinstance(part, Mapping):
            raise ValueError(f"commission.{kind}: missing")
        for role in totals:
            value = parse_decimal(part.get(role, "0"), f"commission.{kind}.{role}")
            if value < 0:
                raise ValueError(f"commission.{kind}.{role}: negative rate {value}")
            totals[role] += value
    return FeeRates(symbol=symbol, **totals)
