"""How the audit writes numbers: plainly, for reading (display only; nothing is computed
from these texts). Never exponent notation (``0E+16``), never 50 digits of a mean.

* ``amount``: a quote amount to fixed places with thousands separators (``1,234.5000``);
* ``quantity``: a base quantity or price, up to 8 places, trailing zeros dropped;
* ``pct``: a ratio as a percentage to one place;
* ``plain``: a Decimal as positional text for JSON/CSV, exact up to ``PLAIN_PLACES`` places
  (ledger values have at most 8, so they stay exact; derived ratios and means are cut).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

__all__ = ["PLAIN_PLACES", "amount", "pct", "plain", "quantity"]

PLAIN_PLACES = 12


def amount(value: Decimal | None, places: int = 4, *, sign: bool = False) -> str:
    if value is None:
        return "-"
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    if not q:
        q = abs(q)  # never "-0.0000"
    return f"{q:+,f}" if sign and q else f"{q:,f}"


def quantity(value: Decimal | None, places: int = 8) -> str:
    if value is None:
        return "-"
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN).normalize()
    text = format(q, "f")
    return "0" if text in ("-0", "0") else text


def pct(value: Decimal | None) -> str:
    return "-" if value is None else amount(value * 100, 1) + "%"


def plain(value: Decimal) -> str:
    if not value.is_finite():
        return str(value)
    exp = value.as_tuple().exponent
    if isinstance(exp, int) and exp < -PLAIN_PLACES:
        value = value.quantize(Decimal(1).scaleb(-PLAIN_PLACES), rounding=ROUND_HALF_EVEN).normalize()
    text = format(value, "f")
    return "0" if text in ("-0", "0") else text
