"""The ``audit verify`` checkpoint: the derivation of a ledger that verified clean up to a cut,
stored so verifying a ledger of millions of fills walks only the rows after the cut.

Like the report's checkpoint (``executor.audit.checkpoints``) it is a cache: deleting it
changes no result, only the time taken. It is written only when every recorded balance at or
before the cut agrees, and acts as a synthetic opening at the cut: per asset the derived total
(every fill and balanceUpdate at or before the cut applied), what a later difference report
names (the fills and balanceUpdates since the asset's last agreeing balance), the opening's
description, the counts and notes so far, and the id watermarks. ``verify`` of the whole
ledger resumes from it: ``verify.derive`` walks only the rows timed after the cut, starting
from those totals, and the result is the one a walk over every row gives (plus a note).

Why the result is the same (tests/audit/test_verify_checkpoint.py checks it):

* The cut is a point where the reference applies deltas: the time of the last recorded
  balance at or before the requested cut (or the opening). Right after checking the
  balances of that millisecond the reference has applied exactly the deltas at or before
  it, so a walk resumed there applies the later ones in the same batches, in the same order.
* Rows recorded after the checkpoint (id above its watermark) with a time at or before the
  cut would belong inside it: the checkpoint is then stale and everything is verified
  afresh (with a note). Rows are only ever appended (fills change only their order link).
* The ``balances`` table changes as the ledger grows, so it is not in the checkpoint. A
  table row timed after the cut is checked by the resumed walk. One timed at or before it
  (an asset that has not changed since) is checked here against the total at its time,
  rebuilt from the asset's last agreeing balance and the deltas since (kept per asset, up
  to ``_TAIL_MAX``); then the asset's named deltas are those after the row, as the reference
  would have them. Anything this cannot settle exactly (a row that does not agree, a row
  older than the asset's last checked balance, too many deltas since) falls back to the
  full verification, which names every difference.
* Between two checks the reference applies the fills, then the balanceUpdates, and accepts a
  balance equal to a total within the millisecond of the asset's last delta
  (``_Asset.same_ms``), so what it accepts depends on where it checks. More check points
  (finer batches) only ever accept more: the run of deltas at a millisecond can only grow
  and keeps its totals. The walk up to the cut (without the balances table) has fewer check
  points than the full walk, so everything it accepted the full walk accepts, and a
  balances-table row judged here in its order is accepted by the full walk too. After the
  cut both walks have the same check points. (A cut between check points would add one:
  the resumed walk could accept a balance the full walk reports.)
* Sums are exact (an inexact one is refused), so the order of additions never matters.
* A ledger without a REST snapshot opens each asset at its first observation, which may
  come after any cut: it gets no checkpoint.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, Inexact, localcontext
from typing import Any

from executor.audit.checkpoints import Checkpoint, late_fill, load_checkpoint, save_checkpoint
from executor.audit.query import AuditDB, AuditError, BalanceEventRow, Scope, fmt_ms, split_symbol
from executor.audit.verify import (
    _MAX_IDS,
    ZERO,
    VerifyResult,
    _Asset,
    _opening,
    derive,
)

__all__ = ["KIND_VERIFY", "VERIFY_VERSION", "VerifyWriteResult", "resume_verify", "write_verify_checkpoint"]

KIND_VERIFY = "verify"
VERIFY_VERSION = 1
# Deltas kept per asset since its last agreeing balance (to check a balances-table row timed
# before the cut); an asset with more is settled by the full verification instead.
_TAIL_MAX = 1000
_FILL_TIME = "coalesce(trade_ms, received_ms)"
_EVENT_TIME = "coalesce(event_ms, received_ms)"
_OBS = "kind != 'balanceUpdate' AND event_ms IS NOT NULL AND (free IS NOT NULL OR locked IS NOT NULL)"
_UPD = "kind = 'balanceUpdate' AND delta IS NOT NULL"


class _Tracked(_Asset):
    """An asset that also remembers its last agreeing check (the anchor) and the deltas since."""

    __slots__ = ("a_last_ms", "a_same", "a_total", "lc", "tail")

    def __init__(self, total: Decimal, since_ms: int | None) -> None:
        super().__init__(total, since_ms)
        self.lc: int | None = None  # time of the last agreeing check (None: none since the opening)
        self.a_total = total  # the state right after it
        self.a_last_ms: int | None = None
        self.a_same: list[Decimal] = []
        self.tail: list[tuple[int, int, Decimal, bool]] | None = []  # (time, id, amount, is_update)

    def tracked(self, t: int, rid: int, amount: Decimal, update: bool) -> None:
        if self.tail is not None:
            if len(self.tail) >= _TAIL_MAX:
                self.tail = None
            else:
                self.tail.append((t, rid, amount, update))

    def checked_at(self, t: int) -> None:
        self.lc, self.a_total, self.a_last_ms, self.a_same = t, self.total, self.last_ms, list(self.same_ms)
        self.tail = []

    def dump(self) -> dict[str, Any]:
        return {
            "total": str(self.total),
            "since": self.since_ms,
            "fill_ids": self.fill_ids,
            "fill_count": self.fill_count,
            "update_ids": self.update_ids,
            "last_ms": self.last_ms,
            "same": [str(v) for v in self.same_ms],
            "lc": self.lc,
            "a_total": str(self.a_total),
            "a_last_ms": self.a_last_ms,
            "a_same": [str(v) for v in self.a_same],
            "tail": None if self.tail is None else [[t, i, str(a), u] for t, i, a, u in self.tail],
        }

    @classmethod
    def load(cls, d: dict[str, Any]) -> _Tracked:
        dec = Decimal
        st = cls(dec(d["total"]), d["since"])
        st.fill_ids, st.fill_count = list(d["fill_ids"]), d["fill_count"]
        st.update_ids = list(d["update_ids"])
        st.last_ms, st.same_ms = d["last_ms"], [dec(v) for v in d["same"]]
        st.lc, st.a_total, st.a_last_ms = d["lc"], dec(d["a_total"]), d["a_last_ms"]
        st.a_same = [dec(v) for v in d["a_same"]]
        tail = d["tail"]
        st.tail = None if tail is None else [(t, i, dec(a), u) for t, i, a, u in tail]
        return st


@dataclass(frozen=True)
class VerifyWriteResult:
    # Written: the stored cut, the time of the last recorded balance at or before the one asked
    # (or the opening's). Not written: the cut asked.
    cut_ms: int
    fresh: bool  # walked from the opening (no usable checkpoint to continue)
    written: bool
    reason: str | None  # why nothing was written, or why an earlier checkpoint was not continued


# -- reading the rows on either side of a cut


def _fills(
    db: AuditDB, from_id: int, after_ms: int | None, to_id: int | None, until_ms: int | None
) -> Iterator[tuple[Any, ...]]:
    """``iter_fill_deltas`` rows with id >= ``from_id`` (and <= ``to_id``) timed in
    (``after_ms``, ``until_ms``], in the reference's order."""
    where, params = ["id >= ?"], [from_id]
    for cond, v in ((f"{_FILL_TIME} > ?", after_ms), ("id <= ?", to_id), (f"{_FILL_TIME} <= ?", until_ms)):
        if v is not None:
            where.append(cond)
            params.append(v)
    return db.conn.execute(
        "SELECT id, symbol, trade_id, side, qty, quote_qty, commission, commission_asset, "
        f"{_FILL_TIME} AS t FROM fills WHERE {' AND '.join(where)} ORDER BY t, id",
        params,
    )


def _updates(
    db: AuditDB, from_id: int, after_ms: int | None, to_id: int | None, until_ms: int | None
) -> list[BalanceEventRow]:
    where, params = [_UPD, "id >= ?"], [from_id]
    for cond, v in ((f"{_EVENT_TIME} > ?", after_ms), ("id <= ?", to_id), (f"{_EVENT_TIME} <= ?", until_ms)):
        if v is not None:
            where.append(cond)
            params.append(v)
    rows = [
        BalanceEventRow(i, k, a, None, None, Decimal(d), s, ref, ems, rms, run)
        for i, k, a, d, s, ref, ems, rms, run in db.conn.execute(
            "SELECT id, kind, asset, delta, source, event_ref, event_ms, received_ms, run_id "
            f"FROM balance_events WHERE {' AND '.join(where)}",
            params,
        )
    ]
    rows.sort(key=lambda e: (e.event_ms if e.event_ms is not None else e.received_ms, e.id))
    return rows


def _observations(
    db: AuditDB, from_id: int, after_ms: int | None, to_id: int | None, until_ms: int | None
) -> Iterator[tuple[int, int, str, str, str | None, str | None]]:
    where, params = [_OBS, "id >= ?"], [from_id]
    for cond, v in (("event_ms > ?", after_ms), ("id <= ?", to_id), ("event_ms <= ?", until_ms)):
        if v is not None:
            where.append(cond)
            params.append(v)
    return db.conn.execute(
        f"SELECT event_ms, id, kind, asset, free, locked FROM balance_events WHERE {' AND '.join(where)} "
        "ORDER BY event_ms, id",
        params,
    )


def _first_after(db: AuditDB, table: str, time: str, from_id: int, to_id: int, cut_ms: int) -> int:
    """The first id in [from_id, to_id] timed after the cut (``to_id + 1`` when none): every row
    a resumed walk needs has an id at least this."""
    r = db.conn.execute(
        f"SELECT id FROM {table} WHERE id >= ? AND id <= ? AND {time} > ? ORDER BY id LIMIT 1",
        (from_id, to_id, cut_ms),
    ).fetchone()
    return r[0] if r is not None else to_id + 1


def _max_id(db: AuditDB, table: str) -> int:
    return db.conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]


def _untimed(db: AuditDB, after_id: int, to_id: int | None = None) -> int:
    sql = "SELECT count(*) FROM balance_events WHERE id > ? AND kind != 'balanceUpdate' AND event_ms IS NULL"
    params = [after_id]
    if to_id is not None:
        sql += " AND id <= ?"
        params.append(to_id)
    return db.conn.execute(sql, params).fetchone()[0]


def _event_assets(db: AuditDB, after_id: int, to_id: int | None = None) -> set[str]:
    # SQLite: NOT INDEXED so it walks the id range, not the whole (asset, event_ms) index;
    # PostgreSQL's planner picks the primary key range itself.
    hint = " NOT INDEXED" if db.sqlite else ""
    sql = f"SELECT DISTINCT asset FROM balance_events{hint} WHERE id > ?"
    params = [after_id]
    if to_id is not None:
        sql += " AND id <= ?"
        params.append(to_id)
    return {r[0] for r in db.conn.execute(sql, params)}


def _known(db: AuditDB, cp: Checkpoint) -> frozenset[str]:
    """``AuditDB.known_assets`` without rescanning the rows the checkpoint has seen."""
    table = {r[0] for r in db.conn.execute("SELECT asset FROM balances")}
    return frozenset(set(cp.state["event_assets"]) | _event_assets(db, cp.max_balance_event_id) | table)


def _stale(db: AuditDB, cp: Checkpoint, known: frozenset[str]) -> str | None:
    """Why rows recorded after ``cp`` change what it holds (None when none do)."""
    why = late_fill(db, cp)
    if why:
        return why
    r = db.conn.execute(
        "SELECT id FROM balance_events WHERE id > ? AND ((event_ms IS NOT NULL AND event_ms <= ?) OR "
        "(kind = 'balanceUpdate' AND event_ms IS NULL AND received_ms <= ?)) LIMIT 1",
        (cp.max_balance_event_id, cp.cut_ms, cp.cut_ms),
    ).fetchone()
    if r is not None:
        return f"balance_events #{r[0]} was recorded after it with an earlier time"
    received, ref, run = cp.state["opening_key"]
    same = "IS" if db.sqlite else "IS NOT DISTINCT FROM"  # equal, NULL included
    r = db.conn.execute(
        "SELECT id FROM balance_events WHERE id > ? AND kind = 'rest_snapshot' AND received_ms = ? "
        f"AND event_ref {same} ? AND run_id {same} ? LIMIT 1",
        (cp.max_balance_event_id, received, ref, run),
    ).fetchone()
    if r is not None:
        return f"balance_events #{r[0]} was recorded after it as part of the opening snapshot"
    for sym, pair in cp.state["pairs"].items():
        try:
            now = split_symbol(sym, known)
        except AuditError:  # pragma: no cover - it split before, and assets are only added
            now = ("", "")
        if list(now) != pair:
            return f"{sym} now splits as {now[0]}/{now[1]}"
    return None


# -- writing


def write_verify_checkpoint(
    db: AuditDB, writer: sqlite3.Connection, cut_ms: int, now_ms: int
) -> VerifyWriteResult:
    """Derive the ledger up to ``cut_ms`` (continuing the stored checkpoint when it is valid)
    and store it when every balance up to there agrees. The stored cut is the time of the
    last recorded balance at or before ``cut_ms``. ``db`` reads (one snapshot), ``writer`` is
    a read-write connection. A stale checkpoint that cannot be replaced is deleted."""
    db.conn.execute("BEGIN")  # one snapshot for every read below
    try:
        out = _write(db, cut_ms, now_ms)
    finally:
        db.conn.execute("COMMIT")
    cp, result, drop = out
    if cp is not None:
        save_checkpoint(writer, cp)
    elif drop:
        with writer:
            writer.execute("DELETE FROM audit_checkpoints WHERE kind = ?", (KIND_VERIFY,))
    return result


def _write(db: AuditDB, cut_ms: int, now_ms: int) -> tuple[Checkpoint | None, VerifyWriteResult, bool]:
    max_fill, max_order, max_bal = (_max_id(db, t) for t in ("fills", "orders", "balance_events"))
    old = load_checkpoint(db.conn, KIND_VERIFY, VERIFY_VERSION)
    why_not: str | None = None
    if old is not None:
        why_not = _stale(db, old, _known(db, old))
        if why_not is None and cut_ms < old.cut_ms:
            why_not = "the new cut is earlier"

    def refuse(reason: str, fresh: bool) -> tuple[None, VerifyWriteResult, bool]:
        # A valid checkpoint stays (it still gives the same result); a stale one goes.
        stale = old is not None and why_not is not None and why_not != "the new cut is earlier"
        full = reason if why_not is None else f"{why_not}; {reason}"
        return None, VerifyWriteResult(cut_ms, fresh, False, full), stale

    if old is not None and why_not is None:
        st = old.state
        fresh = False
        assets: dict[str, _Asset] = {a: _Tracked.load(d) for a, d in st["assets"].items()}
        res = VerifyResult(st["opening_ref"], {a: Decimal(v) for a, v in st["opening"].items()})
        res.notes = list(st["notes"])
        res.fills, res.balance_updates, res.checked = st["fills"], st["balance_updates"], st["checked"]
        base_ms, start = st["base_ms"], old.cut_ms
        opening_ids, opening_key, pairs = set(st["opening_ids"]), st["opening_key"], dict(st["pairs"])
        ff, fb = st["first_fill_after"], st["first_event_after"]
        untimed = st["untimed"] + _untimed(db, old.max_balance_event_id, max_bal)
        event_assets = set(st["event_assets"]) | _event_assets(db, old.max_balance_event_id, max_bal)
        after: int | None = old.cut_ms
    else:
        fresh = True
        group = db.snapshot_rows(Scope())
        if not group:
            return refuse("no REST snapshot to open from (each asset opens at its first balance)", True)
        opened, opening_ids, opening_ref, base_ms, notes = _opening(db, Scope())
        assert base_ms is not None
        if cut_ms < base_ms:
            return refuse(f"the cut is before the opening snapshot at {fmt_ms(base_ms)}", True)
        first = group[0]
        opening_key = [first.received_ms, first.event_ref, first.run_id]
        assets = {a: _Tracked(s.total, s.since_ms) for a, s in opened.items()}
        res = VerifyResult(opening_ref, {a: s.total for a, s in sorted(assets.items())}, notes=notes)
        start, pairs, ff, fb, after = base_ms, {}, 0, 0, None
        untimed = _untimed(db, 0, max_bal)
        event_assets = _event_assets(db, 0, max_bal)
    try:
        with localcontext() as ctx:
            ctx.traps[Inexact] = True  # exact sums: the order of additions can never matter
            cut = derive(
                db,
                res,
                assets,
                base_ms,
                _fills(db, ff, after, max_fill, cut_ms),
                _updates(db, fb, after, max_bal, cut_ms),
                _observations(db, fb, after, max_bal, cut_ms),
                [],
                opening_ids,
                set(),
                start_ms=start,
                end_ms=None,
                new_asset=_Tracked,
                track=True,
                pairs=pairs,
                known=frozenset(event_assets | {r[0] for r in db.conn.execute("SELECT asset FROM balances")}),
            )
    except Inexact:
        return refuse("a derived total is not exact at the decimal precision", fresh)
    except AuditError as exc:
        return refuse(str(exc), fresh)
    if res.differences:
        return refuse(
            f"{len(res.differences)} balance difference(s) at or before {fmt_ms(cut_ms)} "
            f"(first: {res.differences[0]})",
            fresh,
        )
    state = {
        "opening_ref": res.opening_ref,
        "opening": {a: str(v) for a, v in res.opening.items()},
        "opening_ids": sorted(opening_ids),
        "opening_key": opening_key,
        "base_ms": base_ms,
        "notes": res.notes,
        "fills": res.fills,
        "balance_updates": res.balance_updates,
        "checked": res.checked,
        "untimed": untimed,
        "event_assets": sorted(event_assets),
        "pairs": {s: list(p) for s, p in sorted(pairs.items())},
        "first_fill_after": _first_after(db, "fills", _FILL_TIME, ff, max_fill, cut),
        "first_event_after": _first_after(db, "balance_events", _EVENT_TIME, fb, max_bal, cut),
        "assets": {a: s.dump() for a, s in sorted(assets.items())},  # type: ignore[attr-defined]
    }
    cp = Checkpoint(KIND_VERIFY, VERIFY_VERSION, cut, max_fill, max_order, max_bal, now_ms, state)
    return cp, VerifyWriteResult(cut, fresh, True, why_not), False


# -- resuming


_SKIP = object()


def _table_row_before_cut(st: _Tracked, bt: int, recorded: Decimal) -> str | object | None:
    """Check a balances-table row timed at or before the cut as the reference would have, at
    its time: None when it agrees (``st``'s named deltas become those after it), ``_SKIP``
    when the reference does not check it, or why the full verification must decide."""
    if st.since_ms is not None and bt <= st.since_ms:
        return _SKIP
    if st.lc is not None and bt < st.lc:
        return "it is older than the asset's last checked balance"
    if st.tail is None:
        return "too many changes of the asset since its last checked balance"
    before = [e for e in st.tail if e[0] <= bt]
    try:
        with localcontext() as ctx:
            ctx.traps[Inexact] = True
            totals = [st.a_total]
            for e in before:
                totals.append(totals[-1] + e[2])
    except Inexact:
        return "the total at its time is not exact"
    if recorded != totals[-1]:
        # The reference also accepts a total within the millisecond of the asset's last delta,
        # as the deltas were applied (this order is the checkpoint's: see the module docstring).
        if before:
            last = before[-1][0]
            k = len(before)
            while k > 0 and before[k - 1][0] == last:
                k -= 1
            same = totals[k:]
        else:
            last, same = st.a_last_ms, st.a_same
        if not (bt == last and recorded in same):
            return "it differs from the derived total"
    later = [e for e in st.tail if e[0] > bt]
    fills = [e[1] for e in later if not e[3]]
    st.fill_ids, st.fill_count, st.update_ids = fills[:_MAX_IDS], len(fills), [e[1] for e in later if e[3]]
    return None


def resume_verify(db: AuditDB) -> tuple[VerifyResult | None, str | None]:
    """``verify`` of the whole ledger from its checkpoint plus every row after the cut, with a
    note saying so; (None, note) when the checkpoint is missing, stale or cannot settle a
    balances-table row (the caller then verifies everything)."""
    cp = load_checkpoint(db.conn, KIND_VERIFY, VERIFY_VERSION)
    if cp is None:
        return None, None
    db.conn.execute("BEGIN")  # one snapshot for every read below
    try:
        return _resume(db, cp)
    finally:
        db.conn.execute("COMMIT")


def _resume(db: AuditDB, cp: Checkpoint) -> tuple[VerifyResult | None, str | None]:
    from executor.audit.verify import _NEVER, _last_snapshot

    at = fmt_ms(cp.cut_ms)
    known = _known(db, cp)
    why = _stale(db, cp, known)
    if why:
        return None, f"the verify checkpoint at {at} is stale ({why}): verified everything afresh"
    st = cp.state
    assets: dict[str, _Asset] = {a: _Tracked.load(d) for a, d in st["assets"].items()}
    res = VerifyResult(st["opening_ref"], {a: Decimal(v) for a, v in st["opening"].items()})
    res.notes = list(st["notes"])
    res.fills, res.balance_updates, res.checked = st["fills"], st["balance_updates"], st["checked"]
    res.unchecked = st["untimed"] + _untimed(db, cp.max_balance_event_id)
    res.last_snapshot, last_ids = _last_snapshot(db, Scope())
    base_ms = st["base_ms"]
    table = sorted(db.balances(), key=lambda b: b["event_ms"] if b["event_ms"] is not None else _NEVER)
    later = []
    for b in table:
        bt = b["event_ms"]
        if bt is None or bt > cp.cut_ms:
            later.append(b)
            continue
        a = assets.get(b["asset"])
        if a is None:
            a = assets[b["asset"]] = _Tracked(ZERO, base_ms)
        out = _table_row_before_cut(a, bt, b["free"] + b["locked"])  # type: ignore[arg-type]
        if out is None:
            res.checked += 1
        elif out is not _SKIP:
            return None, (
                f"the verify checkpoint at {at} cannot settle balances[{b['asset']}] ({out}): "
                "verified everything afresh"
            )
    fills_before = res.fills
    updates = _updates(db, st["first_event_after"], cp.cut_ms, None, None)
    derive(
        db,
        res,
        assets,
        base_ms,
        _fills(db, st["first_fill_after"], cp.cut_ms, None, None),
        updates,
        _observations(db, st["first_event_after"], cp.cut_ms, None, None),
        later,
        set(st["opening_ids"]),
        last_ids,
        start_ms=cp.cut_ms,
        pairs={s: (p[0], p[1]) for s, p in st["pairs"].items()},
        known=known,
    )
    res.notes.append(
        f"verified from the verify checkpoint at {at} plus {res.fills - fills_before:,} later fills "
        f"and {len(updates):,} later balanceUpdates"
    )
    return res, None
