"""``audit verify``, futures part: re-derive the USDⓈ-M wallet balance from the income the
exchange booked (realized PnL + funding − commissions + transfers: every ``futures_income``
row) and check it against every wallet balance the ledger recorded (``futures_account_updates``:
stream ACCOUNT_UPDATE ``B[].wb`` and the REST snapshots' ``walletBalance``).

A recorded balance at exchange time ``t`` must equal ``C`` + the sum of the asset's income rows
up to ``t``, where ``C`` (what the wallet held before the oldest income row) comes from the
opening observation: the first REST snapshot (it reflects every row up to its asset's
``updateTime``), else the first recorded balance. Within one millisecond the exchange's order
is the tranId order: a stream balance of the same millisecond as income rows may reflect
only the first of them (two trades in one millisecond, each followed by its ACCOUNT_UPDATE),
so any tranId-prefix of that millisecond's rows explains it. A difference is reported with
the row; the derivation then continues from the recorded value, so one missing income row is
reported once. Balances recorded after the newest income row are checked too: a difference
there may only mean the income was not fetched yet, which the note says.

It also checks that each futures fill's commission equals the COMMISSION income of its trade
(for fills inside the income history). ``verify_futures(db, scope, res)`` adds its figures
and differences to the spot ``VerifyResult``; a ledger without futures rows is left alone.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from executor.audit.query import AuditDB, Scope, fmt_ms
from executor.audit.verify import Difference, VerifyResult

__all__ = ["FuturesDifference", "verify_futures", "with_futures"]

ZERO = Decimal(0)
PREFIX = "UM:"   # derived balances and differences name the futures wallet "UM:<asset>"


class FuturesDifference(Difference):
    """A futures wallet (or commission) difference, worded for the futures side."""

    def __str__(self) -> str:
        return (f"{self.asset}: {self.row} ({self.kind} at {fmt_ms(self.at_ms)}) records {self.recorded}, "
                f"derived {self.expected} (difference {self.difference:+}) from the futures income")


@dataclass(frozen=True)
class _Obs:
    t: int
    row_id: int
    reason: str
    asset: str
    value: Decimal
    snapshot: bool


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _observations(db: AuditDB, scope: Scope) -> list[_Obs]:
    sql = "SELECT id, event_ms, reason, balances, payload FROM futures_account_updates"
    params: list[Any] = []
    if scope.run_id is not None:
        sql += " WHERE run_id = ?"
        params.append(scope.run_id)
    out: list[_Obs] = []
    for row_id, event_ms, reason, balances, payload in db.conn.execute(sql + " ORDER BY id", params):
        snapshot = reason == "REST_SNAPSHOT"
        times: dict[str, int] = {}
        if snapshot:
            # Stored at the bot's clock; the exchange's own time of the value is the asset's
            # updateTime (its last change), which the snapshot reflects entirely.
            for a in (_json(payload) or {}).get("assets", []):
                if str(a.get("updateTime", "")).isdigit():
                    times[str(a["asset"])] = int(a["updateTime"])
        for b in _json(balances) or []:
            if b.get("wallet_balance") is None:
                continue
            t = times.get(str(b["asset"]), event_ms)
            if t is None or not (scope.since_ms is None or t >= scope.since_ms) or \
                    not (scope.until_ms is None or t < scope.until_ms):
                continue
            out.append(_Obs(int(t), int(row_id), str(reason), str(b["asset"]),
                            Decimal(str(b["wallet_balance"])), snapshot))
    out.sort(key=lambda o: (o.t, o.row_id))
    return out


class _Income:
    """One asset's income rows: sums up to a time, and the prefix sums within a millisecond."""

    def __init__(self, rows: list[tuple[int, int, Decimal]]) -> None:
        rows.sort()
        self.rows = rows
        self.count = len(rows)
        self.last_ms = rows[-1][0] if rows else None

    def before(self, t: int) -> Decimal:
        return sum((a for ms, _, a in self.rows if ms < t), ZERO)

    def prefixes(self, t: int) -> list[Decimal]:
        """Sums of the first k rows of millisecond ``t`` (tranId order), k = 0..all."""
        out, total = [ZERO], ZERO
        for ms, _, amount in self.rows:
            if ms == t:
                total += amount
                out.append(total)
        return out


def _income(db: AuditDB) -> dict[str, _Income]:
    rows: dict[str, list[tuple[int, int, Decimal]]] = defaultdict(list)
    sql = "SELECT time_ms, tran_id, asset, amount FROM futures_income"
    for t, tran, asset, amount in db.conn.execute(sql):
        rows[str(asset)].append((int(t), int(tran), Decimal(str(amount))))
    return {a: _Income(r) for a, r in rows.items()}


def _commissions(db: AuditDB, res: VerifyResult) -> int:
    """Each futures fill's commission against its trade's COMMISSION income; returns fills checked."""
    booked: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    first_ms: int | None = None
    for sym, trade_id, amount, t in db.conn.execute(
            "SELECT symbol, trade_id, amount, time_ms FROM futures_income WHERE income_type = 'COMMISSION'"):
        if trade_id:
            booked[(str(sym), str(trade_id))] += Decimal(str(amount))
        first_ms = int(t) if first_ms is None else min(first_ms, int(t))
    if first_ms is None:
        return 0
    checked = 0
    for fid, sym, trade_id, commission, t in db.conn.execute(
            "SELECT id, symbol, trade_id, commission, coalesce(trade_ms, received_ms) FROM main.fills "
            "WHERE symbol LIKE 'UM:%' ORDER BY id"):
        if int(t) < first_ms:
            continue
        checked += 1
        fee = Decimal(str(commission or "0"))
        got = -booked.get((str(sym), str(trade_id)), ZERO)
        if got != fee:
            res.differences.append(FuturesDifference(
                f"{sym} trade {trade_id}", f"fills #{fid}", "commission vs COMMISSION income", int(t),
                expected=got, recorded=fee, fill_ids=[int(fid)], fill_count=1, balance_update_ids=[]))
    return checked


def verify_futures(db: AuditDB, scope: Scope, res: VerifyResult) -> None:
    """Check the futures wallet (see the module docstring); adds to ``res`` in place."""
    if not {"futures_account_updates", "futures_income"} <= db.tables:
        return
    observations = _observations(db, scope)
    if not observations:
        return
    income = _income(db)
    per_asset: dict[str, list[_Obs]] = defaultdict(list)
    for o in observations:
        per_asset[o.asset].append(o)
    checked = late = 0
    for asset, obs in sorted(per_asset.items()):
        inc = income.get(asset, _Income([]))
        opening = next((o for o in obs if o.snapshot), obs[0])
        # C: the wallet before every income row (an opening reflects all rows up to its time).
        base = opening.value - inc.before(opening.t) - inc.prefixes(opening.t)[-1]
        derived = opening.value
        for o in obs:
            if o is opening:
                continue
            before = base + inc.before(o.t)
            options = [before + p for p in inc.prefixes(o.t)]
            derived = options[-1]
            checked += 1
            if o.value in (options[-1:] if o.snapshot else options):
                continue
            if inc.last_ms is None or o.t > inc.last_ms:
                late += 1
            res.differences.append(FuturesDifference(
                PREFIX + asset, f"futures_account_updates #{o.row_id}", o.reason, o.t, expected=derived,
                recorded=o.value, fill_ids=[], fill_count=0, balance_update_ids=[]))
            base += o.value - derived          # continue from the recorded value
            derived = o.value
        res.derived[PREFIX + asset] = derived
    res.checked += checked
    fills = _commissions(db, res)
    res.notes.append(f"futures wallet: {checked} recorded balances re-derived from "
                     f"{sum(i.count for i in income.values())} income rows; {fills} futures fills' "
                     "commissions checked against their COMMISSION income")
    if late:
        res.notes.append(f"futures wallet: {late} difference(s) come after the newest income row "
                         "(income not fetched yet?)")


def with_futures(db: AuditDB, scope: Scope, res: VerifyResult) -> VerifyResult:
    """``verify``'s one call: the spot result with the futures wallet checked into it."""
    verify_futures(db, scope, res)
    return res
