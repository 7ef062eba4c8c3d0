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
``balances`` table's row, must equal the derived total exactly. A difference is reported
with the observation's row id and the fills and balanceUpdates applied to that asset
since its previous agreeing observation; the derivation then continues from the recorded
value, so one unexplained change is reported once, not at every later row.

Totals (free + locked) are what trading explains; placing and cancelling orders only
moves amounts between free and locked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from executor.audit.query import AuditDB, BalanceEventRow, Scope, fmt_ms, split_symbol
from executor.core.ledger import fill_deltas
from executor.core.orders import Side

__all__ = ["Difference", "VerifyResult", "render_verify", "verify"]

ZERO = Decimal(0)
_MAX_IDS = 20
_SNAPSHOT = "rest_snapshot"
_DELTA = "balanceUpdate"


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
    __slots__ = ("fill_count", "fill_ids", "since_ms", "total", "update_ids")

    def __init__(self, total: Decimal, since_ms: int | None) -> None:
        self.total = total
        self.since_ms = since_ms  # deltas at or before this time are already in ``total``
        self.fill_ids: list[int] = []
        self.fill_count = 0
        self.update_ids: list[int] = []

    def agreed(self) -> None:
        self.fill_ids.clear()
        self.fill_count = 0
        self.update_ids.clear()


def _total(ev: BalanceEventRow) -> Decimal:
    return (ev.free or ZERO) + (ev.locked or ZERO)


def verify(db: AuditDB, scope: Scope) -> VerifyResult:
    events = db.balance_events(Scope(scope.run_id, scope.since_ms, scope.until_ms))
    snapshots = [e for e in events if e.kind == _SNAPSHOT]
    observations = [e for e in events if e.kind != _DELTA and (e.free is not None or e.locked is not None)]
    assets: dict[str, _Asset] = {}
    notes: list[str] = []
    base_ms: int | None = None
    if snapshots:
        first = snapshots[0]
        group = [
            e
            for e in snapshots
            if (e.received_ms, e.event_ref, e.run_id) == (first.received_ms, first.event_ref, first.run_id)
        ]
        base_ms = first.event_ms if first.event_ms is not None else first.received_ms
        if first.event_ms is None:
            notes.append("the opening snapshot has no exchange time; its receive time is used")
        for e in group:
            assets[e.asset] = _Asset(_total(e), base_ms)
        opening_ids = {e.id for e in group}
        opening_ref = (
            f"REST snapshot balance_events #{min(opening_ids)}-#{max(opening_ids)} at {fmt_ms(base_ms)}"
        )
    else:
        opening_ids = set()
        for e in observations:
            if e.asset not in assets and e.event_ms is not None:
                assets[e.asset] = _Asset(_total(e), e.event_ms)
                opening_ids.add(e.id)
        opening_ref = "no REST snapshot in scope: each asset opens at its first recorded balance"
        notes.append(opening_ref)
    opening = {a: s.total for a, s in sorted(assets.items())}
    res = VerifyResult(opening_ref, opening, notes=notes)

    def state(asset: str) -> _Asset:
        st = assets.get(asset)
        if st is None:
            st = assets[asset] = _Asset(ZERO, base_ms)
        return st

    # Observations to check, in exchange-time order (then row order).
    checks: list[tuple[int, int, str, str, str, Decimal, Any]] = []
    for e in observations:
        if e.id in opening_ids:
            continue
        if e.event_ms is None:
            res.unchecked += 1
            continue
        checks.append((e.event_ms, e.id, e.asset, f"balance_events #{e.id}", e.kind, _total(e), e))
    if scope.until_ms is None and (scope.run_id is None or scope.run_id == _last_run(db)):
        for b in db.balances():
            if b["event_ms"] is not None:
                checks.append(
                    (
                        b["event_ms"],
                        1 << 62,
                        b["asset"],
                        f"balances[{b['asset']}]",
                        f"latest balance from {b['source']}",
                        b["free"] + b["locked"],
                        None,
                    )
                )
    checks.sort(key=lambda c: (c[0], c[1]))
    if snapshots:
        last = snapshots[-1]
        last_ids = {
            e.id for e in snapshots if (e.received_ms, e.event_ref) == (last.received_ms, last.event_ref)
        }
        res.last_snapshot = (
            f"REST snapshot balance_events #{min(last_ids)}-#{max(last_ids)} at {fmt_ms(last.event_ms)}"
        )
    else:
        last_ids = set()

    updates = sorted(
        (e for e in events if e.kind == _DELTA and e.delta is not None),
        key=lambda e: (e.event_ms if e.event_ms is not None else e.received_ms, e.id),
    )
    res.balance_updates = len(updates)
    known = db.known_assets()
    pairs: dict[str, tuple[str, str]] = {}
    fills = db.iter_fill_deltas(Scope(scope.run_id, scope.since_ms, scope.until_ms))
    pending = next(fills, None)
    ui = 0
    n_fills = 0
    bad_ids: set[int] = set()

    def apply_until(t: int | None) -> None:
        nonlocal pending, ui, n_fills
        while pending is not None and (t is None or pending[8] <= t):
            fid, sym, _tid, side, qty, quote_qty, fee, fee_asset, ft = pending
            if sym not in pairs:
                pairs[sym] = split_symbol(sym, known)
            base, quote = pairs[sym]
            if side not in _SIDES:
                notes.append(f"fill #{fid} ({sym} trade {_tid}) has no side and cannot be applied")
                pending = next(fills, None)
                continue
            n_fills += 1
            amounts = _FillAmounts(_SIDES[side], Decimal(qty), Decimal(quote_qty), Decimal(fee), fee_asset)
            for asset, amount in fill_deltas(amounts, base, quote).items():  # type: ignore[arg-type]
                if amount:
                    _apply(state(asset), amount, ft, fid)
            pending = next(fills, None)
        while ui < len(updates):
            u = updates[ui]
            ut = u.event_ms if u.event_ms is not None else u.received_ms
            if t is not None and ut > t:
                break
            st = state(u.asset)
            if st.since_ms is None or ut > st.since_ms:
                assert u.delta is not None
                st.total += u.delta
                st.update_ids.append(u.id)
            ui += 1

    for t, _order, asset, row, kind, recorded, ev in checks:
        apply_until(t)
        st = state(asset)
        if st.since_ms is not None and t <= st.since_ms:
            continue  # before this asset's opening
        res.checked += 1
        if st.total != recorded:
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
            if ev is not None and ev.id in last_ids:
                bad_ids.add(ev.id)
            st.total = recorded  # continue from what was recorded: report each change once
        st.agreed()
    apply_until(None)
    res.fills = n_fills
    res.derived = {a: s.total for a, s in sorted(assets.items())}
    if last_ids:
        res.last_snapshot_ok = not bad_ids
    return res


def _apply(st: _Asset, amount: Decimal, t: int, fill_id: int) -> None:
    if st.since_ms is not None and t <= st.since_ms:
        return
    st.total += amount
    st.fill_count += 1
    if len(st.fill_ids) < _MAX_IDS:
        st.fill_ids.append(fill_id)


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
