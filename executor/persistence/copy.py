"""``python run.py db copy --from URL --to URL``: move a ledger between SQLite and PostgreSQL.

How: the destination is migrated to the newest schema (the source must already be there,
so both have the same tables and columns), then every table is copied in foreign-key order
through SQLAlchemy Core, values passing through the column types (Decimal in, Decimal out:
money stays exact whether it is TEXT or NUMERIC on either side). Rows keep their ids, so
the audit's references (fills to orders, checkpoints to row ids) hold on the other side;
on PostgreSQL each id sequence is then moved past the copied ids.

Batches: tables with an integer ``id`` are read in id order, ``batch`` rows at a time
(keyset pagination: ``WHERE id > last``), each batch inserted and committed in one
transaction, with a progress line. Resumable: a copy that was interrupted continues from the
destination's highest id of each table (every committed batch is whole), and inserts are
``ON CONFLICT DO NOTHING``, so running the same copy again is harmless. Tables keyed by
something else (``balances`` by asset, ``ledger_meta`` by key) are small and copied whole.
``ledger_leases`` is not copied: a lease names a process of the source's host, not data.

The destination must be empty or an earlier copy of the same source (checked on ``runs``:
the destination's runs must be the source's first runs); no bot may write to the source
meanwhile (stop it first).

Afterwards the copy is checked: the same row count per table, then the audit report and
``audit verify`` are computed on both sides and must agree exactly.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from executor.persistence.db import DatabaseUrlError, create_engine, describe_url, is_sqlite
from executor.persistence.migrate import SchemaError, ensure_schema, head_revision, schema_state
from executor.persistence.models import Base
from executor.persistence.sql import dialect_insert

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_ERROR = 2
DEFAULT_BATCH = 5000
NOT_COPIED = frozenset({"ledger_leases"})


class CopyError(Exception):
    """The copy cannot start or continue; phrased for a human."""


@dataclass
class CopyResult:
    rows: dict[str, int] = field(default_factory=dict)  # rows copied now, per table
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # (source, destination) after
    seconds: float = 0.0

    @property
    def counts_agree(self) -> bool:
        return all(a == b for a, b in self.counts.values())


def tables() -> list[sa.Table]:
    """The ledger's tables in foreign-key order (parents first)."""
    return [t for t in Base.metadata.sorted_tables if t.name not in NOT_COPIED]


def _has_int_id(table: sa.Table) -> bool:
    pk = list(table.primary_key.columns)
    return len(pk) == 1 and pk[0].name == "id" and isinstance(pk[0].type, sa.Integer)


async def _count(conn: AsyncConnection, table: sa.Table) -> int:
    return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def _max_id(conn: AsyncConnection, table: sa.Table) -> int:
    return int((await conn.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0)))).scalar_one())


async def _check_same_source(src: AsyncConnection, dst: AsyncConnection) -> None:
    runs = Base.metadata.tables["runs"]
    q = sa.select(runs.c.id, runs.c.started_ms, runs.c.config_hash).order_by(runs.c.id)
    theirs = [tuple(r) for r in await dst.execute(q)]
    if not theirs:
        return
    ours = [tuple(r) for r in await src.execute(q.limit(len(theirs)))]
    if ours != theirs:
        raise CopyError(
            "the destination already holds another ledger (its runs are not this source's); "
            "copy into an empty database"
        )


async def _copy_table(
    src: AsyncConnection,
    dst: AsyncConnection,
    table: sa.Table,
    batch: int,
    progress: Callable[[str], None],
) -> int:
    total = await _count(src, table)
    insert = dialect_insert(dst.dialect, table).on_conflict_do_nothing()
    if not _has_int_id(table):
        before = await _count(dst, table)
        await dst.commit()
        rows = [dict(m) for m in (await src.execute(sa.select(table))).mappings()]
        if rows:
            async with dst.begin():
                await dst.execute(insert, rows)  # rows already there are left as they are
        added = await _count(dst, table) - before
        await dst.commit()
        progress(f"{table.name}: {len(rows):,} rows ({added:,} new)")
        return added
    last = await _max_id(dst, table)
    done = await _count(dst, table)
    await dst.commit()  # end the read so each batch below is its own transaction
    copied = 0
    shown = 0.0
    while True:
        q = sa.select(table).where(table.c.id > last).order_by(table.c.id).limit(batch)
        rows = [dict(m) for m in (await src.execute(q)).mappings()]
        if not rows:
            break
        async with dst.begin():
            await dst.execute(insert, rows)
        last = rows[-1]["id"]
        copied += len(rows)
        done += len(rows)
        now = time.monotonic()
        if now - shown >= 1.0 or done >= total:
            pct = f" ({100 * done // total}%)" if total else ""
            progress(f"{table.name}: {done:,}/{total:,} rows{pct}")
            shown = now
    if copied == 0:
        progress(f"{table.name}: {done:,}/{total:,} rows (nothing new)")
    if dst.dialect.name == "postgresql":
        # Explicit ids do not move the id sequence; the next insert must not reuse one.
        seq = sa.func.pg_get_serial_sequence(table.name, "id")
        nxt = sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0) + 1).scalar_subquery()
        async with dst.begin():
            await dst.execute(sa.select(sa.func.setval(seq, nxt, False)))
    await dst.commit()
    return copied


async def copy_ledger(
    from_url: str,
    to_url: str,
    *,
    batch: int = DEFAULT_BATCH,
    progress: Callable[[str], None] = lambda _line: None,
) -> CopyResult:
    """Copy every row of the ledger at ``from_url`` into ``to_url`` (see the module docstring)."""
    for url in (from_url, to_url):
        is_sqlite(url)  # a URL of another kind raises DatabaseUrlError here
    if describe_url(from_url) == describe_url(to_url):
        raise CopyError("--from and --to are the same ledger")
    if is_sqlite(from_url):
        from executor.persistence.db import database_path

        if not database_path(from_url).exists():
            raise CopyError(f"no ledger at {describe_url(from_url)}")
    state = await schema_state(from_url)
    if not state.at_head:
        raise CopyError(
            f"the source is at schema revision {', '.join(state.current) or 'none'}, not {head_revision()}: "
            "run `python run.py db upgrade` with [database] url set to it (or the bot once) first"
        )
    await ensure_schema(to_url)
    started = time.perf_counter()
    result = CopyResult()
    src_engine: AsyncEngine = create_engine(from_url)
    dst_engine: AsyncEngine = create_engine(to_url)
    try:
        async with src_engine.connect() as src, dst_engine.connect() as dst:
            if src.dialect.name == "postgresql":
                # One snapshot of the source for the whole copy.
                await src.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            await _check_same_source(src, dst)
            await src.commit()
            await dst.commit()
            async with src.begin():
                for table in tables():
                    result.rows[table.name] = await _copy_table(src, dst, table, batch, progress)
                for table in tables():
                    result.counts[table.name] = (await _count(src, table), await _count(dst, table))
    finally:
        await src_engine.dispose()
        await dst_engine.dispose()
    result.seconds = time.perf_counter() - started
    return result


def audits_of(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(report, verification) of a whole ledger as plain data, without where it was read
    from or when: what must be equal on both sides of a copy."""
    from executor.audit.query import AuditDB, Scope
    from executor.audit.render import report_dict
    from executor.audit.report import build_report
    from executor.audit.verify import verify, verify_dict

    with AuditDB.from_url(url) as db:
        rep = report_dict(build_report(db, Scope(), use_checkpoint=False))
        ver = verify_dict(verify(db, Scope(), use_checkpoint=False))
    rep.pop("database", None)
    rep.pop("generated_ms", None)
    return rep, ver


def copy_command(from_url: str, to_url: str, *, batch: int = DEFAULT_BATCH, check: bool = True) -> int:
    """``run.py db copy``: 0 copied and both audits agree; 1 copied but they differ (or the
    row counts do); 2 nothing or not everything copied (bad URL, schema, destination)."""

    def say(line: str) -> None:
        print(f"db copy: {line}", file=sys.stderr, flush=True)

    if batch < 1:
        say("--batch must be at least 1")
        return EXIT_ERROR
    try:
        say(f"{describe_url(from_url)} -> {describe_url(to_url)}")
        res = asyncio.run(copy_ledger(from_url, to_url, batch=batch, progress=say))
    except (CopyError, DatabaseUrlError, SchemaError) as exc:
        say(str(exc))
        return EXIT_ERROR
    except (OSError, sa.exc.SQLAlchemyError) as exc:  # the class only: a message may hold a URL
        say(f"cannot copy: {type(exc).__name__}; nothing after the last committed batch was copied "
            "(run the same command again to resume)")
        return EXIT_ERROR
    copied = sum(res.rows.values())
    print(f"copied {copied:,} rows in {res.seconds:.1f} s")
    if not res.counts_agree:
        bad = {t: c for t, c in res.counts.items() if c[0] != c[1]}
        print(f"row counts differ (source, destination): {bad}")
        return EXIT_MISMATCH
    if not check:
        return EXIT_OK
    from executor.audit.query import AuditError

    try:
        (src_rep, src_ver), (dst_rep, dst_ver) = audits_of(from_url), audits_of(to_url)
    except AuditError as exc:
        say(f"copied, but the audit could not run: {exc}")
        return EXIT_ERROR
    same = src_rep == dst_rep and src_ver == dst_ver
    verdict = "clean" if src_ver.get("ok") else "NOT clean (on both sides alike)"
    if same:
        print(f"audit report and audit verify agree on both sides; verify is {verdict}")
        return EXIT_OK
    print("audit report or audit verify DIFFER between source and destination")
    return EXIT_MISMATCH
