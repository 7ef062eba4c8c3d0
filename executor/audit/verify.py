"""``audit verify``: re-derive every asset's balance from the ledger and check it against
every balance the ledger recorded.

Opening: the first REST balance snapshot in scope (all rows written by one snapshot). An
asset the snapshot does not list starts at 0 from the snapshot's time. Without any REST
snapshot each asset opens at its first recorded observation (and the summary says so).

Then, in exchange-time order, every fill changes the totals (BUY +base -quote, SELL the
reverse, the commission out of its asset: ``executor.core.ledger.fill_deltas``) and every
balanceUpdate adds its delta. Each later observation, stream ``outboundAccountPosition``
or REST snapshot row (free + locked at its exchange time ``event_ms``; an event reflects
every change up to and including that millisecond) and, for an unbounded scope, the
``balances`` table's row, must equal the derived total exactly, or, when it shares the
millisecond of the asset's last deltas, a total those deltas pass through in some order
(the exchange's order within a millisecond is not in the ledger). A difference is reported
with the observation's row id and the fills and balanceUpdates applied to that asset
since its previous agreeing observation; the derivation then continues from the recorded
value, so one unexplained change (a missing fill, a deposit with no balanceUpdate) is
reported once, not at every later row, and one wrong row is reported with the next row of
that asset (which differs from it by the same amount).

Totals (free + locked) are what trading explains; placing and cancelling orders only
moves amounts between free and locked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from executor.audit.query import AuditDB, BalanceEventRow, Scope, fmt_ms, split_symbol
from executor.core.ledger import fill_deltas
from executor.core.orders import Side

__all__ = ["Difference", "VerifyResult", "render_verify", "verify", "verify_reference"]

ZERO = Decimal(0)
_MAX_IDS = 20
_SNAPSHOT = "rest_snapshot"
_DELTA = "balanceUpdate"
_SAME_MS_MAX = 4096  # totals kept for one asset's millisecond (see ``_Asset.same_ms``)


@dataclass
class Difference:
    asset: str
    row: str  # e.g. "balance_events #42" or "balances[BTC]"
    kind: str
    at_ms: int | None
    expected: Decimal
    recorded: Decimal
    fill_ids: list[int]  # fills changing this asset since its last agreeing observation (capped)
    fill_count: int
    balance_update_ids: list[int]

    @property
    def difference(self) -> Decimal:
        return self.recorded - self.expected

    def __str__(self) -> str:
        fills = ", ".join(f"#{i}" for i in self.fill_ids)
        if self.fill_count > len(self.fill_ids):
            fills += f" ... ({self.fill_count} fills)"
        updates = ", ".join(f"#{i}" for i in self.balance_update_ids) or "none"
        return (
            f"{self.asset}: {self.row} ({self.kind} at {fmt_ms(self.at_ms)}) records {self.recorded}, "
            f"derived {self.expected} (difference {self.difference:+}); fills since the last agreeing "
            f"balance: {fills or 'none'}; balanceUpdates: {updates}"
        )


@dataclass
class VerifyResult:
    opening_ref: str
    opening: dict[str, Decimal]
    fills: int = 0
    balance_updates: int = 0
    checked: int = 0
    unchecked: int = 0  # observations without an exchange time
    derived: dict[str, Decimal] = field(default_factory=dict)
    last_snapshot: str | None = None
    last_snapshot_ok: bool | None = None
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


class _FillAmounts(NamedTuple):
    """What ``fill_deltas`` reads of a fill."""

    side: Side
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str | None


_SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}


class _Asset:
    __slots__ = ("fill_count", "fill_ids", "last_ms", "same_ms", "since_ms", "total", "update_ids")

    def __init__(self, total: Decimal, since_ms: int | None) -> None:
        self.total = total
        self.since_ms = since_ms  # deltas at or before this time are already in ``total``
        self.fill_ids: list[int] = []
        self.fill_count = 0
        self.update_ids: list[int] = []
        # The totals the deltas of the millisecond ``last_ms`` can pass through, in *any*
        # order: the total before them plus every subset sum of them. An observation of that
        # same millisecond may come from before or between them (an order's lock and its
        # immediate fill share E/u), and the ledger cannot know the exchange's order within
        # a millisecond: trade ids are per symbol, so two symbols filling in one millisecond
        # have no common order. Any subset is a prefix of some order, so any of these totals
        # explains it. Past ``_SAME_MS_MAX`` totals (many deltas in one millisecond) only the
        # totals along the applied order are added.
        self.last_ms: int | None = None
        self.same_ms: list[Decimal] = []

    def add(self, amount: Decimal, t: int) -> None:
        if t != self.last_ms:
            self.last_ms = t
            self.same_ms = [self.total]
        self.total += amount
        same = self.same_ms
        if len(same) * 2 <= _SAME_MS_MAX:
            seen = set(same)
            same.extend(v for v in (s + amount for s in list(same)) if not (v in seen or seen.add(v)))
        elif self.total not in same:
            same.append(self.total)

    def explains(self, recorded: Decimal, t: int) -> bool:
        if recorded == self.total:
            return True
        return t == self.last_ms and recorded in self.same_ms


def _total(ev: BalanceEventRow) -> Decimal:
    return (ev.free or ZERO) + (ev.locked or ZERO)


def _opening(db: AuditDB, scope: Scope) -> tuple[dict[str, _Asset], set[int], str, int | None, list[str]]:
    """Opening totals per asset, the rows they came from, a description, the opening time."""
    notes: list[str] = []
    group = db.snapshot_rows(scope)
    assets: dict[str, _Asset] = {}
    if group:
        first = group[0]
        base_ms = first.event_ms if first.event_ms is not None else first.received_ms
        if first.event_ms is None:
            notes.append("the opening snapshot has no exchange time; its receive time is used")
        for e in group:
            assets[e.asset] = _Asset(_total(e), base_ms)
        ids = {e.id for e in group}
        return (
            assets,
            ids,
            f"REST snapshot balance_events #{min(ids)}-#{max(ids)} at {fmt_ms(base_ms)}",
            base_ms,
            notes,
        )
    ids = set()
    for t, oid, _kind, asset, free, locked in db.iter_observations(scope):
        if asset not in assets:
            assets[asset] = _Asset(Decimal(free or 0) + Decimal(locked or 0), t)
            ids.add(oid)
    ref = "no REST snapshot in scope: each asset opens at its first recorded balance"
    notes.append(ref)
    return assets, ids, ref, None, notes


def verify(
    db: AuditDB, scope: Scope, *, use_checkpoint: bool = True, set_based: bool | None = None
) -> VerifyResult:
    """Re-derive and check every balance. The whole ledger resumes from the verify checkpoint
    when there is a valid one (``verify_checkpoint``: only the rows after its cut are walked).
    Otherwise a clean ledger is confirmed by one set-based SQL statement (``verify_sql``;
    ``set_based``: True/False, or None for the faster on this backend: PostgreSQL) or by the
    column-wise fast path (``verify_fast``); anything neither can confirm goes through
    ``verify_reference``, which names every difference. All give the same result (tests/audit)."""
    from executor.audit.verify_fast import verify_fast
    from executor.audit.verify_futures import with_futures  # the USD-M wallet (its own module)
    from executor.audit.verify_sql import verify_sql

    scope = Scope(scope.run_id, scope.since_ms, scope.until_ms)  # balances are account-wide
    note = None
    if use_checkpoint and scope == Scope():
        from executor.audit.verify_checkpoint import resume_verify

        resumed, note = resume_verify(db)
        if resumed is not None:
            return with_futures(db, scope, resumed)
    assets, opening_ids, opening_ref, base_ms, notes = _opening(db, scope)
    res = VerifyResult(opening_ref, {a: s.total for a, s in sorted(assets.items())}, notes=notes)
    res.unchecked = db.count_untimed_observations(scope)
    res.last_snapshot, last_ids = _last_snapshot(db, scope)
    table = _table(db, scope)
    opening = {a: (st.total, st.since_ms) for a, st in assets.items()}
    # The set-based statement is the faster confirmation on PostgreSQL (11.6 s against 16.5 s
    # at a million fills); SQLite runs it too, but its column-wise fast path, split over two
    # processes, is about three times as fast there (5.7 s against 15.9 s in session 6):
    # bench/RESULTS.md, issue 16.
    sql_first = set_based if set_based is not None else not db.sqlite
    if not (
        sql_first and verify_sql(db, scope, res, opening, opening_ids, base_ms, last_ids, table)
    ) and not verify_fast(db, scope, res, assets, opening_ids, base_ms, last_ids, table):
        res = verify_reference(db, scope)
    if note:
        res.notes.append(note)
    return with_futures(db, scope, res)


def _last_snapshot(db: AuditDB, scope: Scope) -> tuple[str | None, set[int]]:
    """The last REST snapshot in scope: its description and row ids."""
    last_group = db.snapshot_rows(scope, last=True)
    last_ids = {e.id for e in last_group}
    if not last_group:
        return None, last_ids
    at = fmt_ms(last_group[0].event_ms)
    return f"REST snapshot balance_events #{min(last_ids)}-#{max(last_ids)} at {at}", last_ids


def _table(db: AuditDB, scope: Scope) -> list[dict[str, Any]]:
    """The balances table (latest value per asset), checked only when the scope reaches the
    end of the ledger; in exchange-time order."""
    if scope.until_ms is None and (scope.run_id is None or scope.run_id == _last_run(db)):
        return sorted(db.balances(), key=lambda b: b["event_ms"] if b["event_ms"] is not None else _NEVER)
    return []


_NEVER = 1 << 62


def verify_reference(db: AuditDB, scope: Scope) -> VerifyResult:
    """The straightforward derivation: one time-ordered walk with per-asset state, naming the
    rows of every difference."""
    scope = Scope(scope.run_id, scope.since_ms, scope.until_ms)  # balances are account-wide
    assets, opening_ids, opening_ref, base_ms, notes = _opening(db, scope)
    res = VerifyResult(opening_ref, {a: s.total for a, s in sorted(assets.items())}, notes=notes)
    res.unchecked = db.count_untimed_observations(scope)
    res.last_snapshot, last_ids = _last_snapshot(db, scope)
    updates = sorted(
        (e for e in db.balance_events(scope, kind=_DELTA) if e.delta is not None),
        key=lambda e: (e.event_ms if e.event_ms is not None else e.received_ms, e.id),
    )
    derive(
        db,
        res,
        assets,
        base_ms,
        db.iter_fill_deltas(scope),
        updates,
        db.iter_observations(scope),
        _table(db, scope),
        opening_ids,
        last_ids,
        start_ms=base_ms if base_ms is not None else -_NEVER,
    )
    return res


def derive(
    db: AuditDB,
    res: VerifyResult,
    assets: dict[str, _Asset],
    base_ms: int | None,
    fills: Iterator[tuple[Any, ...]],
    updates: Sequence[BalanceEventRow],
    observations: Iterable[tuple[int, int, str, str, str | None, str | None]],
    table: list[dict[str, Any]],
    opening_ids: set[int],
    last_ids: set[int],
    *,
    start_ms: int,
    end_ms: int | None = _NEVER,
    new_asset: Callable[[Decimal, int | None], _Asset] = _Asset,
    track: bool = False,
    pairs: dict[str, tuple[str, str]] | None = None,
    known: frozenset[str] | None = None,
) -> int:
    """The reference's walk from ``assets`` (every delta at or before ``start_ms`` already in
    them): apply ``fills`` (``iter_fill_deltas`` rows) and ``updates`` in time order, check
    each of ``observations`` (``iter_observations`` rows) and ``table`` rows, adding to
    ``res``'s counts, differences and notes. The last deltas applied are those at or before
    ``end_ms`` (None: the last observation's time). Returns that time.

    ``verify_reference`` runs it over the whole scope; ``verify_checkpoint`` over the rows up
    to a cut and, resuming, over the rows after it. With ``track`` the assets (made by
    ``new_asset``) are told of every delta applied (``tracked``) and every agreeing check
    (``checked_at``): what a later check of the balances table needs."""
    never = _NEVER

    def state(asset: str) -> _Asset:
        st = assets.get(asset)
        if st is None:
            st = assets[asset] = new_asset(ZERO, base_ms)
        return st

    known = db.known_assets() if known is None else known
    pairs = {} if pairs is None else pairs
    pending = next(fills, None)
    # Time of the next delta to apply (fill or balanceUpdate); observations before it need no work.
    ui = 0
    n_fills = 0
    bad_ids: set[int] = set()
    notes = res.notes

    def apply_until(t: int) -> int:
        """Apply every delta at or before ``t``; return the time of the next one."""
        nonlocal pending, ui, n_fills
        while pending is not None and pending[8] <= t:
            fid, sym, tid, side, qty, quote_qty, fee, fee_asset, ft = pending
            pending = next(fills, None)
            if sym not in pairs:
                pairs[sym] = split_symbol(sym, known)
            if side not in _SIDES:
                notes.append(f"fill #{fid} ({sym} trade {tid}) has no side and cannot be applied")
                continue
            n_fills += 1
            base, quote = pairs[sym]
            amounts = _FillAmounts(_SIDES[side], Decimal(qty), Decimal(quote_qty), Decimal(fee), fee_asset)
            for asset, amount in fill_deltas(amounts, base, quote).items():  # type: ignore[arg-type]
                if amount:
                    st = assets.get(asset) or state(asset)
                    if st.since_ms is None or ft > st.since_ms:
                        st.add(amount, ft)
                        st.fill_count += 1
                        if len(st.fill_ids) < _MAX_IDS:
                            st.fill_ids.append(fid)
                        if track:
                            st.tracked(ft, fid, amount, False)  # type: ignore[attr-defined]
        while ui < len(updates):
            u = updates[ui]
            ut = u.event_ms if u.event_ms is not None else u.received_ms
            if ut > t:
                break
            st = state(u.asset)
            if st.since_ms is None or ut > st.since_ms:
                assert u.delta is not None
                st.add(u.delta, ut)
                st.update_ids.append(u.id)
                if track:
                    st.tracked(ut, u.id, u.delta, True)  # type: ignore[attr-defined]
            ui += 1
        nxt = pending[8] if pending is not None else never
        if ui < len(updates):
            u = updates[ui]
            nxt = min(nxt, u.event_ms if u.event_ms is not None else u.received_ms)
        return nxt

    def check(t: int, asset: str, recorded: Decimal, row: str, kind: str) -> bool:
        st = assets.get(asset) or state(asset)
        if st.since_ms is not None and t <= st.since_ms:
            return True  # before this asset's opening
        res.checked += 1
        if not st.explains(recorded, t):
            res.differences.append(
                Difference(
                    asset,
                    row,
                    kind,
                    t,
                    st.total,
                    recorded,
                    list(st.fill_ids),
                    st.fill_count,
                    list(st.update_ids),
                )
            )
            # Continue from what was recorded: each unexplained change is reported once.
            st.total = recorded
            st.last_ms, st.same_ms = None, []
            ok = False
        else:
            ok = True
            if track:
                st.checked_at(t)  # type: ignore[attr-defined]
        if st.fill_count or st.update_ids:
            st.fill_ids.clear()
            st.fill_count = 0
            st.update_ids.clear()
        return ok

    # The balances table (latest value per asset) when the scope reaches the end of the ledger:
    # each row is checked at its exchange time, after the observations of that millisecond.
    bi = 0

    def check_table(before: int) -> None:
        nonlocal bi, next_delta
        while (
            bi < len(table)
            and (table[bi]["event_ms"] if table[bi]["event_ms"] is not None else never) < before
        ):
            b = table[bi]
            bt = b["event_ms"] if b["event_ms"] is not None else never
            if bt >= next_delta:
                next_delta = apply_until(bt)
            check(
                bt,
                b["asset"],
                b["free"] + b["locked"],
                f"balances[{b['asset']}]",
                f"latest balance from {b['source']}",
            )
            bi += 1

    next_delta = apply_until(start_ms)
    last_t = start_ms
    dec = Decimal
    for t, oid, kind, asset, free, locked in observations:
        if oid in opening_ids:
            continue
        last_t = t
        if bi < len(table):
            check_table(t)
        if t >= next_delta:
            next_delta = apply_until(t)
        recorded = dec(free) + dec(locked) if locked is not None and free is not None else dec(free or locked)
        if not check(t, asset, recorded, f"balance_events #{oid}", kind) and oid in last_ids:
            bad_ids.add(oid)
    check_table(never + 1)
    end = max(start_ms, last_t) if end_ms is None else end_ms
    apply_until(end)
    res.fills += n_fills
    res.balance_updates += ui
    res.derived = {a: s.total for a, s in sorted(assets.items())}
    if last_ids:
        res.last_snapshot_ok = not bad_ids
    return end


def _last_run(db: AuditDB) -> int | None:
    row = db.conn.execute("SELECT max(id) FROM runs").fetchone()
    return row[0] if row else None


def render_verify(res: VerifyResult) -> str:
    if res.ok:
        snap = "" if res.last_snapshot is None else "; last REST snapshot agrees"
        return (
            f"OK: {len(res.derived)} assets re-derived from {res.fills} fills and {res.balance_updates} "
            f"balanceUpdates agree with all {res.checked} recorded balances{snap}\n"
        )
    out = [
        f"MISMATCH: {len(res.differences)} unexplained balance difference(s) "
        f"({res.checked} recorded balances checked, {res.fills} fills, {res.balance_updates} balanceUpdates)",
        f"opening: {res.opening_ref}",
    ]
    out.extend(f"  {d}" for d in res.differences)
    if res.last_snapshot is not None:
        out.append(f"last {res.last_snapshot}: {'agrees' if res.last_snapshot_ok else 'DIFFERS'}")
    out.extend(f"note: {n}" for n in res.notes)
    return "\n".join(out) + "\n"


def verify_dict(res: VerifyResult) -> dict[str, Any]:
    def s(v: Decimal) -> str:
        return str(v)

    return {
        "ok": res.ok,
        "opening": res.opening_ref,
        "opening_balances": {a: s(v) for a, v in res.opening.items()},
        "derived_balances": {a: s(v) for a, v in res.derived.items()},
        "fills": res.fills,
        "balance_updates": res.balance_updates,
        "checked": res.checked,
        "unchecked": res.unchecked,
        "last_snapshot": res.last_snapshot,
        "last_snapshot_ok": res.last_snapshot_ok,
        "differences": [
            {
                "asset": d.asset,
                "row": d.row,
                "kind": d.kind,
                "at_ms": d.at_ms,
                "expected": s(d.expected),
                "recorded": s(d.recorded),
                "difference": s(d.difference),
                "fill_ids": d.fill_ids,
                "fill_count": d.fill_count,
                "balance_update_ids": d.balance_update_ids,
            }
            for d in res.differences
        ],
        "notes": res.notes,
    }
