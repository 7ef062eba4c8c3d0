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

Other connections can read the same snapshot: helper connections of this reader
(``concurrently`` / ``submit``), or a reader in another process (``share`` exports the
snapshot, ``SqlReader.joined`` imports it: the report's forked worker).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from executor.persistence.db import create_engine

T = TypeVar("T")
_QMARK = re.compile(r"\?")
_MAIN = re.compile(r"\bmain\.")
_NO_OPS = frozenset({"BEGIN", "COMMIT", "ROLLBACK"})
_TEXT_CACHE: dict[str, sa.TextClause] = {}
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f-]+")


def _text(sql: str) -> sa.TextClause:
    clause = _TEXT_CACHE.get(sql)
    if clause is None:
        counter = iter(range(10**6))
        clause = _TEXT_CACHE[sql] = sa.text(_QMARK.sub(lambda _m: f":p{next(counter)}", sql))
    return clause


def _numbered(sql: str) -> str:
    """``?`` parameters as asyncpg's ``$1``, ``$2`` ..."""
    counter = iter(range(1, 10**6))
    return _QMARK.sub(lambda _m: f"${next(counter)}", sql)


def _plain(value: Any) -> Any:
    # asyncpg writes whole NUMERICs with trailing zeros as an exponent (60000 -> 6E+4).
    if type(value) is Decimal:
        sign, digits, exp = value.as_tuple()
        if isinstance(exp, int) and exp > 0:
            return Decimal((sign, digits + (0,) * exp, 0))
    return value


class Rows(list[tuple[Any, ...]]):
    """A fetched result that reads like a ``sqlite3`` cursor: an iterator over its rows
    (``next``, ``for``), ``fetchone`` (the next row or None) and ``fetchall`` (the rest)."""

    _pos = 0

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self

    def __next__(self) -> tuple[Any, ...]:
        if self._pos >= len(self):
            raise StopIteration
        self._pos += 1
        return self[self._pos - 1]

    def fetchone(self) -> tuple[Any, ...] | None:
        return next(self, None)

    def fetchall(self) -> list[tuple[Any, ...]]:
        rest = self[self._pos :]
        self._pos = len(self)
        return rest


@dataclass(frozen=True)
class SharedSnapshot:
    """What another process needs to read exactly what one reader reads (``SqlReader.share``,
    ``SqlReader.joined``): the ledger's URL (with its password: never printed), whether
    ``fills`` is the spot-only view, and the snapshot PostgreSQL exported for it."""

    url: str
    spot_fills: bool
    snapshot: str

    def __repr__(self) -> str:  # no password in a traceback or a log line
        return f"SharedSnapshot(snapshot={self.snapshot!r})"


class SqlReader:
    """SQL on a PostgreSQL ledger from synchronous code (see the module docstring).

    Read-only by default. With ``readonly=False`` it is the checkpoint writer (the twin of
    the ``sqlite3`` writer connection): READ COMMITTED, and ``with writer:`` commits what ran
    inside it (rolls back on an exception), as a ``sqlite3`` connection does."""

    # At most this many helper connections (``submit`` waits for a free one): the machines
    # this runs on have a few cores, and each connection is a backend process.
    max_helpers = 2

    def __init__(
        self, url: str, *, readonly: bool = True, spot_fills: bool = False, snapshot: str | None = None
    ) -> None:
        if snapshot is not None and not readonly:
            raise ValueError("a snapshot is joined by read-only readers only")
        self.readonly = readonly
        self.spot_fills = spot_fills
        self._main = "main."  # what ``main.`` (SQLite's name for the ledger) reads as here
        self._schema: str | None = None  # the ledger's schema, once a temporary one comes first
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="audit-reader", daemon=True)
        self._thread.start()
        self._url = url
        self._engine = create_engine(url)
        self._conn: AsyncConnection | None = None
        # ``concurrently``'s connections, in the snapshot exported from ``_conn``.
        self._helpers: list[AsyncConnection] = []
        self._free: list[AsyncConnection] = []  # helpers not running a ``submit`` now
        self._freed: asyncio.Event | None = None  # set when a helper is freed (made on the loop)
        self._snapshot: str | None = None
        try:
            self._conn = self._run(self._open(snapshot))
        except BaseException:
            self.close()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _open(self, snapshot: str | None = None) -> AsyncConnection:
        conn = await self._engine.connect()
        if self.spot_fills:
            # USD-M futures fills (symbols "UM:...") never move a spot balance: as on SQLite
            # (``AuditDB``), the audit reads ``fills`` through a session-only view without
            # them. Created before the read-only snapshot begins (no CREATE inside one); a
            # temporary view comes first in the search path, ahead of the ledger's table.
            schema = (await conn.execute(sa.text("SELECT current_schema()"))).scalar()
            found = (await conn.execute(sa.text("SELECT to_regclass('fills')"))).scalar()
            if schema is not None and found is not None:
                # The audit names the table itself ``main.fills`` (SQLite's schema name).
                self._schema = str(schema)
                self._main = '"' + self._schema.replace('"', '""') + '".'
                spot = f"SELECT * FROM {self._main}fills WHERE symbol NOT LIKE 'UM:%'"
                await conn.execute(sa.text(f"CREATE TEMP VIEW fills AS {spot}"))
            await conn.commit()
        if self.readonly:
            await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        await conn.begin()
        if snapshot is not None:
            # A helper connection (``concurrently``), or a reader of another process
            # (``joined``): the exporting connection's snapshot, so that every connection
            # of one audit reads the same rows. Must be the transaction's
            # first statement; the id is PostgreSQL's own (hex digits and dashes).
            if not _SNAPSHOT_ID.fullmatch(snapshot):
                raise ValueError(f"unexpected snapshot id {snapshot!r}")
            await conn.execute(sa.text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
        return conn

    async def _end(self, commit: bool) -> None:
        assert self._conn is not None
        if commit:
            await self._conn.commit()
        else:
            await self._conn.rollback()
        await self._conn.begin()

    def __enter__(self) -> SqlReader:
        return self

    def __exit__(self, exc_type: object, *_exc: object) -> None:
        self._run(self._end(commit=exc_type is None))

    async def _execute(self, sql: str, params: Sequence[Any]) -> Rows:
        assert self._conn is not None
        res = await self._conn.execute(_text(sql), {f"p{i}": v for i, v in enumerate(params)})
        if not res.returns_rows:
            return Rows()
        return Rows(tuple(_plain(v) for v in r) for r in res)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        head = sql.strip().upper()
        if head.startswith("PRAGMA") or (self.readonly and head in _NO_OPS):
            return Rows()  # the reader's snapshot is its one transaction
        if head in _NO_OPS:
            self._run(self._end(commit=head == "COMMIT"))
            return Rows()
        if self._main != "main.":
            sql = _MAIN.sub(self._main, sql)
        return self._run(self._execute(sql, params))

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        assert self._conn is not None
        raw = await self._conn.get_raw_connection()
        counter = iter(range(1, 10**6))
        numbered = _QMARK.sub(lambda _m: f"${next(counter)}", sql)
        # asyncpg itself, on this connection and in its snapshot: three times faster than
        # going through SQLAlchemy's result rows at a million rows.
        return list(await raw.driver_connection.fetch(numbered, *params))

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a SELECT as the driver gives them (records that unpack like tuples; no
        ``main.`` rewrite, no positive-exponent clean-up: a caller that only computes with
        the values needs neither): the fast way to read a million rows."""
        return self._run(self._rows(sql, params))

    async def _copy(self, sql: str, params: Sequence[Any]) -> bytes:
        assert self._conn is not None
        raw = await self._conn.get_raw_connection()
        chunks: list[bytes] = []

        async def sink(chunk: bytes) -> None:
            chunks.append(chunk)

        copy = raw.driver_connection.copy_from_query
        await copy(_numbered(sql), *params, output=sink, format="text", null="")
        return b"".join(chunks)

    def columns(self, sql: str, params: Sequence[Any], width: int) -> list[list[str]] | None:
        """The ``width`` columns of a SELECT of text columns, each a list of its values as
        text ('' for NULL: a caller whose columns are never '' only), read by ``COPY (...) TO
        STDOUT`` and split with a few C-level string operations: at 500,000 rows of five
        columns ~0.37 s of CPU against ~0.65-1.1 s for ``rows`` and taking the columns apart
        (bench/RESULTS.md, session 8). None when a value needed COPY's escaping (a backslash,
        tab, newline or other control character in it: the output has a backslash): the
        caller then uses ``rows``. No ``main.`` rewrite (as ``rows``)."""
        data = self._run(self._copy(sql, params)).decode()
        if "\\" in data:
            return None
        fields = data.replace("\t", "\n").split("\n")
        fields.pop()  # after the last row's newline (or the one empty field of no rows)
        return [fields[i::width] for i in range(width)]

    def concurrently(
        self, calls: Sequence[tuple[str, Sequence[Any]]], *, setup: Sequence[str] = (), raw: bool = False
    ) -> list[Any]:
        """Run each ``(sql, params)`` of ``calls`` at the same time, each on its own
        connection, and return their results in order (``Rows``, or with ``raw`` the driver's
        records, as ``rows`` gives them). The first runs on this reader's connection, the
        others on helper connections (``submit``). PostgreSQL runs each connection in a
        backend process of its own, so two heavy statements use two cores while this process
        waits. ``setup`` (``SET LOCAL ...``) runs on each connection first."""
        calls = list(calls)
        later = [self.submit([call], setup=setup, raw=raw) for call in calls[1:]]
        first = self._run(self._calls(self._conn, calls[:1], list(setup), [raw]))
        return [*first, *(f.result()[0] for f in later)]

    def submit(
        self,
        calls: Sequence[tuple[str, Sequence[Any]]],
        *,
        setup: Sequence[str] = (),
        raw: bool | Sequence[bool] = False,
    ) -> concurrent.futures.Future[list[Any]]:
        """Start ``calls`` (each ``(sql, params)``, in turn) on a helper connection and return
        at once: a future of their results (as ``concurrently`` gives them). Helpers are opened
        when none is free and kept until ``close``; each reads in this reader's snapshot
        (``pg_export_snapshot``, then ``SET TRANSACTION SNAPSHOT``), so every call reads
        exactly what ``execute`` reads. Read-only readers only (the writer has no snapshot
        worth sharing). While it runs, this reader's own connection stays free. ``raw`` may
        be one flag per call."""
        if not self.readonly:
            raise ValueError("submit: read-only readers only")
        self._export()
        flags = [raw] * len(calls) if isinstance(raw, bool) else list(raw)
        return asyncio.run_coroutine_threadsafe(self._on_helper(list(calls), list(setup), flags), self._loop)

    def _export(self) -> str:
        if self._snapshot is None:
            # On this reader's connection, before anything else can use it concurrently.
            self._snapshot = str(self._run(self._scalar("SELECT pg_export_snapshot()")))
        return self._snapshot

    def share(self) -> SharedSnapshot:
        """This reader's snapshot, exported for a reader in another process (``joined``):
        valid while this reader is open (PostgreSQL keeps an exported snapshot as long as
        the exporting transaction). Read-only readers only."""
        if not self.readonly:
            raise ValueError("share: read-only readers only")
        return SharedSnapshot(self._url, self.spot_fills, self._export())

    @classmethod
    def joined(cls, shared: SharedSnapshot) -> SqlReader:
        """A reader of its own (own connection, own event loop; e.g. in a forked worker) that
        reads exactly what the sharing reader reads: its snapshot, imported by
        ``SET TRANSACTION SNAPSHOT`` at the start of this reader's transaction."""
        return cls(shared.url, spot_fills=shared.spot_fills, snapshot=shared.snapshot)

    async def _scalar(self, sql: str) -> Any:
        assert self._conn is not None
        return (await self._conn.execute(sa.text(sql))).scalar()

    async def _on_helper(
        self, calls: list[tuple[str, Sequence[Any]]], setup: list[str], raw: list[bool]
    ) -> list[Any]:
        if self._freed is None:
            self._freed = asyncio.Event()
        while not self._free and len(self._helpers) >= self.max_helpers:
            self._freed.clear()
            await self._freed.wait()
        if self._free:
            conn = self._free.pop()
        else:
            conn = await self._open(self._snapshot)
            self._helpers.append(conn)
        try:
            return await self._calls(conn, calls, setup, raw)
        finally:
            self._free.append(conn)
            self._freed.set()

    async def _calls(
        self, conn: AsyncConnection | None, calls: list[tuple[str, Sequence[Any]]], setup: list[str],
        raw: list[bool],
    ) -> list[Any]:
        assert conn is not None
        for stmt in setup:
            await conn.execute(sa.text(stmt))
        out: list[Any] = []
        for (sql, params), as_records in zip(calls, raw, strict=True):
            if self._main != "main.":
                sql = _MAIN.sub(self._main, sql)
            if as_records:
                raw_conn = await conn.get_raw_connection()
                out.append(list(await raw_conn.driver_connection.fetch(_numbered(sql), *params)))
                continue
            res = await conn.execute(_text(sql), {f"p{i}": v for i, v in enumerate(params)})
            out.append(Rows(tuple(_plain(v) for v in r) for r in res) if res.returns_rows else Rows())
        return out

    def table_names(self) -> set[str]:
        async def names() -> set[str]:
            assert self._conn is not None
            schema = self._schema
            return set(await self._conn.run_sync(lambda c: sa.inspect(c).get_table_names(schema=schema)))

        return self._run(names())

    def close(self) -> None:
        async def shutdown() -> None:
            for helper in self._helpers:
                await helper.close()
            self._helpers.clear()
            self._free.clear()
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
