"""Writing the audit checkpoints: ``run.py db checkpoint`` and the bot's scheduled job.

The job runs the same command in a child process (``python -m executor.audit.checkpoint_job``):
folding a large ledger is CPU work in Python, and in the bot's own process it would hold the
interpreter while the strategy and the user stream wait. The child reads one snapshot of the
ledger (WAL: the bot keeps writing meanwhile) and replaces the checkpoint rows in one short
write transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from executor.audit.checkpoints import settled_cut, write_report_checkpoint
from executor.audit.query import AuditDB, AuditError, fmt_ms
from executor.audit.reader import SqlReader
from executor.audit.verify_checkpoint import write_verify_checkpoint
from executor.config import ROOT
from executor.persistence.db import database_path, is_sqlite

if TYPE_CHECKING:
    from executor.config import Config

__all__ = ["checkpoint_command", "run_in_child", "write_checkpoints"]

DEFAULT_SETTLE_S = 600.0
URL_ENV = "BX_CHECKPOINT_DB_URL"


def _end_of_ledger(db: AuditDB) -> int:
    row = db.conn.execute(
        "SELECT max(t) FROM (SELECT max(coalesce(trade_ms, received_ms)) AS t FROM fills "
        "UNION ALL SELECT max(coalesce(event_ms, received_ms)) FROM balance_events "
        "UNION ALL SELECT max(coalesce(decision_ms, created_ms)) FROM orders) AS ends"
    ).fetchone()
    return row[0] if row[0] is not None else 0


def write_checkpoints(
    path: Path | str,
    *,
    settle_s: float = DEFAULT_SETTLE_S,
    everything: bool = False,
    cut_ms: int | None = None,
) -> list[str]:
    """Bring the ledger's audit checkpoints up to date; one line per checkpoint written.
    ``path``: a SQLite ledger file, or a ledger URL (SQLite or PostgreSQL). ``everything``:
    cut at the newest row (a ledger no bot writes to any more); ``cut_ms``: cut there."""
    if isinstance(path, str):
        if not is_sqlite(path):
            return _write_checkpoints(AuditDB.from_url(path), path, settle_s, everything, cut_ms)
        path = database_path(path)
    # The writer below changes the file: never the immutable open.
    return _write_checkpoints(AuditDB(path, immutable_ok=False), None, settle_s, everything, cut_ms)


def _write_checkpoints(
    audit_db: AuditDB, pg_url: str | None, settle_s: float, everything: bool, cut_ms: int | None
) -> list[str]:
    now = int(time.time() * 1000)
    lines: list[str] = []
    path = audit_db.path
    with audit_db as db:
        if pg_url is None:
            tables = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        else:
            tables = db.conn.table_names()
        if "audit_checkpoints" not in tables:
            raise AuditError(
                f"{path} has no audit_checkpoints table: run `python run.py db upgrade` on it first"
            )
        if cut_ms is not None:
            cut = cut_ms
        else:
            cut = _end_of_ledger(db) if everything else settled_cut(db, now, int(settle_s * 1000))
        # The writer: a sqlite3 connection, or its PostgreSQL twin (``reader.SqlReader``).
        writer: Any = (
            sqlite3.connect(path, timeout=30) if pg_url is None else SqlReader(pg_url, readonly=False)
        )
        try:
            started = time.perf_counter()
            rep = write_report_checkpoint(db, writer, cut, now)
            how = "from the start" + (f" ({rep.reason})" if rep.reason else "") if rep.fresh else "continued"
            lines.append(
                f"report checkpoint at {fmt_ms(cut)}: {how}, +{rep.fills:,} fills, +{rep.orders:,} orders, "
                f"{rep.pending:,} orders still open ({time.perf_counter() - started:.2f} s)"
            )
            started = time.perf_counter()
            ver = write_verify_checkpoint(db, writer, cut, now)
            if ver.written:
                state = "from the start" if ver.fresh else "continued"
                if ver.reason:
                    state += f" ({ver.reason})"
            else:
                state = f"not written ({ver.reason})"
            lines.append(
                f"verify checkpoint at {fmt_ms(ver.cut_ms)}: {state} ({time.perf_counter() - started:.2f} s)"
            )
        finally:
            writer.close()
    return lines


def checkpoint_command(cfg: Config, args: argparse.Namespace) -> int:
    """``run.py db checkpoint``: 0 written, 2 the ledger cannot be read or written, 5 the
    ledger is from a newer version (refused, nothing written)."""
    from executor.audit.cli import default_url

    url = getattr(args, "db", None) or default_url(cfg)
    try:
        from executor.persistence.migrate import SchemaTooNewError, refuse_newer_schema

        try:
            # Writing checkpoints into a newer version's ledger could contradict its own.
            if is_sqlite(url):
                refuse_newer_schema(database_path(url))
        except SchemaTooNewError as exc:
            print(f"db checkpoint: {exc}", file=sys.stderr)
            return 5
        for line in write_checkpoints(
            url,
            settle_s=getattr(args, "settle_s", DEFAULT_SETTLE_S),
            everything=args.all,
            cut_ms=getattr(args, "cut_ms", None),
        ):
            print(line)
    except (AuditError, ValueError) as exc:
        print(f"db checkpoint: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"db checkpoint: cannot update the ledger: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:  # PostgreSQL; the class only (a message may hold the URL)
        print(f"db checkpoint: cannot update the ledger: {type(exc).__name__}", file=sys.stderr)
        return 2
    return 0


async def run_in_child(url: str, settle_s: float = DEFAULT_SETTLE_S, timeout_s: float = 600.0) -> str:
    """The scheduled job: ``write_checkpoints`` in a child process; its output, or an error."""
    # A PostgreSQL URL may hold a password: it goes to the child in its environment, not on
    # its command line (which every user of the host can read).
    env = None
    if not is_sqlite(url):
        env = {**os.environ, URL_ENV: url}
        url = "-"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "executor.audit.checkpoint_job",
        url,
        "--settle-s",
        str(settle_s),
        cwd=str(ROOT),  # ``-m executor...`` must import this checkout, wherever the bot was started
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(
            f"db checkpoint exited {proc.returncode}: {err.decode(errors='replace').strip()[-300:]}"
        )
    return "; ".join(out.decode().splitlines())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m executor.audit.checkpoint_job", description=__doc__)
    ap.add_argument("db", help=f"ledger database URL ('-': the URL is in ${URL_ENV})")
    ap.add_argument("--settle-s", type=float, default=DEFAULT_SETTLE_S)
    ap.add_argument("--all", action="store_true", help="cut at the newest row")
    args = ap.parse_args(argv)
    if args.db == "-":
        args.db = os.environ.get(URL_ENV, "")
    return checkpoint_command(None, args)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
