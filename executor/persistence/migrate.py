"""Alembic, driven from code: upgrade on start, refuse newer databases, ``run.py db``.

No ``alembic.ini`` is read at runtime: the Alembic config is built here and points at the
``migrations/`` folder of this checkout. Migrations run inside one ``BEGIN IMMEDIATE``
transaction on a connection with the ledger's settings (SQLite DDL is transactional, so a
failed upgrade leaves the database as it was).

A database whose revision this code does not know was written by a newer version of the
program; running old code on it could silently misread or corrupt the ledger, so it is
refused with ``SchemaTooNewError``. A database with tables but no Alembic version was not
made by the migrations and is refused with ``SchemaUnmanagedError``.
"""

from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from executor.paths import ROOT
from executor.persistence.urls import DatabaseUrlError, database_path, describe_url, is_sqlite

if TYPE_CHECKING:
    import asyncio

    from alembic.config import Config as AlembicConfig
    from sqlalchemy.engine import URL, Connection

    from executor.config import Config

# alembic, SQLAlchemy (with ``persistence.db``'s engine) and asyncio are imported where they
# are used, not with this module: `audit` imports this module only for ``unknown_revisions``
# (plain sqlite3; alembic ~0.1 s and SQLAlchemy ~0.1 s of its start-up, bench/RESULTS.md,
# issue 16 and "#16 audit start-up and teardown").

MIGRATIONS_DIR = ROOT / "migrations"
EXIT_DB_ERROR = 5  # README "Exit codes": the ledger cannot be used


class SchemaError(RuntimeError):
    """The database's schema cannot be used by this version of the program."""


class SchemaTooNewError(SchemaError):
    """The database was migrated by a newer version of the program."""


class SchemaUnmanagedError(SchemaError):
    """The database has tables but no Alembic version: it was not made by our migrations."""


@dataclass(frozen=True)
class SchemaState:
    path: Path | str  # the file of a SQLite ledger, the password-free URL of a PostgreSQL one
    current: tuple[str, ...]  # empty for a fresh database
    head: str
    previous: tuple[str, ...] | None = None  # before an upgrade; None when nothing ran

    @property
    def at_head(self) -> bool:
        return self.current == (self.head,)


def alembic_config(url: str | URL | None = None) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # '%' is interpolation syntax in Alembic's config parser.
        rendered = url if isinstance(url, str) else url.render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise SchemaError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def _current(conn: Connection) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    return tuple(MigrationContext.configure(conn).get_current_heads())


def _where(url: str | URL) -> Path | str:
    return database_path(url) if is_sqlite(url) else describe_url(url)


def _check(conn: Connection, path: Path | str) -> SchemaState:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    assert head is not None
    current = _current(conn)
    known = {rev.revision for rev in script.walk_revisions()}
    unknown = [rev for rev in current if rev not in known]
    if unknown:
        raise SchemaTooNewError(
            f"database {path} is at schema revision {', '.join(unknown)}, which this version of "
            f"binance-executor does not know (it knows revisions up to {head}). It was written by a "
            "newer version: run that version, or point [database] url at another file. "
            "Nothing was changed."
        )
    if not current:
        import sqlalchemy as sa

        tables = set(sa.inspect(conn).get_table_names()) - {"alembic_version"}
        if tables:
            raise SchemaUnmanagedError(
                f"database {path} has tables ({', '.join(sorted(tables)[:5])}) but no schema version: "
                "it was not created by `run.py db upgrade`. Move it aside and start a new one."
            )
    return SchemaState(path=path, current=current, head=head)


def _upgrade(conn: Connection, path: Path | str, schema: str | None = None) -> SchemaState:
    import sqlalchemy as sa
    from alembic import command

    if schema is not None:
        # A fleet bot's ledger lives in its own schema (``db.bot_schema``), made on first use.
        conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
    state = _check(conn, path)
    if not state.at_head:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        return SchemaState(path=path, current=_current(conn), head=state.head, previous=state.current)
    return state


def unknown_revisions(path: Path) -> tuple[str, ...]:
    """The schema revisions of the ledger file at ``path`` that this version does not know
    (empty: none, or no such file / no version table). Opens it read-only, writes nothing."""
    import sqlite3

    if not path.is_file():
        return ()
    # Without a WAL beside it the file is complete as it stands: open it immutable, so not
    # even SQLite's -wal/-shm files appear (a read-only folder, an audit that writes nothing).
    wal = path.with_name(path.name + "-wal")
    conn = sqlite3.connect(f"file:{path}?{'mode=ro' if wal.exists() else 'immutable=1'}", uri=True)
    try:
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.OperationalError:
        return ()  # no version table: a fresh or foreign file, reported by whoever opens it
    finally:
        conn.close()
    current = [str(r[0]) for r in rows]
    if set(current) <= _declared_revisions():
        return ()  # every one is declared by a migration file: no need to load alembic
    from alembic.script import ScriptDirectory

    known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    return tuple(r for r in current if r not in known)


def _declared_revisions() -> set[str]:
    """The ``revision`` each migration file declares, read as text (alembic's walk imports
    every file: ~0.15 s with alembic itself, at each `audit`); anything not found here is
    left to alembic."""
    import re

    pattern = re.compile(r'^revision(?:: str)? = ["\']([^"\']+)["\']', re.MULTILINE)
    found: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found.update(pattern.findall(path.read_text(encoding="utf-8")))
    return found


def refuse_newer_schema(path: Path) -> None:
    """``SchemaTooNewError`` for a ledger migrated by a newer version (read-only check)."""
    unknown = unknown_revisions(path)
    if unknown:
        raise SchemaTooNewError(
            f"database {path} is at schema revision {', '.join(unknown)}, which this version of "
            f"binance-executor does not know (it knows revisions up to {head_revision()}). It was "
            "written by a newer version: use that version. Nothing was changed."
        )


# Alembic's migration context is one per process (``alembic.context``): two upgrades at once
# in one event loop (two fleet bots starting together) would run inside each other's.
_UPGRADE_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _upgrade_lock() -> asyncio.Lock:
    import asyncio

    loop = asyncio.get_running_loop()
    lock = _UPGRADE_LOCKS.get(loop)
    if lock is None:
        lock = _UPGRADE_LOCKS[loop] = asyncio.Lock()
    return lock


async def ensure_schema(url: str | URL) -> SchemaState:
    """Bring the database at ``url`` to the newest schema; called by the bot on start.

    Idempotent: at head it changes nothing. Raises ``SchemaTooNewError`` for a database
    from a newer version and ``SchemaUnmanagedError`` for one not made by migrations."""
    async with _upgrade_lock():
        return await _ensure_schema(url)


async def _ensure_schema(url: str | URL) -> SchemaState:
    from executor.persistence.db import bot_schema, create_engine

    path = _where(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execution_options(sqlite_write=True)
            async with conn.begin():
                return await conn.run_sync(_upgrade, path, bot_schema(url))
    finally:
        await engine.dispose()


async def schema_state(url: str | URL) -> SchemaState:
    """Read the database's revision without changing anything (raises like ensure_schema)."""
    from executor.persistence.db import create_engine

    path = _where(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_check, path)
    finally:
        await engine.dispose()


def db_command(cfg: Config, action: str) -> int:
    """``python run.py db upgrade|current``; returns the process exit code."""
    import asyncio

    import sqlalchemy as sa
    from alembic.util.exc import CommandError

    url = cfg.database.url
    try:
        path = _where(url)
        if action == "upgrade":
            state = asyncio.run(ensure_schema(url))
            if state.previous is None:
                print(f"database {path}: already at schema revision {state.head} (head)")
            else:
                since = ", ".join(state.previous) or "empty"
                print(f"database {path}: upgraded from {since} to schema revision {state.head} (head)")
            return 0
        if action == "current":
            if isinstance(path, Path) and not path.exists():
                print(f"no database at {path} (run `python run.py db upgrade`)", file=sys.stderr)
                return EXIT_DB_ERROR
            state = asyncio.run(schema_state(url))
            if not state.current:
                print(
                    f"database {path}: no schema yet (head is {state.head}; run `python run.py db upgrade`)"
                )
            elif state.at_head:
                print(f"database {path}: schema revision {state.head} (head)")
            else:
                print(
                    f"database {path}: schema revision {', '.join(state.current)}, "
                    f"head is {state.head} (run `python run.py db upgrade`)"
                )
            return 0
        print(f"unknown db action {action!r} (use upgrade or current)", file=sys.stderr)
        return EXIT_DB_ERROR
    except (SchemaError, DatabaseUrlError, CommandError) as exc:
        print(f"database error: {exc}", file=sys.stderr)
        return EXIT_DB_ERROR
    except OSError as exc:  # the server is not there (connection refused, no such host)
        print(f"database error: cannot reach {describe_url(url)}: {exc}", file=sys.stderr)
        return EXIT_DB_ERROR
    except sa.exc.SQLAlchemyError as exc:  # the class only: a driver's message may quote the URL
        print(f"database error: {describe_url(url)}: {type(exc).__name__}", file=sys.stderr)
        return EXIT_DB_ERROR
