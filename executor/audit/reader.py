"""The audit's reader for a ledger on PostgreSQL: the same SQL the SQLite reader runs, through
SQLAlchemy's async engine (asyncpg), for the audit's synchronous code.

The audit is synchronous (a fold over rows). On SQLite it reads with the plain ``sqlite3``
module (``AuditDB``: the SQLite-only fast path). On PostgreSQL this reader is its twin: it
owns an event loop on a background thread with one connection in one ``REPEATABLE READ``,
read-only transaction, so every query of one audit sees one snapshot (what ``BEGIN`` /
``COMMIT`` around a group of reads give on SQLite; here they are no-ops). Statements keep the
``?`` parameters the audit writes; they are bound by position through ``sqlalchemy.text``.

Rows come back as tuples; money (NUMERIC) comes back as ``Decimal`` with the scale it was
stored with.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Coroutine, Iterator, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from executor.persistence.db import create_engine

T = TypeVar("T")
_QMARK = re.compile(r"\?")
_NO_OPS = frozenset({"BEGIN", "COMMIT", "ROLLBACK"})
_TEXT_CACHE: dict[str, sa.TextClause] = {}


def _text(sql: str) -> sa.TextClause:
    clause = _TEXT_CACHE.get(sql)
    if clause is None:
        counter = iter(range(10**6))
        clause = _TEXT_CACHE[sql] = sa.text(_QMARK.sub(lambda _m: f":p{next(counter)}", sql))
    return clause


def _plain(value: Any) -> Any:
    # asyncpg writes whole NUMERICs with trailing zeros as an exponent (60000 -> 6E+4).
    if type(value) is Decimal:
        sign, digits, exp = value.as_tuple()
        if isinstance(exp, int) and exp > 0:
            return Decimal((sign, digits + (0,) * exp, 0))
    return value


class Rows(list[tuple[Any, ...]]):
    """A fetched result with the two cursor methods the audit uses."""

    def fetchone(self) -> tuple[Any, ...] | None:
        return self[0] if self else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self)


class SqlReader:
    """Read-only SQL on a PostgreSQL ledger from synchronous code (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="audit-reader", daemon=True)
        self._thread.start()
        self._engine = create_engine(url)
        self._conn: AsyncConnection | None = None
        try:
            self._conn = self._run(self._open())
        except BaseException:
            self.close()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _open(self) -> AsyncConnection:
        conn = await self._engine.connect()
        await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        await conn.begin()
        return conn

    async def _execute(self, sql: str, params: Sequence[Any]) -> Rows:
        assert self._conn is not None
        res = await self._conn.execute(_text(sql), {f"p{i}": v for i, v in enumerate(params)})
        if not res.returns_rows:
            return Rows()
        return Rows(tuple(_plain(v) for v in r) for r in res)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        head = sql.strip().upper()
        if head in _NO_OPS or head.startswith("PRAGMA"):
            return Rows()
        return self._run(self._execute(sql, params))

    def table_names(self) -> set[str]:
        async def names() -> set[str]:
            assert self._conn is not None
            return set(await self._conn.run_sync(lambda c: sa.inspect(c).get_table_names()))

        return self._run(names())

    def __iter__(self) -> Iterator[Any]:  # pragma: no cover - not a cursor
        raise TypeError("SqlReader is not iterable; call execute()")

    def close(self) -> None:
        async def shutdown() -> None:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None
            await self._engine.dispose()

        if self._thread.is_alive():
            try:
                self._run(shutdown())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=10)
        self._loop.close()
