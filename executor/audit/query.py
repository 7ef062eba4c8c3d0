"""Reading the ledger for the audit: a read-only connection, the scope filters, and typed
rows with exact Decimals.

The audit never writes. On SQLite it opens the database file read-only (``immutable=1``
when no WAL is beside it, else ``mode=ro``; see ``AuditDB``; a WAL reader takes no lock the
bot would wait on) through the plain ``sqlite3`` module: at a million fills the async
SQLAlchemy layer would cost more than the report itself (the SQLite-only fast path). On
PostgreSQL its twin, ``executor.audit.reader.SqlReader``, runs the same SQL through
SQLAlchemy's async engine in one read-only snapshot; ``AuditDB.sqlite`` says which. The
schema is still the one the migrations made; column lists here name the columns explicitly so a later additive
migration cannot shift them.

Scope: ``--run`` keeps rows of that run, ``--since``/``--until`` keep rows whose own time
falls in ``[since, until)`` (orders by ``created_ms``, fills by ``trade_ms``, balance
events by ``event_ms``, reconciliations by ``started_ms``), ``--symbol`` keeps one symbol.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from executor.core.orders import Side
from executor.loaded import if_loaded
from executor.persistence.records import FillRow, OrderRecord
from executor.persistence.urls import database_path, describe_url, is_sqlite

__all__ = [
    "AuditDB",
    "AuditError",
    "BalanceEventRow",
    "FillRow",
    "OrderRow",
    "Scope",
    "parse_time",
    "split_symbol",
]

_SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}
# Quote assets, longest first so "FDUSD" wins over "USD"-like suffixes.
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "DAI", "EUR", "TRY", "BRL", "BTC", "ETH", "BNB")


class AuditError(Exception):
    """The audit cannot run as asked (no database, bad filter); phrased for a human."""


def sqlalchemy_errors(name: str = "SQLAlchemyError") -> tuple[type[BaseException], ...]:
    """``(sqlalchemy.exc.<name>,)`` for an ``except`` clause, or ``()`` when this process never
    imported SQLAlchemy: the SQLite audit never does (``executor.loaded``)."""
    return if_loaded("sqlalchemy.exc", name)


def parse_time(text: str | None, flag: str) -> int | None:
    """``--since``/``--until``: an ISO date or date-time (UTC unless it says otherwise), or
    epoch milliseconds; returns UTC epoch ms."""
    if text is None:
        return None
    s = text.strip()
    if s.isdigit():
        return int(s)
    try:
        if len(s) == 10:
            d = date.fromisoformat(s)
            dt = datetime(d.year, d.month, d.day, tzinfo=UTC)
        else:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
    except ValueError:
        raise AuditError(
            f"{flag} {text!r}: give an ISO date (2026-01-31), date-time (2026-01-31T12:00:00Z) "
            "or epoch milliseconds"
        ) from None
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def split_symbol(symbol: str, known_assets: frozenset[str] = frozenset()) -> tuple[str, str]:
    """(base, quote) of a spot symbol. The ledger stores no exchange info, so the split is
    by quote suffix; assets seen in the ledger (balances, fees) settle ambiguous names."""
    candidates = [q for q in QUOTE_ASSETS if symbol.endswith(q) and len(symbol) > len(q)]
    for q in candidates:
        if symbol[: -len(q)] in known_assets:
            return symbol[: -len(q)], q
    if candidates:
        q = candidates[0]
        return symbol[: -len(q)], q
    for a in sorted(known_assets, key=len, reverse=True):
        if symbol.endswith(a) and symbol[: -len(a)] in known_assets:
            return symbol[: -len(a)], a
    raise AuditError(f"cannot tell the base and quote assets of symbol {symbol!r}")


@dataclass(frozen=True)
class Scope:
    run_id: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    symbol: str | None = None

    def where(
        self, time_col: str, *, run_col: str | None = "run_id", symbol_col: str | None = "symbol"
    ) -> tuple[str, list[Any]]:
        parts: list[str] = []
        params: list[Any] = []
        if self.run_id is not None and run_col:
            parts.append(f"{run_col} = ?")
            params.append(self.run_id)
        if self.since_ms is not None:
            parts.append(f"{time_col} >= ?")
            params.append(self.since_ms)
        if self.until_ms is not None:
            parts.append(f"{time_col} < ?")
            params.append(self.until_ms)
        if self.symbol is not None and symbol_col:
            parts.append(f"{symbol_col} = ?")
            params.append(self.symbol)
        return (" WHERE " + " AND ".join(parts)) if parts else "", params

    def describe(self) -> str:
        bits = []
        if self.run_id is not None:
            bits.append(f"run {self.run_id}")
        if self.symbol:
            bits.append(self.symbol)
        if self.since_ms is not None:
            bits.append(f"since {fmt_ms(self.since_ms)}")
        if self.until_ms is not None:
            bits.append(f"until {fmt_ms(self.until_ms)}")
        return ", ".join(bits) or "everything"


def fmt_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def fmt_iso(ms: int | None) -> str:
    """ISO-8601 UTC with milliseconds: 2026-01-01T00:00:01.015Z."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _d(text: Any) -> Decimal | None:
    return None if text is None else Decimal(text)


ORDER_COLUMNS: tuple[str, ...] = OrderRecord._fields
ORDER_DECIMALS = frozenset(
    {
        "price",
        "quantity",
        "quote_order_qty",
        "executed_qty",
        "cum_quote_qty",
        "decision_bid",
        "decision_ask",
        "decision_mark",
    }
)
ORDER_BOOLS = frozenset({"external", "resolved_from_unknown"})


OrderRow = OrderRecord  # one row type for the store and the audit


FILL_COLUMNS: tuple[str, ...] = FillRow._fields
FILL_DECIMALS = frozenset({"price", "qty", "quote_qty", "commission"})


class BalanceEventRow(NamedTuple):
    id: int
    kind: str
    asset: str
    free: Decimal | None
    locked: Decimal | None
    delta: Decimal | None
    source: str
    event_ref: str | None
    event_ms: int | None
    received_ms: int
    run_id: int | None


_MMAP_BYTES = 1 << 40  # "as much as the build allows"


class AuditDB:
    """A read-only view of one ledger file.

    How it is opened, so that a read-only ledger, or one in a read-only folder, can be
    audited and nothing is ever written next to it:

    * no ``-wal`` file beside it (no connection has it open: the last one to close removes
      the WAL), and this process will not write to it (``immutable_ok``): ``immutable=1``.
      SQLite then takes no lock and creates no ``-shm``, so the folder may be read-only;
      the file is not modified.
    * a ``-wal`` file (a bot may be writing, or the last writer crashed): ``mode=ro``, which
      reads the WAL too. If that fails because the folder or the WAL index cannot be written,
      the ledger and its WAL are copied to a temporary folder and the copy is read (said on
      stderr); the original is not touched.
    """

    def __init__(self, path: Path | str, archive: Path | None = None, *, reader: Any = None,
                 immutable_ok: bool = True) -> None:
        self.sqlite = reader is None
        self.archive = archive  # rows moved out by `db archive`, read together with the ledger
        self._tmp: tempfile.TemporaryDirectory[str] | None = None  # set by a copy fallback only
        if reader is not None:
            # PostgreSQL (``from_url``): ``path`` is the password-free URL, for messages.
            self.path = path
            self.conn = reader
            self.tables = set(reader.table_names())
            self._check_tables(path, self.tables)
            return
        assert isinstance(path, Path)
        if not path.exists():
            raise AuditError(f"no database at {path} (run the bot first, or give --db URL)")
        self.path = path
        # False when this process writes to the ledger while reading it (the checkpoint job).
        self.immutable_ok = immutable_ok
        self.opened_as = "immutable"
        try:
            self.conn = self._open(path)
            # Sorts (ORDER BY over a million fills) in memory, not in temp files.
            self.conn.execute("PRAGMA temp_store=MEMORY")
            # USD-M futures fills (ledger symbols "UM:...") move the futures wallet, never a spot
            # balance: every spot report and balance check reads ``fills`` through this temp
            # view, which leaves them out (``main.fills`` still has them).
            spot_only = "symbol NOT LIKE 'UM:%'"
            self.conn.execute("PRAGMA cache_size=-131072")
            # Pages read through a memory map of the file (and of an attached archive) rather
            # than copied by read() into SQLite's cache: a cold report reads the whole ledger,
            # and at 1M fills this is ~0.1 s less CPU per process (session 9, bench/RESULTS.md).
            # The build caps the size (2 GiB by default; beyond it pages are read as before).
            # Safe beside a writing bot: WAL pages still come from the WAL, and a ledger file
            # never shrinks (nothing here VACUUMs), which is what would fault a mapping.
            self.conn.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
            if archive is not None:
                # After temp_store (changing it drops TEMP views), before query_only. Its
                # views read the ledger and the archive together (fills: spot only too).
                from executor.persistence.archive import ArchiveError, attach_archive

                try:
                    attach_archive(self.conn, archive, where={"fills": spot_only})
                except ArchiveError as exc:
                    raise AuditError(str(exc)) from None
            else:
                has_fills = "SELECT 1 FROM sqlite_master WHERE type='table' AND name='fills'"
                if self.conn.execute(has_fills).fetchone():
                    self.conn.execute(f"CREATE TEMP VIEW fills AS SELECT * FROM main.fills WHERE {spot_only}")
            self.conn.execute("PRAGMA query_only=ON")
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.Error as exc:
            raise AuditError(f"cannot read {path}: {exc}") from None
        self.tables = tables
        self._check_tables(path, tables)

    @staticmethod
    def _check_tables(path: Path | str, tables: set[str]) -> None:
        missing = {"orders", "fills", "balance_events", "reconciliation_runs", "runs"} - tables
        if missing:
            raise AuditError(
                f"{path} is not a binance-executor ledger (missing tables: {', '.join(sorted(missing))}); "
                "run `python run.py db upgrade` on it first"
            )

    def _open(self, path: Path) -> sqlite3.Connection:
        uri = path.resolve().as_uri()
        wal = path.with_name(path.name + "-wal")
        if not wal.exists() and self.immutable_ok:
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)
        self.opened_as = "read-only"
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opening is lazy
            return conn
        except sqlite3.OperationalError as exc:
            first = exc
        # The WAL index cannot be created or written here (read-only folder): read a copy.
        self._tmp = tempfile.TemporaryDirectory(prefix="bx-audit-")
        copy = Path(self._tmp.name) / path.name
        shutil.copyfile(path, copy)
        shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
        print(f"audit: cannot open {path} read-only in place ({first}); reading a copy of it and its WAL",
              file=sys.stderr)
        self.opened_as = "copy"
        return sqlite3.connect(copy, check_same_thread=False)

    @classmethod
    def from_url(cls, url: str, archive: Path | None = None) -> AuditDB:
        try:
            if not is_sqlite(url):
                from sqlalchemy.exc import SQLAlchemyError

                from executor.audit.reader import SqlReader

                where = describe_url(url)
                try:
                    reader = SqlReader(url, spot_fills=True)
                except (OSError, SQLAlchemyError) as exc:
                    raise AuditError(f"cannot read {where}: {type(exc).__name__}") from None
                try:
                    return cls(where, reader=reader)
                except BaseException:
                    reader.close()
                    raise
            path = database_path(url)
        except ValueError as exc:
            raise AuditError(str(exc)) from None
        return cls(path, archive)

    def close(self) -> None:
        self.conn.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> AuditDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs and reconciliations

    def runs(self, scope: Scope) -> list[dict[str, Any]]:
        sql = "SELECT id, version, profile, started_ms, stopped_ms, ended, end_reason FROM runs"
        params: list[Any] = []
        if scope.run_id is not None:
            sql += " WHERE id = ?"
            params.append(scope.run_id)
        cols = ("id", "version", "profile", "started_ms", "stopped_ms", "ended", "end_reason")
        return [dict(zip(cols, r, strict=True)) for r in self.conn.execute(sql + " ORDER BY id", params)]

    def reconciliations(self, scope: Scope) -> list[dict[str, Any]]:
        where, params = scope.where("started_ms", symbol_col=None)
        cols = (
            "id",
            "run_id",
            "reason",
            "started_ms",
            "finished_ms",
            "duration_ms",
            "outcome",
            "found",
            "fixed",
            "counts",
            "discrepancies",
            "error",
        )
        out = []
        for r in self.conn.execute(
            f"SELECT {', '.join(cols)} FROM reconciliation_runs{where} ORDER BY id", params
        ):
            row = dict(zip(cols, r, strict=True))
            for k in ("counts", "discrepancies"):
                row[k] = orjson.loads(row[k]) if row[k] else ([] if k == "discrepancies" else {})
            out.append(row)
        return out

    def operator_actions(self, scope: Scope) -> list[dict[str, Any]]:
        """Pause, resume, cancel-all and kill, with when and from where (none before 0004)."""
        if "operator_actions" not in self.tables:
            return []
        where, params = scope.where("at_ms", symbol_col=None)
        cols = ("id", "run_id", "at_ms", "action", "source", "detail")
        sql = f"SELECT {', '.join(cols)} FROM operator_actions{where} ORDER BY id"
        return [dict(zip(cols, r, strict=True)) for r in self.conn.execute(sql, params)]

    # -- orders and fills

    def orders(self, scope: Scope, *, slim: bool = False) -> list[OrderRow]:
        """Orders in scope. ``slim`` reads only what the metrics use (the rest is None)."""
        where, params = scope.where("created_ms")
        if slim:
            return self.slim_orders(where, params)
        sql = f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders{where} ORDER BY id"
        return self._order_rows(self.conn.execute(sql, params))

    def slim_orders(self, where: str, params: list[Any]) -> list[OrderRow]:
        """Orders matching a WHERE clause, with only what the metrics use (the rest is None)."""
        # One comprehension, no per-column loop: this is most of the order loading time at scale.
        sql = (
            "SELECT id, run_id, symbol, side, quantity, status, executed_qty, created_ms, acked_ms, "
            f"decision_bid, decision_ask, decision_ms, external, resolved_from_unknown FROM orders{where} "
            "ORDER BY id"
        )
        dec = Decimal
        make = OrderRow._make
        return [
            make(
                (
                    i,
                    None,
                    None,
                    run,
                    sym,
                    side,
                    None,
                    None,
                    None,
                    None if q is None else dec(q),
                    None,
                    st,
                    None,
                    dec(ex),
                    None,
                    cms,
                    None,
                    ack,
                    None,
                    None,
                    None if bid is None else dec(bid),
                    None if ask is None else dec(ask),
                    None,
                    dms,
                    None,
                    bool(ext),
                    bool(rfu),
                    None,
                )
            )
            for (i, run, sym, side, q, st, ex, cms, ack, bid, ask, dms, ext, rfu) in self.conn.execute(
                sql, params
            )
        ]

    @staticmethod
    def _order_rows(cursor: Iterable[Any]) -> list[OrderRow]:
        dec_idx = [i for i, c in enumerate(ORDER_COLUMNS) if c in ORDER_DECIMALS]
        bool_idx = [i for i, c in enumerate(ORDER_COLUMNS) if c in ORDER_BOOLS]
        out = []
        for r in cursor:
            row = list(r)
            for i in dec_idx:
                if row[i] is not None:
                    row[i] = Decimal(row[i])
            for i in bool_idx:
                row[i] = bool(row[i])
            out.append(OrderRow._make(row))
        return out

    def orders_by_id(self, ids: list[int]) -> list[OrderRow]:
        """Orders by row id (the orders of in-scope fills that were created before the scope)."""
        out: list[OrderRow] = []
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            sql = f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders WHERE id IN ({', '.join('?' * len(part))})"
            out.extend(self._order_rows(self.conn.execute(sql, part)))
        return out

    def fills(self, scope: Scope) -> list[FillRow]:
        """Fills in scope, in (time, trade id) order: the order PnL is computed in."""
        where, params = scope.where("trade_ms")
        return self.fills_where(where, params)

    def fills_where(self, where: str, params: list[Any]) -> list[FillRow]:
        """Fills matching a WHERE clause (with its leading `` WHERE``), in (time, trade id) order."""
        sql = (
            f"SELECT {', '.join(FILL_COLUMNS)} FROM fills{where} "
            "ORDER BY coalesce(trade_ms, received_ms), trade_id"
        )
        return self._fill_rows(self.conn.execute(sql, params))

    @staticmethod
    def _fill_rows(cursor: Iterable[Any]) -> list[FillRow]:
        dec = Decimal
        sides = _SIDES
        make = FillRow._make
        return [
            make(
                (
                    i,
                    sym,
                    tid,
                    oid,
                    cid,
                    xid,
                    sides.get(side),
                    dec(p),
                    dec(q),
                    dec(qq),
                    dec(c),
                    ca,
                    None if mk is None else bool(mk),
                    tms,
                    src,
                    rms,
                    run,
                )
            )
            for (
                i,
                sym,
                tid,
                oid,
                cid,
                xid,
                side,
                p,
                q,
                qq,
                c,
                ca,
                mk,
                tms,
                src,
                rms,
                run,
            ) in cursor
        ]

    def iter_fills(self, scope: Scope, page: int = 100_000, *, slim: bool = False) -> Iterator[FillRow]:
        """Fills in scope in row id order, read a page at a time (memory stays bounded).
        ``slim``: only symbol, trade id, side, qty, commission and its asset (what positions
        need; the rest is None or zero), about three times faster to read."""
        where, params = scope.where("trade_ms")
        after = 0
        cols = ("id, symbol, trade_id, side, qty, commission, commission_asset" if slim
                else ", ".join(FILL_COLUMNS))
        while True:
            cond = (where + " AND" if where else " WHERE") + " id > ?"
            sql = f"SELECT {cols} FROM fills{cond} ORDER BY id LIMIT ?"
            cursor = self.conn.execute(sql, [*params, after, page])
            rows = self._slim_fill_rows(cursor) if slim else self._fill_rows(cursor)
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1].id

    @staticmethod
    def _slim_fill_rows(cursor: Iterable[Any]) -> list[FillRow]:
        dec = Decimal
        sides = _SIDES
        make = FillRow._make
        zero = dec(0)
        return [make((i, sym, tid, None, None, None, sides.get(side), zero, dec(q), zero,
                      dec(c) if c != "0" else zero, ca, None, None, "", 0, None))
                for (i, sym, tid, side, q, c, ca) in cursor]

    def fill_symbols(self, scope: Scope) -> list[str]:
        where, params = scope.where("trade_ms")
        return [r[0] for r in self.conn.execute(f"SELECT DISTINCT symbol FROM fills{where}", params)]

    def market_context(self, symbol: str, scope: Scope) -> list[tuple[int, Decimal | None, Decimal | None,
                                                                      Decimal | None]]:
        """The market as the bot saw it when it decided each order of ``symbol`` in scope (any
        outcome, placed or not): (time, bid, ask, mark) in time order. The ledger records no
        other market data."""
        where, params = Scope(scope.run_id, scope.since_ms, scope.until_ms, symbol).where("created_ms")
        cond = (where + " AND" if where else " WHERE") + \
            " (decision_bid IS NOT NULL OR decision_ask IS NOT NULL OR decision_mark IS NOT NULL)"
        sql = ("SELECT coalesce(decision_ms, created_ms) AS t, decision_bid, decision_ask, decision_mark "
               f"FROM orders{cond} ORDER BY t, id")
        return [(t, _d(b), _d(a), _d(m)) for t, b, a, m in self.conn.execute(sql, params)]

    def first_fills(self, order_ids: list[int] | None = None) -> dict[int, int]:
        """When each order's first fill was received (``received_ms``), over every fill of the
        ledger; for ``order_ids`` only, or for every order when None."""
        sql = "SELECT order_id, min(received_ms) FROM fills WHERE order_id {} GROUP BY order_id"
        if order_ids is None:
            return dict(self.conn.execute(sql.format("IS NOT NULL")))
        out: dict[int, int] = {}
        for i in range(0, len(order_ids), 500):
            part = order_ids[i : i + 500]
            out.update(self.conn.execute(sql.format(f"IN ({', '.join('?' * len(part))})"), part))
        return out

    def iter_fill_deltas(self, scope: Scope) -> Iterator[tuple[Any, ...]]:
        """Raw (id, symbol, trade_id, side, qty, quote_qty, commission, commission_asset, time)
        in time order, for ``audit verify`` (text money, converted by the caller). Within a
        millisecond, in the order the ledger received them (row id): trade ids are per symbol,
        so across symbols only arrival order follows the exchange's (a balance observation of
        that millisecond reflects the fills before it, ``verify._Asset.same_ms``)."""
        where, params = scope.where("trade_ms", symbol_col=None)
        sql = (
            "SELECT id, symbol, trade_id, side, qty, quote_qty, commission, commission_asset, "
            f"coalesce(trade_ms, received_ms) AS t FROM fills{where} ORDER BY t, id"
        )
        return self.conn.execute(sql, params)

    def price_points(self, symbol: str, until_ms: int | None = None) -> list[tuple[int, Decimal]]:
        """Every known price of ``symbol`` in time order: fill prices and decision-time marks
        (or mids). Used to value third-asset fees (BNB) at the time of the fill."""
        pts: list[tuple[int, Decimal]] = []
        params: list[Any] = [symbol]
        fill_t, order_t = "coalesce(trade_ms, received_ms)", "coalesce(decision_ms, created_ms)"
        fill_cond = order_cond = ""
        if until_ms is not None:
            # The expression, not its alias: PostgreSQL has no output aliases in WHERE.
            fill_cond, order_cond = f" AND {fill_t} < ?", f" AND {order_t} < ?"
            params.append(until_ms)
        for t, p in self.conn.execute(
            f"SELECT {fill_t} AS t, price FROM fills WHERE symbol = ?{fill_cond}", params
        ):
            pts.append((t, Decimal(p)))
        for t, mark, bid, ask in self.conn.execute(
            f"SELECT {order_t} AS t, decision_mark, decision_bid, decision_ask "
            f"FROM orders WHERE symbol = ?{order_cond}",
            params,
        ):
            ref = _mid(bid, ask) or _d(mark)
            if ref is not None:
                pts.append((t, ref))
        pts.sort(key=lambda x: x[0])
        return pts

    def last_price(self, symbol: str, until_ms: int | None = None) -> tuple[int, Decimal, str] | None:
        """The latest known price of ``symbol``: (time, price, where it came from)."""
        best: tuple[int, Decimal, str] | None = None
        params: list[Any] = [symbol]
        cond = ""
        if until_ms is not None:
            cond = " AND trade_ms < ?"
            params.append(until_ms)
        r = self.conn.execute(
            f"SELECT trade_ms, price FROM fills WHERE symbol = ? AND trade_ms IS NOT NULL{cond} "
            "ORDER BY trade_ms DESC, trade_id DESC LIMIT 1",
            params,
        ).fetchone()
        if r is not None:
            best = (r[0], Decimal(r[1]), "last fill")
        params = [symbol]
        cond = ""
        if until_ms is not None:
            cond = " AND created_ms < ?"
            params.append(until_ms)
        for t, mark, bid, ask in self.conn.execute(
            "SELECT coalesce(decision_ms, created_ms), decision_mark, decision_bid, decision_ask FROM orders "
            f"WHERE symbol = ?{cond} AND (decision_mark IS NOT NULL OR decision_bid IS NOT NULL) "
            "ORDER BY created_ms DESC LIMIT 1",
            params,
        ):
            ref = _d(mark) or _mid(bid, ask)
            if ref is not None and (best is None or t > best[0]):
                best = (t, ref, "decision mark" if mark is not None else "decision mid")
        return best

    # -- balances

    def balance_events(
        self, scope: Scope, *, kind: str | None = None, received_ms: int | None = None
    ) -> list[BalanceEventRow]:
        where, params = scope.where("event_ms", symbol_col=None)
        if kind is not None:
            where += (" AND" if where else " WHERE") + " kind = ?"
            params.append(kind)
        if received_ms is not None:
            where += (" AND" if where else " WHERE") + " received_ms = ?"
            params.append(received_ms)
        cols = (
            "id",
            "kind",
            "asset",
            "free",
            "locked",
            "delta",
            "source",
            "event_ref",
            "event_ms",
            "received_ms",
            "run_id",
        )
        out = []
        sql = f"SELECT {', '.join(cols)} FROM balance_events{where} ORDER BY id"
        for r in self.conn.execute(sql, params):
            row = list(r)
            for i in (3, 4, 5):
                if row[i] is not None:
                    row[i] = Decimal(row[i])
            out.append(BalanceEventRow._make(row))
        return out

    def snapshot_rows(self, scope: Scope, *, last: bool = False) -> list[BalanceEventRow]:
        """The rows of the first (or last) REST balance snapshot in scope: every row one
        snapshot wrote shares its receive time, reference and run."""
        where, params = scope.where("event_ms", symbol_col=None)
        cond = (where + " AND" if where else " WHERE") + " kind = 'rest_snapshot'"
        order = "DESC" if last else "ASC"
        row = self.conn.execute(
            f"SELECT received_ms, event_ref, run_id FROM balance_events{cond} ORDER BY id {order} LIMIT 1",
            params,
        ).fetchone()
        if row is None:
            return []
        return [
            e
            for e in self.balance_events(scope, kind="rest_snapshot", received_ms=row[0])
            if (e.event_ref, e.run_id) == (row[1], row[2])
        ]

    def iter_observations(self, scope: Scope) -> Iterator[tuple[int, int, str, str, str | None, str | None]]:
        """(event_ms, id, kind, asset, free, locked) of every recorded balance with an exchange
        time, in (time, id) order."""
        where, params = scope.where("event_ms", symbol_col=None)
        cond = (where + " AND" if where else " WHERE") + (
            " kind != 'balanceUpdate' AND event_ms IS NOT NULL AND (free IS NOT NULL OR locked IS NOT NULL)"
        )
        return self.conn.execute(
            f"SELECT event_ms, id, kind, asset, free, locked FROM balance_events{cond} ORDER BY event_ms, id",
            params,
        )

    def distinct(self, table: str, column: str) -> list[Any]:
        """The distinct non-NULL values of ``column`` (the first column of an index of
        ``table``), in order, by a walk along that index: a seek per value, not a scan of
        every row (neither SQLite nor PostgreSQL has a skip scan). ``table`` and ``column``
        are this package's names, never input."""
        walk = (
            f"WITH RECURSIVE w(x) AS (SELECT min({column}) FROM {table} UNION ALL "
            f"SELECT (SELECT min({column}) FROM {table} WHERE {column} > w.x) FROM w "
            "WHERE w.x IS NOT NULL) SELECT x FROM w WHERE x IS NOT NULL"
        )
        return [r[0] for r in self.conn.execute(walk)]

    def count_untimed_observations(self, scope: Scope) -> int:
        """Observations with no exchange time (``kind != 'balanceUpdate' AND event_ms IS NULL``),
        counted per kind along the (kind, event_ms) index: a seek per kind instead of a scan
        of every balance event (session 6 round 2: 0.4-1.4 s at two million, before the
        fork of ``audit verify``)."""
        where, params = scope.where("received_ms", symbol_col=None)
        cond = (where + " AND" if where else " WHERE") + " kind = ? AND event_ms IS NULL"
        kinds = [k for k in self.distinct("balance_events", "kind") if k != "balanceUpdate"]
        return sum(
            self.conn.execute(f"SELECT count(*) FROM balance_events{cond}", [*params, kind]).fetchone()[0]
            for kind in kinds
        )

    def balances(self) -> list[dict[str, Any]]:
        cols = ("asset", "free", "locked", "source", "event_ref", "event_ms", "updated_ms")
        out = []
        for r in self.conn.execute(f"SELECT {', '.join(cols)} FROM balances ORDER BY asset"):
            row = dict(zip(cols, r, strict=True))
            row["free"], row["locked"] = Decimal(row["free"]), Decimal(row["locked"])
            out.append(row)
        return out

    def known_assets(self) -> frozenset[str]:
        """Every asset of ``balance_events`` and ``balances``. The distinct assets come from a
        walk along the (asset, event_ms) index, one step per asset, not a scan of every
        balance event (neither SQLite nor PostgreSQL has a skip scan): 0.1-0.3 s -> ~0 at
        two million events."""
        assets = set(self.distinct("balance_events", "asset"))
        assets |= {r[0] for r in self.conn.execute("SELECT asset FROM balances")}
        return frozenset(assets)


def _mid(bid: Any, ask: Any) -> Decimal | None:
    if bid is None or ask is None:
        return None
    return (Decimal(bid) + Decimal(ask)) / 2


def middle_ms(spans: Iterable[tuple[int | None, int | None]]) -> int | None:
    """The middle of the (first, last) trade times of every symbol that has one: where a time
    split of the audit cuts (any cut gives the same result; the middle balances the halves).
    None when there is nothing to split (no times, or a single millisecond)."""
    known = [(first, last) for first, last in spans if first is not None and last is not None]
    lo = [first for first, _ in known]
    hi = [last for _, last in known]
    if not lo or min(lo) == max(hi):
        return None
    return (min(lo) + max(hi)) // 2
