"""The async SQLite engine: URL checks, connection settings, transactions, sessions.

Every connection gets:

* ``journal_mode=WAL``: readers (the audit, the status display) never block the writer
  and the writer never blocks them; a commit is one append to the WAL.
* ``foreign_keys=ON``: SQLite leaves it off per connection unless asked.
* ``synchronous=NORMAL`` by default. In WAL mode NORMAL never corrupts the database and
  loses nothing when the *process* dies (crash, SIGKILL): a committed transaction is in the
  WAL file and survives. Only an OS crash or power cut can drop the last few commits; the
  ledger recovers fills, balances and order states from the exchange (gap fill from the
  last stored tradeId, order status by client id), but an order intent lost that way would
  come back only as an unexplained order with our prefix. FULL closes that hole with an
  fsync per commit; measured here it takes an order intent from ~0.3 ms to ~0.85 ms p50,
  which the tick-to-order target cannot afford, while batches barely notice it. Choose
  with ``synchronous="FULL"`` or ``?synchronous=full`` on the URL.
* ``busy_timeout``: another process (the audit, ``run.py db``) holding the lock makes us
  wait, not fail.

Transactions: the pysqlite driver's own implicit BEGIN is switched off, and SQLAlchemy's
begin emits ``BEGIN IMMEDIATE`` on connections marked for writing
(``execution_options(sqlite_write=True)``) and a plain deferred ``BEGIN`` otherwise. A
write transaction therefore takes the write lock before its first read, so a
read-modify-write (order status merge) is atomic, and readers stay lock-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from executor.config import ROOT

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


class DatabaseUrlError(ValueError):
    """The database URL cannot be used (wrong driver, in-memory, unreadable)."""


def database_path(url: str | URL, base: Path = ROOT) -> Path:
    """The file behind a ``sqlite+aiosqlite`` URL; a relative path is taken from ``base``
    (the project root), so the bot finds the same file whatever the working directory."""
    u = make_url(url) if isinstance(url, str) else url
    if u.get_backend_name() != "sqlite" or u.get_driver_name() != "aiosqlite":
        raise DatabaseUrlError(
            f"database url must be sqlite+aiosqlite:///PATH, got {u.render_as_string(hide_password=True)!r}"
        )
    db = u.database or ""
    if db in ("", ":memory:") or db.startswith("file::memory:") or u.query.get("mode") == "memory":
        raise DatabaseUrlError("an in-memory database cannot be a ledger; give a file path")
    path = Path(db).expanduser()
    return path if path.is_absolute() else base / path


def _split_url(url: str | URL, base: Path) -> tuple[URL, str | None]:
    u = make_url(url) if isinstance(url, str) else url
    path = database_path(u, base)
    sync = u.query.get("synchronous")
    query = {k: v for k, v in u.query.items() if k != "synchronous"}
    return u.set(database=str(path), query=query), (sync if isinstance(sync, str) else None)


def create_engine(
    url: str | URL,
    *,
    synchronous: str | None = None,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    base: Path = ROOT,
    echo: bool = False,
) -> AsyncEngine:
    """An async engine for the ledger file at ``url``; creates the file's folder."""
    u, url_sync = _split_url(url, base)
    mode = (synchronous or url_sync or "NORMAL").upper()
    if mode not in SYNCHRONOUS_MODES:
        raise DatabaseUrlError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, got {mode!r}")
    assert u.database is not None
    Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(u, echo=echo, connect_args={"timeout": busy_timeout_ms / 1000})
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Turn off pysqlite's own transaction handling; "begin" below issues BEGIN itself.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            row = cur.fetchone()
            if row is None or str(row[0]).lower() != "wal":
                raise DatabaseUrlError(f"could not put {u.database} in WAL mode (got {row!r})")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA synchronous={mode}")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        finally:
            cur.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("sqlite_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """ORM sessions for readers (audit) that prefer models to Core rows.

    Writes to the ledger go through ``executor.persistence.store.Store`` only."""
    return async_sessionmaker(engine, expire_on_commit=False)
