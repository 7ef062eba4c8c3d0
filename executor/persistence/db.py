"""The async ledger engine: URL checks, connection settings, transactions, sessions.

Two backends, chosen by the URL: ``sqlite+aiosqlite:///PATH`` (the default, one file per
bot) and ``postgresql+asyncpg://USER@HOST/DB`` (one server for a fleet). Everything above
this module speaks SQLAlchemy Core and works on both; what differs is here:

PostgreSQL: READ COMMITTED (the server's default). Inserts are idempotent by
``ON CONFLICT DO NOTHING``, which is atomic against concurrent inserts of the same key at
that level; read-modify-writes (the order status merge, the balance "only newer" check)
read their rows ``SELECT ... FOR UPDATE`` (``lock_rows``), which is the row-level twin of
SQLite's ``BEGIN IMMEDIATE`` below; a deadlock or serialization failure between two writers
is retried by the store (``is_retryable``).

SQLite: every connection gets:

* ``journal_mode=WAL``: readers (the audit, the status display) never block the writer
  and the writer never blocks them; a commit is one append to the WAL.
* ``foreign_keys=ON``: SQLite leaves it off per connection unless asked.
* ``synchronous``: FULL for the real-money profiles (testnet, demo, live:
  ``synchronous_for(profile)``), NORMAL for the embedded exchange. In WAL mode NORMAL never
  corrupts the database and loses nothing when the *process* dies (crash, SIGKILL): a
  committed transaction is in the WAL file and survives. But an OS crash or power cut can
  drop the last few commits, and an order intent recorded before its send could be lost
  while the order itself is on the exchange; FULL fsyncs the WAL at every commit. The order
  path's own commits are the exception: the store runs them on a second connection at
  NORMAL and covers the hole with durably reserved client-id blocks instead (an fsynced
  commit per 64 ids, resolved against the exchange at the next start after an unclean end;
  see ``persistence.store`` and bench/RESULTS.md, "#11/#15 reserved id blocks"). Choose
  explicitly with ``synchronous="FULL"`` or ``?synchronous=full`` on the URL.
* ``busy_timeout``: another process (the audit, ``run.py db``) holding the lock makes us
  wait, not fail.

Inline SQLite (``create_engine(..., inline=True)``): the aiosqlite connection runs each call
on the event loop's own thread instead of handing it to its worker thread
(``InlineConnection``). Same driver, same statements, same transactions; what goes is the
hand-off, two thread switches and a loop wake-up per call. Two users:

* a max-speed replay (a ledger write is 10–30 calls; the lock-step replay waits for every
  write anyway, so a thread buys it nothing);
* a live bot's order path (``persistence.store``): its intent INSERT and SENT mark, single
  autocommit statements at ``synchronous=NORMAL`` (a WAL append, no fsync), on a
  connection that never checkpoints and never blocks on a lock (``busy_timeout=0``: on a
  busy ledger, ``is_sqlite_busy``, the store tries again after a short asynchronous wait). The
  request is held until that commit returns anyway; through the worker thread the same
  commit took 1.0–1.4 ms, the GIL passed back and forth while the loop prepared the request
  (bench/RESULTS.md, "#11/#15 the order path's commit on the loop's thread").

Every other write of a live bot keeps the thread: a batch's fsync must not stall the loop.

Transactions: the pysqlite driver's own implicit BEGIN is switched off, and SQLAlchemy's
begin emits ``BEGIN IMMEDIATE`` on connections marked for writing
(``execution_options(sqlite_write=True)``) and a plain deferred ``BEGIN`` otherwise. A
write transaction therefore takes the write lock before its first read, so a
read-modify-write (order status merge) is atomic, and readers stay lock-free.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.engine.url import URL

from executor.paths import ROOT

# The URL helpers live in ``urls`` (no SQLAlchemy at import, for `audit --db`); they are part
# of this module's interface too, so callers keep importing them from here.
from executor.persistence.urls import (  # noqa: F401 - re-exported
    BACKENDS,
    DatabaseUrlError,
    backend,
    database_path,
    describe_url,
    is_sqlite,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

# sqlalchemy.ext.asyncio (and with it the ORM) is imported by the functions that make an async
# engine, not with this module: `audit` uses only the URL helpers here (~0.1 s of its start-up).

try:  # the SQLite driver; only needed for the inline connection below
    import aiosqlite
    from aiosqlite.core import _STOP_RUNNING_SENTINEL
except ImportError:  # pragma: no cover - aiosqlite is a dependency
    aiosqlite = None  # type: ignore[assignment]

SYNCHRONOUS_MODES = ("NORMAL", "FULL")
DEFAULT_BUSY_TIMEOUT_MS = 10_000
# Page cache per connection (KiB), allocated only as used, and never given back: it fills
# with every page the connection touches until it reaches this size, so it is the bot's
# largest memory growth over a long run (bench/soak.py: RSS +3 MB a simulated day at 64 MiB,
# tracking the ledger's size). 8 MiB holds the indexes' hot right edges (new ids) that
# dedupe lookups and inserts touch; the rest is in the OS cache. The audit (read-only
# sqlite3) sets its own, larger cache. bench/reconcile_throughput.py: same CPU per event.
CACHE_KIB = 8_192
# Checkpoint the WAL into the main file every ~40 MB instead of SQLite's ~4 MB: each
# checkpoint is a copy plus an fsync, and at 10k events/s the default would checkpoint
# several times a second. Crash safety is the same (the WAL is replayed on open).
WAL_AUTOCHECKPOINT_PAGES = 10_000


# Profiles where a lost commit could be a lost record of real (or real-venue) money.
DURABLE_PROFILES = ("testnet", "demo", "live")


def synchronous_for(profile: str) -> str | None:
    """FULL on testnet, demo and live; None (the URL's choice, else NORMAL) on the sim."""
    return "FULL" if profile in DURABLE_PROFILES else None


# SQLSTATEs a PostgreSQL writer may retry: serialization_failure, deadlock_detected.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def is_retryable(exc: BaseException) -> bool:
    """A PostgreSQL error that a fresh attempt of the same transaction can clear."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None), "sqlstate", None)
    return code in RETRYABLE_SQLSTATES


def is_sqlite_busy(exc: BaseException) -> bool:
    """SQLite refused a statement because another connection holds the lock (SQLITE_BUSY /
    SQLITE_LOCKED): nothing of it was done, so it may run again elsewhere."""
    orig = getattr(exc, "orig", exc)
    if not isinstance(orig, sqlite3.OperationalError):
        return False
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(orig)


def _split_url(url: str | URL, base: Path) -> tuple[URL, str | None]:
    u = make_url(url) if isinstance(url, str) else url
    path = database_path(u, base)
    sync = u.query.get("synchronous")
    query = {k: v for k, v in u.query.items() if k != "synchronous"}
    return u.set(database=str(path), query=query), (sync if isinstance(sync, str) else None)


def _mode(synchronous: str | None, url_sync: str | None) -> str:
    mode = (synchronous or url_sync or "NORMAL").upper()
    if mode not in SYNCHRONOUS_MODES:
        raise DatabaseUrlError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, got {mode!r}")
    return mode


def _configure(dbapi_conn: Any, database: str, mode: str, busy_timeout_ms: int) -> None:
    """The ledger's settings on a fresh DB-API connection (see the module docstring)."""
    # Turn off pysqlite's own transaction handling; "begin" issues BEGIN itself.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        row = cur.fetchone()
        if row is None or str(row[0]).lower() != "wal":
            raise DatabaseUrlError(f"could not put {database} in WAL mode (got {row!r})")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA synchronous={mode}")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    finally:
        cur.close()


def _begin(conn: Connection) -> None:
    write = conn.get_execution_options().get("sqlite_write", False)
    # On the DB-API cursor: SQLAlchemy's statement machinery (exec_driver_sql) costs several
    # times the BEGIN itself, on every write transaction.
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    finally:
        cur.close()


class _RunNow:
    """Stands in for aiosqlite's queue to its worker thread: runs each call at once on the
    caller's thread and settles its future (so awaiting it does not even yield)."""

    def put_nowait(self, item: tuple[Any, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller, as the thread does
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(None if result is _STOP_RUNNING_SENTINEL else result)


if aiosqlite is not None:

    class InlineConnection(aiosqlite.Connection):
        """An aiosqlite connection without its thread (see "Inline SQLite" above). Its queue
        (``_tx``) is the one seam SQLAlchemy's adapter and aiosqlite itself both use."""

        def __init__(self, connector: Callable[[], sqlite3.Connection], iter_chunk_size: int = 64) -> None:
            super().__init__(connector, iter_chunk_size)
            self._tx = _RunNow()  # type: ignore[assignment]

        def __await__(self) -> Any:
            return self._connect().__await__()  # no thread to start


def _inline_creator(database: str, busy_timeout_ms: int) -> Callable[[], Any]:
    if aiosqlite is None:  # pragma: no cover
        raise DatabaseUrlError("inline SQLite needs aiosqlite")

    def connector() -> sqlite3.Connection:
        # check_same_thread off as SQLAlchemy sets it for aiosqlite: the pool may close a
        # connection from the garbage collector's thread.
        return sqlite3.connect(database, timeout=busy_timeout_ms / 1000, check_same_thread=False)

    def creator() -> Any:
        return InlineConnection(connector)

    return creator


def create_engine(
    url: str | URL,
    *,
    synchronous: str | None = None,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    base: Path = ROOT,
    echo: bool = False,
    inline: bool = False,
) -> AsyncEngine:
    """An async engine for the ledger at ``url``; for SQLite creates the file's folder.
    ``inline``: SQLite calls run on the event loop's thread (max-speed replays; see above)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    bot_schema(url)  # a bad or misplaced ?bot= is refused here, with one line
    if not is_sqlite(url):
        return _create_pg_engine(url, echo=echo)
    u, url_sync = _split_url(url, base)
    mode = _mode(synchronous, url_sync)
    assert u.database is not None
    database = u.database
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    if inline:
        engine = create_async_engine(u, echo=echo, async_creator=_inline_creator(database, busy_timeout_ms))
    else:
        engine = create_async_engine(u, echo=echo, connect_args={"timeout": busy_timeout_ms / 1000})
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        _configure(dbapi_conn, database, mode, busy_timeout_ms)

    event.listen(sync_engine, "begin", _begin)
    return engine


def create_sync_engine(
    url: str | URL,
    *,
    synchronous: str | None = None,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    base: Path = ROOT,
) -> Engine:
    """A blocking engine on the same file with the same settings, for work that must not
    depend on the event loop (the ledger lease's heartbeat thread). No pooling: each use
    opens its own connection, so any thread may use it. On PostgreSQL: psycopg (the
    asyncpg driver needs an event loop), in the ``?bot=`` schema like the async engine."""
    if not is_sqlite(url):
        pg = make_url(url) if isinstance(url, str) else url
        schema = bot_schema(pg)
        query = {k: v for k, v in pg.query.items() if k not in ("synchronous", "bot")}
        options = {"options": f"-c search_path={schema}"} if schema is not None else {}
        return sa.create_engine(pg.set(drivername="postgresql+psycopg", query=query), poolclass=sa.NullPool,
                                connect_args=options)
    u, url_sync = _split_url(url, base)
    mode = _mode(synchronous, url_sync)
    assert u.database is not None
    database = u.database
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(u.set(drivername="sqlite"), poolclass=sa.NullPool,
                              connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        _configure(dbapi_conn, database, mode, busy_timeout_ms)

    event.listen(engine, "begin", _begin)
    return engine


_BOT_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
BOT_SCHEMA_PREFIX = "bot_"


def bot_schema(url: str | URL) -> str | None:
    """The PostgreSQL schema of the bot a URL names with ``?bot=NAME`` (``bot_NAME``), or None.

    A fleet: many bots share one PostgreSQL database, each in its own schema, so each has
    its own ledger tables, migrations (``alembic_version``), lease and audit, and no bot can
    read or overwrite another's rows by mistake. Without ``bot`` the ledger is in the
    server's default schema (``public``)."""
    u = make_url(url) if isinstance(url, str) else url
    name = u.query.get("bot")
    if name is None:
        return None
    if not isinstance(name, str) or not _BOT_NAME.fullmatch(name):
        raise DatabaseUrlError(
            f"bot name {name!r}: use 1-40 lower-case letters, digits and _ (starting with a letter)"
        )
    if u.get_backend_name() != "postgresql":
        raise DatabaseUrlError("?bot=NAME is for PostgreSQL ledgers (a SQLite ledger is one bot's file)")
    return BOT_SCHEMA_PREFIX + name


def with_bot(url: str, name: str) -> str:
    """``url`` with ``?bot=NAME`` set (checked like ``bot_schema``)."""
    u = make_url(url).update_query_dict({"bot": name})
    bot_schema(u)
    return u.render_as_string(hide_password=False)


def _create_pg_engine(url: str | URL, *, echo: bool) -> AsyncEngine:
    from sqlalchemy.ext.asyncio import create_async_engine

    u = make_url(url) if isinstance(url, str) else url
    schema = bot_schema(u)
    # ``synchronous`` is SQLite's knob; PostgreSQL commits durably (synchronous_commit=on)
    # by default, so the URL option is accepted and dropped. ``bot`` becomes the search path.
    query = {k: v for k, v in u.query.items() if k not in ("synchronous", "bot")}
    connect_args: dict[str, Any] = {}
    if schema is not None:
        connect_args["server_settings"] = {"search_path": schema}
    return create_async_engine(u.set(query=query), echo=echo, pool_pre_ping=False, connect_args=connect_args)


def lock_rows(stmt: Any) -> Any:
    """``SELECT ... FOR UPDATE``: on PostgreSQL it locks the rows a read-modify-write reads
    until commit; SQLite's compiler leaves it out (its writer already holds the database
    lock from ``BEGIN IMMEDIATE``)."""
    return stmt.with_for_update()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """ORM sessions for readers (audit) that prefer models to Core rows.

    Writes to the ledger go through ``executor.persistence.store.Store`` only."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    return async_sessionmaker(engine, expire_on_commit=False)
