"""Audit checkpoints: the report's fold (``executor.audit.fold``) stored in the ledger up to a
cut time, so auditing a ledger of millions of fills folds only what came after the cut.

A checkpoint is a cache: deleting it changes no result, only the time taken. What it covers:

* every fill recorded when it was written (id <= ``max_fill_id``) with a time at or before
  ``cut_ms``; fills are folded in (time, trade id) order, so a fill recorded later with a
  time at or before the cut (a gap fill of old trades) would have had to go *inside* the
  fold: the checkpoint is then stale and the audit folds everything afresh (and says so);
* every order with id <= ``max_order_id`` that was final when it was written and whose
  fills had begun to arrive (or that executed nothing), except the ids listed as pending:
  final orders do not change, so their outcome, fill ratio and latencies are settled.

The bot writes checkpoints as the ledger grows (a scheduled job runs ``run.py db checkpoint``
in its own process, so the fold never competes with trading for the interpreter) with a cut
that trails the present by a settle time and, while a run is live, by its last successful
reconciliation: every trade before a completed gap fill is already in the ledger.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from executor.audit.fold import FOLD_VERSION, LedgerFold, PriceAt
from executor.audit.query import AuditDB, FillRow, OrderRow, fmt_ms
from executor.persistence.records import FINAL_STATUSES

__all__ = [
    "Checkpoint",
    "late_fill",
    "load_checkpoint",
    "resume_report",
    "save_checkpoint",
    "settled_cut",
    "write_report_checkpoint",
]

KIND_REPORT = "report"
_TIME = "coalesce(trade_ms, received_ms)"


@dataclass(frozen=True)
class Checkpoint:
    kind: str
    version: int
    cut_ms: int
    max_fill_id: int
    max_order_id: int
    max_balance_event_id: int
    created_ms: int
    state: dict[str, Any]


def load_checkpoint(conn: sqlite3.Connection, kind: str, version: int = FOLD_VERSION) -> Checkpoint | None:
    """The stored checkpoint of ``kind``; None when there is none, the ledger predates the
    table, or it was written in another format."""
    try:
        row = conn.execute(
            "SELECT kind, version, cut_ms, max_fill_id, max_order_id, max_balance_event_id, created_ms, "
            "state FROM audit_checkpoints WHERE kind = ?",
            (kind,),
        ).fetchone()
    except sqlite3.OperationalError:  # no such table: a ledger from before migration 0003
        return None
    if row is None or row[1] != version:
        return None
    return Checkpoint(*row[:7], orjson.loads(zlib.decompress(row[7])))


def save_checkpoint(conn: sqlite3.Connection, cp: Checkpoint) -> None:
    blob = zlib.compress(orjson.dumps(cp.state), 1)
    with conn:
        conn.execute(
            "INSERT INTO audit_checkpoints (kind, version, cut_ms, max_fill_id, max_order_id, "
            "max_balance_event_id, created_ms, state) VALUES (?,?,?,?,?,?,?,?) "
            "ON CONFLICT(kind) DO UPDATE SET version = excluded.version, cut_ms = excluded.cut_ms, "
            "max_fill_id = excluded.max_fill_id, max_order_id = excluded.max_order_id, "
            "max_balance_event_id = excluded.max_balance_event_id, created_ms = excluded.created_ms, "
            "state = excluded.state",
            (
                cp.kind,
                cp.version,
                cp.cut_ms,
                cp.max_fill_id,
                cp.max_order_id,
                cp.max_balance_event_id,
                cp.created_ms,
                blob,
            ),
        )


def _max_id(db: AuditDB, table: str) -> int:
    return db.conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]


def _per_run(db: AuditDB) -> bool:
    """Per-run groups are folded only for a ledger of several runs (half the work otherwise)."""
    return db.conn.execute("SELECT count(*) FROM runs").fetchone()[0] > 1


def late_fill(db: AuditDB, cp: Checkpoint) -> str | None:
    """A fill recorded after ``cp`` whose time is at or before its cut (a gap fill of old
    trades): it belongs inside what ``cp`` folded, so ``cp`` cannot be continued."""
    r = db.conn.execute(
        f"SELECT id FROM fills WHERE id > ? AND {_TIME} <= ? LIMIT 1", (cp.max_fill_id, cp.cut_ms)
    ).fetchone()
    return None if r is None else f"fill #{r[0]} was recorded after it with an earlier time"


def _stale(db: AuditDB, cp: Checkpoint) -> str | None:
    """Why ``cp`` cannot be continued: rows recorded after it that belong before its cut, or a
    second run (whose per-run groups it did not keep). None when it can."""
    if cp.state["fold"]["per_run"] != _per_run(db):
        return "a second run began after it"
    why = late_fill(db, cp)
    if why:
        return why
    # An order's first-fill latency was settled from the fills it had; a later one received
    # earlier (a clock step back) would change it.
    r = db.conn.execute(
        "SELECT f.id FROM fills f WHERE f.id > ? AND f.order_id <= ? AND f.received_ms < "
        "(SELECT min(g.received_ms) FROM fills g WHERE g.order_id = f.order_id AND g.id <= ?) LIMIT 1",
        (cp.max_fill_id, cp.max_order_id, cp.max_fill_id),
    ).fetchone()
    if r is not None:
        return f"fill #{r[0]} was received before its order's first fill in it"
    # A later order with an earlier decision time would be a price point inside the fold.
    r = db.conn.execute(
        "SELECT id FROM orders WHERE id > ? AND coalesce(decision_ms, created_ms) <= ? LIMIT 1",
        (cp.max_order_id, cp.cut_ms),
    ).fetchone()
    if r is not None:
        return f"order #{r[0]} was recorded after it with an earlier time"
    return None


def _fold_orders(db: AuditDB, fold: LedgerFold, orders: list[OrderRow], settle: bool) -> list[int]:
    """Fold ``orders``; with ``settle``, only the settled ones. Returns the ids left pending."""
    first = db.first_fills([o.id for o in orders]) if len(orders) < 50_000 else db.first_fills()
    pending: list[int] = []
    done: list[OrderRow] = []
    for o in orders:
        if settle and not (o.status in FINAL_STATUSES and (not o.executed_qty or o.id in first)):
            pending.append(o.id)
        else:
            done.append(o)
    fold.add_orders(done, first)
    return pending


def _fold_fills(db: AuditDB, fold: LedgerFold, fills: list[FillRow], known: list[OrderRow]) -> None:
    refs = {o.id: (o.external, o.decision_bid, o.decision_ask) for o in known}
    ids = sorted({f.order_id for f in fills if f.order_id is not None and f.order_id not in refs})
    refs.update((o.id, (o.external, o.decision_bid, o.decision_ask)) for o in _orders_by_id(db, ids))
    fold.add_fills(fills, refs.get)


def _late_first_fills(db: AuditDB, fold: LedgerFold, cp: Checkpoint, max_fill: int | None = None) -> None:
    """Orders ``cp`` folded as final with nothing executed and no fill yet, whose first fill
    was recorded after it (the ledger learned of a fill after the order's end), up to fill id
    ``max_fill``: their first-fill latency is counted now, as a fold of every row would."""
    pending = set(cp.state["pending_orders"])
    sql = "SELECT DISTINCT order_id FROM fills WHERE id > ? AND order_id <= ?"
    params = [cp.max_fill_id, cp.max_order_id]
    if max_fill is not None:
        sql += " AND id <= ?"
        params.append(max_fill)
    ids = sorted(r[0] for r in db.conn.execute(sql, params) if r[0] not in pending)
    if not ids:
        return
    had: set[int] = set()
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        had.update(
            r[0]
            for r in db.conn.execute(
                f"SELECT DISTINCT order_id FROM fills WHERE order_id IN ({', '.join('?' * len(part))}) "
                "AND id <= ?",
                [*part, cp.max_fill_id],
            )
        )
    late = [i for i in ids if i not in had]
    first = db.first_fills(late)
    for o in _orders_by_id(db, late):
        fold.add_first_fill(o, first[o.id])


def _orders_by_id(db: AuditDB, ids: list[int]) -> list[OrderRow]:
    if len(ids) > 50_000:  # most of the ledger: one scan beats many IN lists
        lo, hi = ids[0], ids[-1]
        wanted = set(ids)
        return [o for o in db.slim_orders(" WHERE id BETWEEN ? AND ?", [lo, hi]) if o.id in wanted]
    out: list[OrderRow] = []
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        out.extend(db.slim_orders(f" WHERE id IN ({', '.join('?' * len(part))})", part))
    return out


def resume_report(
    db: AuditDB, pairs: Callable[[str], tuple[str, str]], price_at: PriceAt
) -> tuple[LedgerFold | None, str | None]:
    """The report's fold of the whole ledger from its checkpoint plus every row after it, and
    a note saying so; (None, note) when the checkpoint is missing or stale."""
    cp = load_checkpoint(db.conn, KIND_REPORT)
    if cp is None:
        return None, None
    why = _stale(db, cp)
    if why:
        return None, f"the audit checkpoint at {fmt_ms(cp.cut_ms)} is stale ({why}): folded everything afresh"
    st = cp.state
    fold = LedgerFold.from_state(st["fold"], pairs, price_at)
    orders = db.slim_orders(" WHERE id > ?", [cp.max_order_id])
    pending = st["pending_orders"]
    for i in range(0, len(pending), 500):
        part = pending[i : i + 500]
        orders.extend(db.slim_orders(f" WHERE id IN ({', '.join('?' * len(part))})", part))
    _fold_orders(db, fold, orders, settle=False)
    fills = db.fills_where(
        f" WHERE id >= ? AND (id > ? OR {_TIME} > ?)", [st["first_unfolded_fill"], cp.max_fill_id, cp.cut_ms]
    )
    _fold_fills(db, fold, fills, orders)
    _late_first_fills(db, fold, cp)
    return fold, (
        f"folded from the audit checkpoint at {fmt_ms(cp.cut_ms)} plus {len(fills):,} later fills "
        f"and {len(orders):,} later or open orders"
    )


def settled_cut(db: AuditDB, now_ms: int, settle_ms: int) -> int:
    """The latest time every fill before which is surely recorded: ``settle_ms`` before now
    and, while the last run is live, no later than its last successful reconciliation."""
    cut = now_ms - settle_ms
    live = db.conn.execute("SELECT id FROM runs WHERE stopped_ms IS NULL ORDER BY id DESC LIMIT 1").fetchone()
    if live is not None:
        r = db.conn.execute(
            "SELECT max(started_ms) FROM reconciliation_runs WHERE run_id = ? AND outcome = 'ok'", (live[0],)
        ).fetchone()
        cut = min(cut, r[0] if r[0] is not None else -1)
    return cut


@dataclass(frozen=True)
class WriteResult:
    cut_ms: int
    fresh: bool  # folded from the start of the ledger (no usable checkpoint before)
    fills: int  # folded now
    orders: int
    pending: int
    reason: str | None  # why an earlier checkpoint could not be continued


def write_report_checkpoint(db: AuditDB, writer: sqlite3.Connection, cut_ms: int, now_ms: int) -> WriteResult:
    """Fold the ledger up to ``cut_ms`` into the stored checkpoint, continuing the existing one
    when it is valid. ``db`` reads (one snapshot), ``writer`` is a read-write connection."""
    from executor.audit.report import Pairs, PriceSeries

    pairs = Pairs(db.known_assets())
    prices = PriceSeries(db)
    db.conn.execute("BEGIN")  # one snapshot for every read below
    try:
        max_fill, max_order, max_bal = (_max_id(db, t) for t in ("fills", "orders", "balance_events"))
        cp = load_checkpoint(db.conn, KIND_REPORT)
        reason = None
        if cp is not None:
            reason = _stale(db, cp) or ("the new cut is earlier" if cut_ms < cp.cut_ms else None)
        if cp is not None and reason is None:
            st = cp.state
            fold = LedgerFold.from_state(st["fold"], pairs, price_at=prices)
            orders = db.slim_orders(" WHERE id > ? AND id <= ?", [cp.max_order_id, max_order])
            pending = st["pending_orders"]
            for i in range(0, len(pending), 500):
                part = pending[i : i + 500]
                orders.extend(db.slim_orders(f" WHERE id IN ({', '.join('?' * len(part))})", part))
            fills = db.fills_where(
                f" WHERE id >= ? AND id <= ? AND (id > ? OR {_TIME} > ?) AND {_TIME} <= ?",
                [st["first_unfolded_fill"], max_fill, cp.max_fill_id, cp.cut_ms, cut_ms],
            )
            first_unfolded_from = st["first_unfolded_fill"]
        else:
            fold = LedgerFold(pairs, prices, per_run=_per_run(db))
            orders = db.slim_orders(" WHERE id <= ?", [max_order])
            fills = db.fills_where(f" WHERE id <= ? AND {_TIME} <= ?", [max_fill, cut_ms])
            first_unfolded_from = 0
        still = _fold_orders(db, fold, orders, settle=True)
        _fold_fills(db, fold, fills, orders)
        if cp is not None and reason is None:
            _late_first_fills(db, fold, cp, max_fill)
        r = db.conn.execute(
            f"SELECT min(id) FROM fills WHERE id >= ? AND id <= ? AND {_TIME} > ?",
            (first_unfolded_from, max_fill, cut_ms),
        ).fetchone()
    finally:
        db.conn.execute("COMMIT")
    state = {
        "fold": fold.state(),
        "pending_orders": sorted(still),
        "first_unfolded_fill": r[0] if r[0] is not None else max_fill + 1,
    }
    save_checkpoint(
        writer, Checkpoint(KIND_REPORT, FOLD_VERSION, cut_ms, max_fill, max_order, max_bal, now_ms, state)
    )
    return WriteResult(
        cut_ms, cp is None or reason is not None, len(fills), len(orders) - len(still), len(still), reason
    )
