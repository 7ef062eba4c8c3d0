"""USDⓈ-M maintenance margin and liquidation price (one-way mode, cross margin), pure.

Binance's rule: a cross-margin account is liquidated when its margin balance (wallet
balance + unrealized PnL of every position) falls below its maintenance margin (the sum
over positions of ``|amount| x mark x maintMarginRatio - cum``, the ratio and ``cum`` from the
position's notional bracket of ``GET /fapi/v1/leverageBracket``).

The liquidation price of one position is the mark at which that happens with every other
position held at its current mark (Binance's published formula):

    LP = (WB - TMM1 + UPNL1 + cum - amount x entry) / (|amount| x MMR - amount)

``WB - TMM1 + UPNL1`` (wallet, less the other positions' maintenance margin, plus their
unrealized PnL) is ``other`` below. A long whose wallet covers the whole fall has no
liquidation price (Binance shows 0): ``liquidation_price`` returns ``None`` then.

``FIRST_BRACKET`` is bracket 1 of the documented ``leverageBracket`` example (initialLeverage
75, notional 0-10000, maintMarginRatio 0.0065, cum 0); the embedded exchange applies it to
every notional and every perpetual (one stated bracket, not Binance's tiered table).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

__all__ = ["FIRST_BRACKET", "Bracket", "PositionRisk", "is_liquidatable", "liquidation_price",
           "maintenance_margin", "margin_balance"]

ZERO = Decimal(0)
_Q8 = Decimal("0.00000001")


@dataclass(frozen=True)
class Bracket:
    """One notional bracket of ``GET /fapi/v1/leverageBracket``."""

    bracket: int
    initial_leverage: int
    notional_floor: Decimal
    notional_cap: Decimal
    maint_margin_ratio: Decimal
    cum: Decimal

    def row(self) -> dict[str, object]:
        """The bracket as Binance writes it (numbers, not strings)."""
        return {"bracket": self.bracket, "initialLeverage": self.initial_leverage,
                "notionalCap": int(self.notional_cap), "notionalFloor": int(self.notional_floor),
                "maintMarginRatio": float(self.maint_margin_ratio), "cum": float(self.cum)}


FIRST_BRACKET = Bracket(1, 75, ZERO, Decimal(10000), Decimal("0.0065"), ZERO)


@dataclass(frozen=True)
class PositionRisk:
    """What the formulas read of one position: signed amount, entry price, current mark."""

    symbol: str
    amount: Decimal
    entry_price: Decimal
    mark: Decimal

    @property
    def unrealized(self) -> Decimal:
        return (self.mark - self.entry_price) * self.amount


def maintenance_margin(amount: Decimal, mark: Decimal, bracket: Bracket = FIRST_BRACKET) -> Decimal:
    if not amount:
        return ZERO
    return abs(amount) * mark * bracket.maint_margin_ratio - bracket.cum


def margin_balance(wallet: Decimal, positions: Iterable[PositionRisk]) -> Decimal:
    return wallet + sum((p.unrealized for p in positions), ZERO)


def is_liquidatable(wallet: Decimal, positions: Iterable[PositionRisk],
                    bracket: Bracket = FIRST_BRACKET) -> bool:
    """Margin balance below the total maintenance margin (an account with no position never is)."""
    held = [p for p in positions if p.amount]
    if not held:
        return False
    maint = sum((maintenance_margin(p.amount, p.mark, bracket) for p in held), ZERO)
    return margin_balance(wallet, held) < maint


def liquidation_price(position: PositionRisk, wallet: Decimal, others: Iterable[PositionRisk] = (),
                      bracket: Bracket = FIRST_BRACKET) -> Decimal | None:
    """The mark at which the account is liquidated through ``position`` (others at their
    marks), to 8 decimals; None for no position or a price at or below zero."""
    amount = position.amount
    if not amount:
        return None
    other = wallet + sum((p.unrealized - maintenance_margin(p.amount, p.mark, bracket)
                          for p in others if p.amount and p.symbol != position.symbol), ZERO)
    denominator = abs(amount) * bracket.maint_margin_ratio - amount
    price = (other + bracket.cum - amount * position.entry_price) / denominator
    if price <= 0:
        return None
    return price.quantize(_Q8, ROUND_HALF_EVEN)
