"""Running the ledger's SQLAlchemy Core statements on either backend, fast on SQLite.

Every statement of the store and the batch writer is a Core construct (``select``,
``update``, the dialect's own ``insert`` with ``on_conflict_do_nothing`` and
``RETURNING``), built once per shape and kept in a cache. How it is executed depends on
the connection:

* the generic path (PostgreSQL through asyncpg, or SQLite when the shortcut is off):
  ``Connection.execute`` with named parameters, through SQLAlchemy's type layer (Decimal
  to NUMERIC or TEXT, bool to BOOLEAN or 0/1);
* the SQLite shortcut (``fast``): the same Core statement compiled once by the SQLite
  dialect and handed with positional driver values to aiosqlite's ``execute_fetchall`` /
  ``executemany``: one hop to SQLite's thread per statement instead of the adapter
  cursor's three or four (open, execute, fetch, close). At the reconciler's event rates
  each hop waits for a thread switch, which on a busy machine costs more than the
  statement; this is what keeps a batch of 5000 executionReports in budget. Values must
  then already be what the driver stores (``raw_value``), because the type layer is
  skipped.

Both paths run the very same statement text (compiled by the connection's dialect), and
the tests run the store on both (``tests/persistence/test_store.py`` with the shortcut on
and off, and on PostgreSQL when ``BX_TEST_PG_URL`` is set).

Statements take their parameters as ``bindparam("p0") .. bindparam("pN")`` in the order
the caller passes its positional tuple.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.expression import Executable
from sqlalchemy.util import await_

from executor.persistence.types import decimal_to_text

StatementBuilder = Callable[[str], Executable]

_STATEMENTS: dict[tuple[str, Hashable], Executable] = {}
_SQLITE_SQL: dict[Hashable, str] = {}
_COMPILES = [0]  # statements compiled for the SQLite shortcut (``sqlite_compiles``)


def dialect_insert(dialect: str | Dialect, table: sa.Table) -> Any:
    """The dialect's own ``INSERT`` (with ``on_conflict_do_nothing`` / ``_do_update``)."""
    name = dialect if isinstance(dialect, str) else dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise ValueError(f"no upsert for database dialect {name!r}")


def p(i: int, type_: Any = None) -> sa.BindParameter[Any]:
    """The ``i``-th positional parameter of a cached statement (typed where the compiler
    cannot infer it, e.g. the later rows of a multi-row VALUES)."""
    return sa.bindparam(f"p{i}", type_=type_)


def statement(dialect: str, key: Hashable, build: StatementBuilder) -> Executable:
    """The Core statement ``build(dialect)`` makes, built once per (dialect, key)."""
    cache_key = (dialect, key)
    stmt = _STATEMENTS.get(cache_key)
    if stmt is None:
        stmt = _STATEMENTS[cache_key] = build(dialect)
    return stmt


def sqlite_compiles() -> int:
    """How many statements this process has compiled for the SQLite shortcut: each new
    one is a compile inside a write transaction (tests bound it)."""
    return _COMPILES[0]


def sqlite_sql(key: Hashable, build: StatementBuilder) -> str:
    """The SQLite text of a cached statement, its ``:pN`` parameters written as SQLite's
    numbered ``?N+1`` so a positional tuple binds them wherever the compiler put them (an
    UPDATE's SET follows the table's column order, not ours)."""
    sql = _SQLITE_SQL.get(key)
    if sql is None:
        compiled = statement("sqlite", key, build).compile(dialect=_SQLITE_DIALECT)
        stray = [n for n in compiled.params if not _PARAM.fullmatch(":" + n)]
        if stray:
            raise AssertionError(f"statement {key!r}: parameters not named p0..pN: {stray[:5]}")
        sql = _SQLITE_SQL[key] = _PARAM.sub(lambda m: f"?{int(m.group(1)) + 1}", str(compiled))
        _COMPILES[0] += 1
    return sql


_SQLITE_DIALECT = sqlite.dialect(paramstyle="named")
_PARAM = re.compile(r":p(\d+)\b")
_ONE_ROW = re.compile(r"VALUES \((\?\d+(?:, \?\d+)*)\)")


def sqlite_rows_sql(key: Hashable, build_one: StatementBuilder, n: int) -> str:
    """The SQLite text of the single-row INSERT ``build_one`` makes (its row ``p0..pW-1``)
    for ``n`` rows: its ``VALUES`` group repeated, row r's column j bound to ``?r*W+j+1``.

    Written from the one compiled row rather than compiled per row count: SQLAlchemy needed
    up to 60 ms for a 200-row INSERT of 16 columns, inside the write transaction, each time
    a batch of a new size came (bench/RESULTS.md, "#15 two legs, session 8"). Same text as
    the compiler's multi-row VALUES."""
    cache_key = (key, "rows", n)
    sql = _SQLITE_SQL.get(cache_key)
    if sql is None:
        one = sqlite_sql(key, build_one)
        found = list(_ONE_ROW.finditer(one))
        width = len(found[0].group(1).split(", ")) if len(found) == 1 else 0
        if not width or found[0].group(1) != ", ".join(f"?{j + 1}" for j in range(width)):
            raise AssertionError(f"statement {key!r}: not one VALUES row of ?1..?W: {one[:200]}")
        rows = ", ".join("(" + ", ".join(f"?{r * width + j + 1}" for j in range(width)) + ")"
                         for r in range(n))
        m = found[0]
        sql = _SQLITE_SQL[cache_key] = f"{one[:m.start()]}VALUES {rows}{one[m.end():]}"
    return sql


def raw_value(value: Any) -> Any:
    """A value as the SQLite driver stores it (the shortcut skips SQLAlchemy's type layer)."""
    if isinstance(value, Decimal):
        return decimal_to_text(value)
    if isinstance(value, bool):
        return int(value)
    return value


_AS_IS = frozenset({str, int, type(None)})


def _named(params: Sequence[Any]) -> dict[str, Any]:
    return {f"p{i}": v for i, v in enumerate(params)}


def pg_sql(key: Hashable, build: StatementBuilder) -> str:
    """The PostgreSQL text of a cached statement, ``:pN`` written as asyncpg's ``$N+1``."""
    sql = _PG_SQL.get(key)
    if sql is None:
        compiled = statement("postgresql", key, build).compile(dialect=_PG_DIALECT)
        stray = [n for n in compiled.params if not _PARAM.fullmatch(":" + n)]
        if stray:
            raise AssertionError(f"statement {key!r}: parameters not named p0..pN: {stray[:5]}")
        sql = _PG_SQL[key] = _PARAM.sub(lambda m: f"${int(m.group(1)) + 1}", str(compiled))
    return sql


_PG_DIALECT = postgresql.dialect(paramstyle="named")
_PG_SQL: dict[Hashable, str] = {}


def _asyncpg(conn: Any) -> Any:
    """The asyncpg connection under SQLAlchemy's adapter, or None."""
    driver = conn.driver_connection
    ok = driver is not None and hasattr(driver, "fetch") and hasattr(driver, "executemany")
    return driver if ok else None


class Runner:
    """Executes cached Core statements on one sync ``Connection`` (inside ``run_sync``).

    ``shortcut`` says the driver runs the compiled statements directly (see the module
    docstring): aiosqlite on SQLite, asyncpg on PostgreSQL. ``raw`` tells callers which
    values to pass: SQLite driver values (money as canonical text, flags as 0/1) when True,
    Python values (Decimal, bool) otherwise (asyncpg encodes those itself)."""

    def __init__(self, conn: Connection, *, fast: bool = True) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self._aio = self._apg = None
        if fast and self.dialect == "sqlite":
            driver = conn.connection.driver_connection
            # aiosqlite's connection under SQLAlchemy's adapter (see the module docstring).
            self._aio = driver if driver is not None and hasattr(driver, "execute_fetchall") else None
        elif fast and self.dialect == "postgresql":
            self._apg = _asyncpg(conn.connection)
        self.raw = self._aio is not None
        self.shortcut = self._aio is not None or self._apg is not None

    def rows(self, key: Hashable, build: StatementBuilder, params: Sequence[Any]) -> list[Sequence[Any]]:
        """The rows of one statement (empty when it returns none)."""
        if self._aio is not None:
            return await_(self._aio.execute_fetchall(sqlite_sql(key, build), tuple(params)))  # type: ignore[no-any-return]
        if self._apg is not None:
            return await_(self._apg.fetch(pg_sql(key, build), *params))  # type: ignore[no-any-return]
        res = self.conn.execute(statement(self.dialect, key, build), _named(params))
        return [tuple(r) for r in res] if res.returns_rows else []

    def insert_rows(self, key: Hashable, build_one: StatementBuilder, n: int,
                    params: Sequence[Any]) -> list[Sequence[Any]]:
        """SQLite shortcut only: ``build_one``'s single-row INSERT for ``n`` rows of
        ``params`` (``sqlite_rows_sql``), and the rows it returns."""
        if self._aio is None:
            raise RuntimeError("insert_rows runs on the SQLite shortcut only")
        return await_(self._aio.execute_fetchall(sqlite_rows_sql(key, build_one, n), tuple(params)))  # type: ignore[no-any-return]

    def many(self, key: Hashable, build: StatementBuilder, rows: Sequence[Sequence[Any]]) -> None:
        """One statement executed for each parameter tuple of ``rows`` (executemany)."""
        if not rows:
            return
        if self._aio is not None:
            await_(self._aio.executemany(sqlite_sql(key, build), [tuple(r) for r in rows]))
            return
        if self._apg is not None:
            await_(self._apg.executemany(pg_sql(key, build), [tuple(r) for r in rows]))
            return
        self.conn.execute(statement(self.dialect, key, build), [_named(r) for r in rows])


async def sqlite_driver(conn: Any) -> Any | None:
    """The aiosqlite connection under a SQLite ``AsyncConnection`` (None on another backend
    or driver). Reaching it is a greenlet hop (SQLAlchemy's ``get_raw_connection``), so the
    owner of a long-lived connection keeps it (the store's inline order-path connection)."""
    if conn.dialect.name != "sqlite":
        return None
    aio = (await conn.get_raw_connection()).driver_connection
    return aio if aio is not None and hasattr(aio, "execute_fetchall") else None


async def driver_autocommit_rows(
    aio: Any, key: Hashable, build: StatementBuilder, params: Sequence[Any]
) -> list[Sequence[Any]]:
    """``autocommit_rows``'s SQLite shortcut on the aiosqlite connection ``sqlite_driver``
    gave (autocommit mode: the statement is its own transaction)."""
    # Text, integers and NULLs go through as they are (most of an intent's 27 columns);
    # only Decimals and flags need ``raw_value``.
    values = tuple(v if type(v) in _AS_IS else raw_value(v) for v in params)
    return [tuple(r) for r in await aio.execute_fetchall(sqlite_sql(key, build), values)]


async def autocommit_rows(
    conn: Any, key: Hashable, build: StatementBuilder, params: Sequence[Any], *, fast: bool = True
) -> list[Sequence[Any]]:
    """One statement as its own transaction on an ``AsyncConnection`` not in a transaction.

    SQLite shortcut: aiosqlite in autocommit mode, executed and fetched in one hop. Generic
    path: BEGIN, the statement, COMMIT through SQLAlchemy."""
    if conn.dialect.name == "sqlite" and fast:
        aio = await sqlite_driver(conn)
        if aio is not None:
            return await driver_autocommit_rows(aio, key, build, params)
    if conn.dialect.name == "postgresql" and fast:
        apg = _asyncpg(await conn.get_raw_connection())
        if apg is not None:
            # Outside a transaction asyncpg runs the statement as its own (autocommit).
            return [tuple(r) for r in await apg.fetch(pg_sql(key, build), *params)]
    async with conn.begin():
        res = await conn.execute(statement(conn.dialect.name, key, build), _named(params))
        return [tuple(r) for r in res] if res.returns_rows else []


def row_mapping(row: sa.Row[Any]) -> Any:
    """A result row as a read-only mapping of column name to value.

    ``Row._mapping`` is SQLAlchemy's documented public accessor (the underscore only keeps it
    from clashing with a column called ``mapping``); reached here once so the rest of the
    data-access layer stays free of underscored names (ruff SLF001)."""
    return row._mapping  # noqa: SLF001 - public SQLAlchemy API despite the underscore
