"""The ledger's value conventions as plain functions: money as canonical text, JSON with
exact Decimals, UTC epoch milliseconds. The reasons are in ``executor.persistence.types``'
docstring, which holds the column types built on these.

Standard library and orjson only: the read-only audit formats money (``decimal_to_text``) and
reads the clock (``now_ms``) without importing SQLAlchemy (~0.1 s of its start-up on SQLite,
bench/RESULTS.md, "#16 audit start-up and teardown"). ``types`` re-exports every name.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

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
