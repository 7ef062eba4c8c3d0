"""Column types and the time convention of the ledger.

Money: ``DecimalText`` stores a ``Decimal`` and gives back an identical ``Decimal``. A float
is refused at the door: by the time a value is a float its exact decimal value is already
gone. The storage depends on the database:

* PostgreSQL: unconstrained ``NUMERIC`` (no precision or scale given), which keeps every
  digit and the scale it was given (``0.00100000`` comes back as ``0.00100000``), up to
  16383 fractional digits: exact for anything an exchange sends, and summable in SQL. Two
  things NUMERIC cannot say come back as the equal value in its own form: a positive
  exponent (``1E+3`` reads back ``1000``) and negative zero (reads back ``0``).
* SQLite: TEXT (SQLite's NUMERIC/REAL affinity would round through a double), which
  round-trips exactly (same value, same exponent, same sign of zero). The stored text is
  canonical:

* exponent in ``[-MAX_PLAIN_DIGITS, 0]``: plain positional notation, exactly the digits the
  exchange sent (``"0.00100000"``), so a row reads like the wire payload in ``sqlite3``;
* anything else (``1E+3``, ``1E-60``): Python's scientific string, still lossless, and
  bounded in length whatever the exponent.

Time: every timestamp is an INTEGER column named ``*_ms`` holding UTC epoch
milliseconds, the unit Binance uses for ``E``/``T``/``transactTime``. Integers sort, index
and compare cheaply, and there is no time zone to get wrong.

JSON: ``JsonText`` stores structured values (discrepancies, counts) as TEXT via orjson,
writing Decimals as strings so they stay exact.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Positional text is used down to this many fractional digits; Binance sends at most 8-18.
MAX_PLAIN_DIGITS = 30
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_decimal(value: Decimal | int | str) -> Decimal:
    """Parse ``value`` into a finite Decimal; floats and junk get a clear error."""
    if isinstance(value, Decimal):
        dec = value
    elif isinstance(value, bool | float):
        raise TypeError(f"money must be Decimal, int or str, never {type(value).__name__}: {value!r}")
    elif isinstance(value, int):
        dec = Decimal(value)
    elif isinstance(value, str):
        try:
            dec = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a decimal number: {value!r}") from None
    else:
        raise TypeError(f"money must be Decimal, int or str, got {type(value).__name__}: {value!r}")
    if not dec.is_finite():
        raise ValueError(f"money must be finite, got {dec}")
    return dec


def decimal_to_text(value: Decimal | int | str) -> str:
    """The canonical stored text of a decimal (see the module docstring)."""
    dec = to_decimal(value)
    text = str(dec)
    if "E" not in text:
        # Python writes exponent <= 0 with adjusted exponent >= -6 positionally already:
        # the common case for exchange values, and the hot path of the batch writer.
        return text
    exp = dec.as_tuple().exponent
    assert isinstance(exp, int)  # finite, checked above
    if -MAX_PLAIN_DIGITS <= exp <= 0:
        return format(dec, "f")
    return text


def text_to_decimal(text: str) -> Decimal:
    return Decimal(text)


class DecimalText(TypeDecorator[Decimal]):
    """A Decimal column: canonical TEXT on SQLite, NUMERIC on PostgreSQL (module docstring)."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            # asdecimal: the driver hands back Decimal, never float.
            return dialect.type_descriptor(sa.Numeric(asdecimal=True))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return to_decimal(value)
        return decimal_to_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if type(value) is not Decimal:
            return Decimal(value)
        sign, digits, exp = value.as_tuple()
        if isinstance(exp, int) and exp > 0:
            # asyncpg's binary NUMERIC decoder writes whole numbers with trailing zeros as
            # an exponent (60000 -> 6E+4); NUMERIC itself has no positive exponents, so the
            # plain integer is what was stored.
            return Decimal((sign, digits + (0,) * exp, 0))
        return value

    @property
    def python_type(self) -> type:
        return Decimal


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return decimal_to_text(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"cannot store {type(obj).__name__} as JSON")


def json_dumps(value: Any) -> str:
    """orjson with Decimals written as exact strings; keys sorted so equal values compare equal."""
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_SORT_KEYS).decode()


def payload_text(payload: Any) -> str:
    """A raw payload as stored: text and bytes are kept verbatim, anything else is JSON."""
    if isinstance(payload, str):
        return payload
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload).decode()
    return json_dumps(payload)


class JsonText(TypeDecorator[Any]):
    """Structured values (lists, dicts) stored as JSON text."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return json_dumps(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return orjson.loads(value)


def now_ms() -> int:
    """Wall-clock UTC epoch milliseconds (the store's default clock)."""
    return time.time_ns() // 1_000_000


def ms_from_datetime(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: give a time zone (UTC) so the instant is unambiguous")
    # Integer arithmetic on the timedelta: float timestamps can be off by one millisecond.
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def datetime_from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)
