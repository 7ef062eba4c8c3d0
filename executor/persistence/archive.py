"""``run.py db archive --before DATE [--to ARCHIVE_DB]``: move old runs' rows out of the ledger.

The ledger grows with every order (an ``orders`` row, its ``order_events``, maybe a
``cancels`` row), every fill (a ``fills`` row, its balance events), and with time
(``reconciliation_runs`` every periodic and stream-gap reconciliation, ``balance_events``
and ``futures_account_updates`` from snapshots, ``risk_refusals``). None of that is ever
deleted: it is the audit trail. Archiving moves the rows of runs that ended before
``DATE`` into a second SQLite file with the same (migrated) schema, keeping their ids, so
the live ledger stays small and the audit still sees everything: ``audit`` reads the
archive beside the ledger (``<name>-archive.db``) by itself, or the one given with
``--archive PATH``, through views that put both files' rows together.

What moves: the ``runs`` rows that stopped before ``DATE`` (never the one holding a lease),
every row with one of those run ids, every order of those runs with its events, fills and
cancels; except that the newest row of each table stays in the ledger too (so SQLite never
hands out an archived id again; the audit shows it once, the next archive moves it).
``balances`` (the current balance per asset), ``audit_checkpoints`` and the lease
and meta tables stay.

Safety: phase 1 copies the rows into the archive (``INSERT OR IGNORE``, same ids) and
commits it; phase 2 deletes from the ledger every row whose id the archive holds, in one
transaction, checked by ``PRAGMA foreign_key_check`` before it commits. A crash between
the two leaves rows in both files: the audit's views show a row of the ledger only once,
and running the command again finishes the move. The archive remembers which ledger it
belongs to (``ledger_meta`` key ``archive_of``) and refuses another ledger's rows. Run it
while the bot is stopped: a running bot's caches may still refer to the rows moved.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # an annotation only: `audit` imports this module without the pydantic config
    from executor.config import Config

# asyncio is imported by the two functions that run the move: `audit` uses only
# ``default_archive_path`` and ``attach_archive`` (bench/RESULTS.md, "#16 audit start-up and teardown").

__all__ = ["ARCHIVED_TABLES", "ArchiveError", "ArchiveResult", "archive", "archive_command",
           "attach_archive", "default_archive_path"]

EXIT_OK = 0
EXIT_ERROR = 1

# Parents before children (copy order); deletes go the other way.
ARCHIVED_TABLES = ("runs", "orders", "cancels", "fills", "order_events", "balance_events",
                   "futures_account_updates", "reconciliation_runs", "risk_refusals", "operator_actions")
_RUN_TABLES = ("cancels", "fills", "balance_events", "futures_account_updates", "reconciliation_runs",
               "risk_refusals", "operator_actions")
_ORDER_CHILDREN = ("cancels", "fills", "order_events")
META_KEY = "archive_of"


class ArchiveError(Exception):
    """The archive cannot be made as asked; one line for the operator."""


@dataclass
class ArchiveResult:
    archive: Path
    runs: list[int] = field(default_factory=list)
    moved: dict[str, int] = field(default_factory=dict)


def default_archive_path(ledger: Path) -> Path:
    """Where ``db archive`` writes and ``audit`` looks by default: beside the ledger."""
    return ledger.with_name(f"{ledger.stem}-archive{ledger.suffix or '.db'}")


def _columns(conn: sqlite3.Connection, schema: str, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f'PRAGMA {schema}.table_info("{table}")')]


def _tables(conn: sqlite3.Connection, schema: str) -> set[str]:
    return {r[0] for r in conn.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type='table'")}


def attach_archive(conn: sqlite3.Connection, archive: Path, *, where: dict[str, str] | None = None) -> None:
    """Make ``conn``'s unqualified table names read the ledger and the archive together.

    Attaches ``archive`` read-only as ``arch`` and creates a TEMP view per archived table
    (a temp object hides the main table of the same name): the ledger's rows, then the
    archive's rows whose id the ledger does not hold (a half-finished move shows once).
    Columns follow the ledger; a column the archive lacks (an older schema) reads NULL.
    ``where``: an extra condition per table, on both sides (the audit's spot-only fills)."""
    if not archive.exists():
        raise ArchiveError(f"no archive at {archive}")
    conn.execute("ATTACH DATABASE ? AS arch", (f"file:{archive}?mode=ro",))
    have = _tables(conn, "arch")
    for table in ARCHIVED_TABLES:
        if table not in have:
            continue
        cols = _columns(conn, "main", table)
        theirs = set(_columns(conn, "arch", table))
        main_list = ", ".join(f'"{c}"' for c in cols)
        arch_list = ", ".join(f'"{c}"' if c in theirs else f'NULL AS "{c}"' for c in cols)
        extra = (where or {}).get(table)
        main_where = f" WHERE {extra}" if extra else ""
        arch_extra = f" AND {extra}" if extra else ""
        conn.execute(f'CREATE TEMP VIEW "{table}" AS SELECT {main_list} FROM main."{table}"{main_where} '
                     f'UNION ALL SELECT {arch_list} FROM arch."{table}" '
                     f'WHERE id NOT IN (SELECT id FROM main."{table}"){arch_extra}')


def _move_sets(conn: sqlite3.Connection, before_ms: int) -> list[int]:
    """Fill TEMP tables of the ids to move; returns the run ids."""
    leased = "SELECT run_id FROM main.ledger_leases WHERE run_id IS NOT NULL" \
        if "ledger_leases" in _tables(conn, "main") else "SELECT NULL WHERE 0"
    conn.execute("CREATE TEMP TABLE mv_runs AS SELECT id FROM main.runs WHERE stopped_ms IS NOT NULL "
                 f"AND stopped_ms < ? AND id NOT IN ({leased})", (before_ms,))
    runs = [r[0] for r in conn.execute("SELECT id FROM mv_runs ORDER BY id")]
    conn.execute("CREATE TEMP TABLE mv_orders AS SELECT id FROM main.orders WHERE run_id IN "
                 "(SELECT id FROM mv_runs)")
    return runs


def _where(table: str) -> str:
    """Rows of ``table`` that move (over the TEMP id tables)."""
    if table == "runs":
        return "id IN (SELECT id FROM mv_runs)"
    if table == "orders":
        return "id IN (SELECT id FROM mv_orders)"
    parts = []
    if table in _ORDER_CHILDREN:
        parts.append("order_id IN (SELECT id FROM mv_orders)")
    if table in _RUN_TABLES:
        parts.append("run_id IN (SELECT id FROM mv_runs)")
    return " OR ".join(parts)


def _check_owner(conn: sqlite3.Connection, ledger: Path) -> None:
    owner = str(ledger.resolve())
    row = conn.execute("SELECT value FROM arch.ledger_meta WHERE key = ?", (META_KEY,)).fetchone()
    if row is None:
        conn.execute("INSERT INTO arch.ledger_meta (key, value, set_ms) VALUES (?, ?, ?)",
                     (META_KEY, owner, int(time.time() * 1000)))
    elif row[0] != owner:
        raise ArchiveError(f"the archive belongs to another ledger ({row[0]}); give --to a new file")


def _move(ledger: Path, archive: Path, before_ms: int) -> ArchiveResult:
    result = ArchiveResult(archive)
    conn = sqlite3.connect(str(ledger), isolation_level=None, timeout=30)
    try:
        # The archive holds part of a history whose runs/orders may stay in the ledger:
        # its references cannot all resolve inside it. The ledger's are checked below.
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("ATTACH DATABASE ? AS arch", (str(archive),))
        # Phase 1: copy (idempotent), one transaction on the archive.
        conn.execute("BEGIN IMMEDIATE")
        try:
            _check_owner(conn, ledger)
            result.runs = _move_sets(conn, before_ms)
            for table in ARCHIVED_TABLES:
                cols = _columns(conn, "main", table)
                theirs = set(_columns(conn, "arch", table))
                missing = [c for c in cols if c not in theirs]
                if missing:
                    raise ArchiveError(f"the archive's {table} lacks {', '.join(missing)}; "
                                       "upgrade it (it is migrated like the ledger)")
                names = ", ".join(f'"{c}"' for c in cols)
                conn.execute(f'INSERT OR IGNORE INTO arch."{table}" ({names}) SELECT {names} '
                             f'FROM main."{table}" WHERE {_where(table)}')
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        # Phase 2: delete what the archive holds, children first, one transaction.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in reversed(ARCHIVED_TABLES):
                # The newest row of each table stays (copied, not deleted): SQLite hands out
                # max(id) + 1 next, so ids are never reused and an id in both files is one row.
                cur = conn.execute(f'DELETE FROM main."{table}" WHERE id IN (SELECT id FROM arch."{table}") '
                                   f'AND id < (SELECT max(id) FROM main."{table}")')
                result.moved[table] = cur.rowcount
            broken = conn.execute("PRAGMA main.foreign_key_check").fetchall()
            if broken:
                raise ArchiveError(f"moving would leave {len(broken)} dangling reference(s) in the ledger "
                                   f"(first: {broken[0]}); nothing was deleted")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    return result


async def archive(ledger_url: str, before_ms: int, to: Path | None = None) -> ArchiveResult:
    """Move the rows of runs that stopped before ``before_ms`` into the archive (see module doc)."""
    import asyncio

    from executor.persistence.db import database_path
    from executor.persistence.migrate import ensure_schema

    ledger = database_path(ledger_url)
    if not ledger.exists():
        raise ArchiveError(f"no database at {ledger}")
    target = to if to is not None else default_archive_path(ledger)
    if target.resolve() == ledger.resolve():
        raise ArchiveError("--to must be another file than the ledger")
    await ensure_schema(f"sqlite+aiosqlite:///{target}")
    return await asyncio.to_thread(_move, ledger, target, before_ms)


def archive_command(cfg: Config, args: argparse.Namespace) -> int:
    """``python run.py db archive --before DATE [--to ARCHIVE_DB] [--db URL]``."""
    import asyncio

    from executor.audit.query import AuditError, fmt_ms, parse_time

    try:
        before_ms = parse_time(args.before, "--before")
        assert before_ms is not None
        url = getattr(args, "db", None) or cfg.database.url
        res = asyncio.run(archive(url, before_ms, Path(args.to) if getattr(args, "to", None) else None))
    except (ArchiveError, AuditError, ValueError) as exc:
        print(f"db archive: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except sqlite3.Error as exc:
        print(f"db archive: the database refused: {exc}", file=sys.stderr)
        return EXIT_ERROR
    moved = ", ".join(f"{t} {n}" for t, n in res.moved.items() if n) or "nothing"
    runs = ", ".join(map(str, res.runs)) or "none"
    print(f"db archive: runs stopped before {fmt_ms(before_ms)}: {runs}; moved {moved} into {res.archive} "
          "(`audit` reads it beside the ledger, or give --archive PATH)")
    return EXIT_OK
