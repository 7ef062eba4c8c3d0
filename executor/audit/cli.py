"""``python run.py audit [report|trades|daily|verify]``: options to scope, then print or
write files.

* ``report`` (the default): the per-symbol metrics, balances and positions, reconciliations;
  ``--plot`` draws a PNG per symbol into ``--plot-dir`` (default: ``--out`` when given, else
  the ledger's folder);
* ``trades``: one line per fill (``executor.audit.tables``);
* ``daily``: per UTC day PnL, fees, volume, round trips and win rate (``executor.audit.daily``);
* ``verify``: the ledger's balances against its events.

Exit codes: 0 done (verify: every balance agrees); 1 verify found a difference; 2 the
audit could not run (no database, unknown run, bad filter, missing optional dependency),
with one line on stderr.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from executor.audit.fold import no_cyclic_gc
from executor.audit.query import AuditDB, AuditError, Scope, parse_time, sqlalchemy_errors
from executor.persistence.urls import database_path

if TYPE_CHECKING:
    from executor.config import Config

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_ERROR = 2


def scope_from_args(args: argparse.Namespace) -> Scope:
    since = parse_time(getattr(args, "since", None), "--since")
    until = parse_time(getattr(args, "until", None), "--until")
    if since is not None and until is not None and since >= until:
        raise AuditError("--since must be before --until")
    symbol = getattr(args, "symbol", None)
    return Scope(getattr(args, "run", None), since, until, symbol.upper() if symbol else None)


def default_url(cfg: Config) -> str:
    """The ledger to audit without ``--db``: the configured one, except that on profile sim
    each run on a freshly started embedded exchange writes its own file beside it
    (``<dir>/sim/<stem>-<UTC time><suffix>``, see ``executor.run.app.sim_ledger_url``); the most
    recently written of these and the configured file is the run just made."""
    url = cfg.database.url
    if cfg.profile != "sim":
        return url
    try:
        path = database_path(url)
    except ValueError:
        return url  # AuditDB.from_url reports it
    candidates = [p for p in (path.parent / "sim").glob(f"{path.stem}-*{path.suffix}") if p.is_file()]
    if path.exists():
        candidates.append(path)
    if not candidates:
        return url
    newest = max(candidates, key=lambda p: p.stat().st_mtime)
    if newest != path:
        print(f"audit: reading the newest sim ledger {newest} (give --db to choose another)", file=sys.stderr)
    return f"sqlite+aiosqlite:///{newest}"


def archive_for(url: str, given: Path | None) -> Path | None:
    """The archive to read with the ledger: ``--archive``, else ``<ledger>-archive.db`` if present."""
    if given is not None:
        return given
    from executor.persistence.archive import default_archive_path

    try:
        candidate = default_archive_path(database_path(url))
    except ValueError:
        return None
    if candidate.exists():
        print(f"audit: reading the archive {candidate} too (`db archive` moved older runs there)",
              file=sys.stderr)
        return candidate
    return None


def audit_command(cfg: Config | None, args: argparse.Namespace) -> int:
    """Entry point wired in ``executor.cli``; returns the process exit code. ``cfg`` is None
    when ``--db`` names the ledger and no ``--config`` is given (nothing of it is used then)."""
    # Every command reads millions of acyclic rows (``fold.no_cyclic_gc``).
    with no_cyclic_gc():
        return _audit(cfg, args)


def _audit(cfg: Config | None, args: argparse.Namespace) -> int:
    try:
        scope = scope_from_args(args)
        url = getattr(args, "db", None)
        if not url:
            assert cfg is not None  # read whenever no --db names the ledger (executor.cli)
            url = default_url(cfg)
        _warn_if_newer(url)
        bot = getattr(args, "bot", None)
        if bot == "all":
            from executor.audit.fleet import fleet_command

            return fleet_command(url, scope, verify=getattr(args, "audit_command", "report") == "verify")
        if bot:
            from executor.persistence.db import with_bot

            try:
                url = with_bot(url, bot)
            except ValueError as exc:
                raise AuditError(str(exc)) from None
        with AuditDB.from_url(url, archive_for(url, getattr(args, "archive", None))) as db:
            _check_run(db, scope)
            command = getattr(args, "audit_command", "report")
            if command == "verify":
                return _verify(db, scope, args)
            if getattr(args, "audit_command", "report") == "carry":
                from executor.audit.carry import carry_report, render_carry

                sys.stdout.write(render_carry(carry_report(db, scope.symbol)))
                return EXIT_OK
            if command == "trades":
                return _trades(db, scope)
            if command == "daily":
                return _daily(db, scope)
            return _report(db, scope, args, cfg)
    except AuditError as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except sqlite3.Error as exc:
        print(f"audit: cannot read the ledger: {exc}", file=sys.stderr)
        return EXIT_ERROR
    # PostgreSQL; the class name only (a message may hold the URL). SQLAlchemy is imported only
    # by the PostgreSQL reader, so on SQLite this names no class (``sqlalchemy_errors``).
    except sqlalchemy_errors() as exc:
        print(f"audit: cannot read the ledger: {type(exc).__name__}", file=sys.stderr)
        return EXIT_ERROR


def _warn_if_newer(url: str) -> None:
    """A ledger from a newer version is read as far as this version understands it: say so."""
    from executor.persistence.migrate import unknown_revisions

    try:
        unknown = unknown_revisions(database_path(url))
    except (ValueError, sqlite3.Error):
        return  # AuditDB.from_url reports an unusable ledger
    if unknown:
        print(f"audit: warning: the ledger is at schema revision {', '.join(unknown)}, written by a newer "
              "version of binance-executor; this version reads only what it knows, so figures may be "
              "incomplete. Use the newer version for a full audit.", file=sys.stderr)


def _check_run(db: AuditDB, scope: Scope) -> None:
    if scope.run_id is None or db.runs(scope):
        return
    ids = [r["id"] for r in db.runs(Scope())]
    known = f"runs {ids[0]} to {ids[-1]}" if len(ids) > 1 else f"run {ids[0]}" if ids else "no runs"
    raise AuditError(f"no run {scope.run_id} in {db.path} (it holds {known})")


def _trades(db: AuditDB, scope: Scope) -> int:
    from executor.audit.report import build_report
    from executor.audit.tables import render_trades

    rep = build_report(db, scope, keep_rows=True)
    orders = {o.id: o for o in rep.orders}
    missing = sorted({f.order_id for f in rep.fills if f.order_id is not None and f.order_id not in orders})
    orders.update((o.id, o) for o in db.orders_by_id(missing))
    sys.stdout.write(render_trades(rep.fills, orders, rep.fill_slippage, scope.describe()))
    return EXIT_OK


def _daily(db: AuditDB, scope: Scope) -> int:
    from executor.audit.daily import daily
    from executor.audit.report import Pairs, PriceSeries
    from executor.audit.tables import render_daily

    days = daily(db.fills(scope), Pairs(db.known_assets()), PriceSeries(db, scope.until_ms))
    sys.stdout.write(render_daily(days, scope.describe()))
    return EXIT_OK


def _with_identity(db: AuditDB, text: str, *, after_lines: int | None) -> str:
    """The ledger's client-id prefix and venue (``ledger_meta``) as a line of the table,
    after ``after_lines`` lines (None: at the end, so verify's first line stays its verdict)."""
    from executor.persistence.ledger_meta import describe_meta, read_meta

    line = describe_meta(read_meta(db.conn))
    if after_lines is None:
        return text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"
    lines = text.split("\n")
    lines.insert(min(after_lines, len(lines)), line)
    return "\n".join(lines)


def _verify(db: AuditDB, scope: Scope, args: argparse.Namespace) -> int:
    from executor.audit.verify import render_verify, verify, verify_dict

    if scope.symbol:
        print("audit verify: balances are account-wide; --symbol is ignored", file=sys.stderr)
    res = verify(db, Scope(scope.run_id, scope.since_ms, scope.until_ms))
    fmt = getattr(args, "format", "table")
    if fmt == "json":
        import orjson

        sys.stdout.write(orjson.dumps(verify_dict(res), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(_with_identity(db, render_verify(res), after_lines=None))
    out: Path | None = getattr(args, "out", None)
    if out is not None:
        import orjson

        out.mkdir(parents=True, exist_ok=True)
        (out / "verify.json").write_bytes(orjson.dumps(verify_dict(res), option=orjson.OPT_INDENT_2))
    return EXIT_OK if res.ok else EXIT_MISMATCH


def _report(db: AuditDB, scope: Scope, args: argparse.Namespace, cfg: Config | None = None) -> int:
    from executor.audit.render import render_csv, render_json, render_table, write_out_dir
    from executor.audit.report import build_report

    out: Path | None = getattr(args, "out", None)
    plot = bool(getattr(args, "plot", False))
    if plot:
        from executor.audit.plot import PlotUnavailable, require_matplotlib

        try:
            require_matplotlib()
        except PlotUnavailable as exc:
            print(f"audit: {exc}", file=sys.stderr)
            return EXIT_ERROR
    rep = build_report(db, scope, keep_rows=out is not None or plot)
    fmt = getattr(args, "format", "table")
    text = {"json": render_json, "csv": render_csv}.get(fmt, render_table)(rep)
    if fmt == "table":
        text = _with_identity(db, text, after_lines=2)
    sys.stdout.write(text)
    written: list[Path] = []
    if out is not None:
        written += write_out_dir(rep, out)
    if plot:
        from executor.audit.plot import plot_symbols

        # A ledger named with --db gets its plots beside it; the configured one, in the data
        # folder's plots/.
        beside = db.path.parent if getattr(args, "db", None) else None
        folder = getattr(args, "plot_dir", None) or out or beside or _plots_dir(cfg, db)
        written += plot_symbols(rep, db, scope, folder)
    for p in written:
        print(f"wrote {p}", file=sys.stderr)
    return EXIT_OK


def _plots_dir(cfg: Config | None, db: AuditDB) -> Path:
    """Plots without ``--plot-dir``/``--out`` go to the data folder's ``plots/`` (without a
    config: beside the ledger), never to the working directory."""
    if cfg is None:
        return db.path.parent
    from executor.config import data_path

    path = data_path(cfg, "plots")
    path.mkdir(parents=True, exist_ok=True)
    return path
