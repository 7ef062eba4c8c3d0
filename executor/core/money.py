"""Exact money values: parsing wire values into ``Decimal`` and formatting them back.

Binance sends prices and quantities as JSON strings ("0.00100000") and ids/times as
integers. A JSON float has already lost exactness by the time we see it, so a float is an
error here, never silently converted. Parsing is strict ASCII (``Decimal`` itself would
accept "1_000", " 1 " and non-ASCII digits, none of which Binance sends).

Formatting never uses an exponent and never leaves trailing zeros: Binance rejects "1E-5"
and "1E+2", and "0.00100" vs "0.001" must not change a signature or a comparison.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation, localcontext

__all__ = [
    "MAX_DECIMAL_TEXT", "PLAIN_DECIMAL_PATTERN", "ZERO", "exact_mul", "format_decimal", "is_plain_decimal",
    "parse_decimal", "parse_optional_decimal", "require_decimal",
]

ZERO = Decimal(0)

# Plain decimal notation only: optional sign, digits, optional fraction. No exponent,
# no whitespace, no underscores. 60 characters is far beyond any Binance value.
PLAIN_DECIMAL_PATTERN = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DECIMAL_RE = re.compile(PLAIN_DECIMAL_PATTERN, re.ASCII)
MAX_DECIMAL_TEXT = 60
_MAX_LEN = MAX_DECIMAL_TEXT
# ``is_plain_decimal(text)``: truthy iff ``text`` is plain decimal notation (check the
# length against MAX_DECIMAL_TEXT separately). A bound method, for parsers' hot loops:
# ``Decimal(text)`` of such a text is exactly what ``parse_decimal`` returns.
is_plain_decimal: Callable[[str], re.Match[str] | None] = _DECIMAL_RE.fullmatch


def parse_decimal(value: object, field: str) -> Decimal:
    """Parse a wire value (``str`` or ``int``) into a finite ``Decimal``.

    Raises ``ValueError`` naming ``field`` for floats, bools, NaN/Infinity, exponents,
    empty or garbage strings, and any other type.
    """
    # Fast path first: the reconciler parses a dozen of these per executionReport.
    if type(value) is str and len(value) <= _MAX_LEN and is_plain_decimal(value):
        return Decimal(value)
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a decimal string, got a boolean")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        raise ValueError(f"{field}: expected a decimal string, got float {value!r} (floats are inexact)")
    if isinstance(value, Decimal):
        # Internal callers may hand over an already-exact value; still refuse NaN/Inf.
        return require_decimal(value, field)
    if not isinstance(value, str):
        raise ValueError(f"{field}: expected a decimal string, got {type(value).__name__}")
    if len(value) > _MAX_LEN or not _DECIMAL_RE.fullmatch(value):
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise ValueError(f"{field}: not a plain decimal number: {shown!r}")
    try:
        return Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the regex already guarantees validity
        raise ValueError(f"{field}: not a decimal number: {value!r}") from exc


def parse_optional_decimal(value: object, field: str) -> Decimal | None:
    """Like ``parse_decimal`` but ``None`` (JSON null or absent) stays ``None``."""
    return None if value is None else parse_decimal(value, field)


def require_decimal(value: object, field: str) -> Decimal:
    """Check that an in-process value is a finite ``Decimal`` (not a float); return it."""
    if not isinstance(value, Decimal):
        raise ValueError(f"{field}: expected Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{field}: {value} is not a finite number")
    return value


def format_decimal(value: Decimal) -> str:
    """Render a finite ``Decimal`` for the wire: plain notation, no trailing zeros.

    ``Decimal("1E-5")`` -> ``"0.00001"``, ``Decimal("1E+2")`` -> ``"100"``,
    ``Decimal("0.00100000")`` -> ``"0.001"``, ``Decimal("-0")`` -> ``"0"``.
    """
    require_decimal(value, "value")
    if value.is_zero():
        return "0"
    # Not ``normalize()``: it rounds to the context precision (28 digits).
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def exact_mul(a: Decimal, b: Decimal) -> Decimal:
    """``a * b`` without rounding (the default context keeps only 28 digits)."""
    with localcontext() as ctx:
        ctx.prec = len(a.as_tuple().digits) + len(b.as_tuple().digits) + 2
        return a * b
