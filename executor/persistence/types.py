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

from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# The conventions as plain functions live in ``values`` (no SQLAlchemy there, so the read-only
# audit formats money and reads the clock without importing it); this module's column types
# use them, and every name is re-exported so callers keep importing them from here.
from executor.persistence.values import (  # noqa: F401 - re-exported
    MAX_PLAIN_DIGITS,
    datetime_from_ms,
    decimal_to_text,
    json_dumps,
    ms_from_datetime,
    now_ms,
    payload_text,
    text_to_decimal,
    to_decimal,
)


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
