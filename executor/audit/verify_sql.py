"""``audit verify`` of a clean ledger as one set-based SQL statement (SQLite and PostgreSQL).

Every asset's running total is a window sum: the deltas after the opening snapshot (each
fill's base, quote and fee changes, ``executor.core.ledger.fill_deltas``; each
balanceUpdate), and every recorded balance after it, in one stream per asset ordered by
(time, deltas before balances). A recorded balance at ``t`` is then checked against the sum
of every delta at or before ``t``, as ``verify.verify_reference`` checks it: it agrees when
``recorded - running sum`` equals the asset's opening, so per asset SQL returns only the
minimum and maximum of that difference (and the counts, the last delta's time, the total).

This path only ever confirms: when every difference equals the opening it fills the result
the reference would give; anything else (a disagreement, which the reference may still
explain within a millisecond, or names; no REST snapshot to open from; a fill without a
side; a value SQLite's integer sums cannot carry exactly; a balances-table row older than
its asset's last delta) returns False and the caller runs the existing verification.
tests/audit/test_verify_sql.py checks it against the reference.

On PostgreSQL, above ``PARALLEL_MIN_FILLS`` fills, the statement runs as two halves in time
at once, each on its own connection in the audit's one snapshot (``SqlReader.concurrently``):
the rows at or before a cut millisecond and the rows after it. Each backend aggregates half
the rows; the later half's running sums start at 0, so its differences are shifted by the
first half's sum of deltas, which ``_join`` subtracts exactly (the SQLite twin of this split
is ``verify_fast``'s, across two processes).
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal, Inexact, localcontext
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from executor.audit.query import AuditDB, Scope, split_symbol
from executor.audit.setbased import _SCALES, SCALE, Dialect

if TYPE_CHECKING:
    from executor.audit.verify import VerifyResult

__all__ = ["verify_sql"]

ZERO = Decimal(0)
# Above this many fills, on PostgreSQL, the statement is split in time between two
# connections (``_cut``, ``_join``); below, one statement.
PARALLEL_MIN_FILLS = 50_000
_HALF = "/*half*/"  # where a half's time condition goes (``_run``)


class _Auto:
    pass


AUTO = _Auto()  # ``_run``'s cut: split when the ledger is large enough


def _case(column: str, mapping: dict[str, str]) -> tuple[str, list[Any]]:
    if not mapping:
        return "NULL", []
    parts, params = [], []
    for k, v in sorted(mapping.items()):
        parts.append("WHEN ? THEN ?")
        params += [k, v]
    return f"CASE {column} {' '.join(parts)} END", params


def verify_sql(
    db: AuditDB,
    scope: Scope,
    res: VerifyResult,
    opening: dict[str, tuple[Decimal, int | None]],
    opening_ids: set[int],
    base_ms: int | None,
    last_ids: set[int],
    table: list[dict[str, Any]],
    *,
    cut: int | _Auto | None = AUTO,
) -> bool:
    """Fill ``res`` (fills, balance_updates, checked, derived, last_snapshot_ok) and return True
    when every recorded balance agrees; False (``res`` untouched) when the caller must decide."""
    if base_ms is None:
        return False
    if not db.sqlite:
        for stmt in _pg_setup():
            db.conn.execute(stmt)
    for scale in _SCALES if db.sqlite else (SCALE,):
        try:
            out = _run(db, Dialect(db.sqlite, scale), scope, opening, opening_ids, base_ms, table, cut)
        except _Unfit:
            continue
        except (sqlite3.OperationalError, sa.exc.DBAPIError) as exc:
            if "overflow" in str(exc).lower():
                return False
            raise
        if out is None:
            return False
        res.fills, res.balance_updates, res.checked, res.derived = out
        if last_ids:
            res.last_snapshot_ok = True
        return True
    return False


class _Unfit(Exception):
    pass


def _run(
    db: AuditDB,
    d: Dialect,
    scope: Scope,
    opening: dict[str, tuple[Decimal, int | None]],
    opening_ids: set[int],
    base_ms: int,
    table: list[dict[str, Any]],
    cut: int | _Auto | None = AUTO,
) -> tuple[int, int, int, dict[str, Decimal]] | None:
    fwhere, fparams = scope.where("trade_ms", symbol_col=None)
    n_all, n_sided = db.conn.execute(
        "SELECT count(*), coalesce(sum(CASE WHEN side IN ('BUY', 'SELL') THEN 1 ELSE 0 END), 0) "
        f"FROM fills{fwhere}",
        fparams,
    ).fetchone()
    if n_all != n_sided:
        return None  # the reference names each such fill in a note
    uwhere, uparams = scope.where("event_ms", symbol_col=None)
    upd = (uwhere + " AND" if uwhere else " WHERE") + " kind = 'balanceUpdate' AND delta IS NOT NULL"
    n_updates = db.conn.execute(f"SELECT count(*) FROM balance_events{upd}", uparams).fetchone()[0]

    known = db.known_assets()
    symbols = [r[0] for r in db.conn.execute(f"SELECT DISTINCT symbol FROM fills{fwhere}", fparams)]
    pairs = {s: split_symbol(s, known) for s in symbols}
    base_case, base_p = _case("symbol", {s: p[0] for s, p in pairs.items()})
    quote_case, quote_p = _case("symbol", {s: p[1] for s, p in pairs.items()})

    t_fill = "coalesce(trade_ms, received_ms)"
    t_upd = "coalesce(event_ms, received_ms)"
    after = (fwhere + " AND" if fwhere else " WHERE") + " side IN ('BUY', 'SELL')"
    fee_nz = d.nonzero("commission")
    sign = "CASE side WHEN 'BUY' THEN 1 ELSE -1 END"
    obs = (uwhere + " AND" if uwhere else " WHERE") + (
        " kind != 'balanceUpdate' AND event_ms IS NOT NULL AND (free IS NOT NULL OR locked IS NOT NULL)"
    )
    if opening_ids:
        obs += f" AND id NOT IN ({', '.join(str(int(i)) for i in sorted(opening_ids))})"
    recorded = (
        f"coalesce(CASE WHEN free IS NOT NULL THEN {d.num('free')} END, 0) "
        f"+ coalesce(CASE WHEN locked IS NOT NULL THEN {d.num('locked')} END, 0)"
    )
    unfit_obs = f"(free IS NOT NULL AND {d.unfit('free')}) OR (locked IS NOT NULL AND {d.unfit('locked')})"
    null = "NULL" if d.sqlite else "CAST(NULL AS NUMERIC)"  # a typed NULL fixes the UNION's column type
    # (asset, time, kind 0 = delta / 1 = balance, amount, places, recorded, unfit)
    stream = (
        f"SELECT {base_case} AS asset, {t_fill} AS t, 0 AS k, {sign} * {d.num('qty')} AS amt, "
        f"{d.places('qty')} AS pl, {null} AS rec, CASE WHEN {d.unfit('qty')} THEN 1 ELSE 0 END AS bad "
        f"FROM fills{after} "
        f"UNION ALL SELECT {quote_case}, {t_fill}, 0, -{sign} * {d.num('quote_qty')}, "
        f"{d.places('quote_qty')}, NULL, CASE WHEN {d.unfit('quote_qty')} THEN 1 ELSE 0 END "
        f"FROM fills{after} "
        f"UNION ALL SELECT commission_asset, {t_fill}, 0, -{d.num('commission')}, {d.places('commission')}, "
        f"NULL, CASE WHEN {d.unfit('commission')} THEN 1 ELSE 0 END FROM fills{after} "
        f"AND commission_asset IS NOT NULL AND commission_asset <> '' AND {fee_nz} "
        f"UNION ALL SELECT asset, {t_upd}, 0, {d.num('delta')}, {d.places('delta')}, NULL, "
        f"CASE WHEN {d.unfit('delta')} THEN 1 ELSE 0 END FROM balance_events{upd} "
        f"UNION ALL SELECT asset, event_ms, 1, NULL, NULL, {recorded}, "
        f"CASE WHEN {unfit_obs} THEN 1 ELSE 0 END FROM balance_events{obs}"
    )
    params = [*base_p, *fparams, *quote_p, *fparams, *fparams, *uparams, *uparams]
    # Rows at or before the opening change nothing (they are in it) and are not checked, but
    # an asset they touch (a non-zero delta, a recorded balance) is listed, as the reference
    # lists it.
    stream = (
        "SELECT asset, t, CASE WHEN t > ? THEN k ELSE 0 END AS k, CASE WHEN t > ? THEN amt END AS amt, pl, "
        "CASE WHEN t > ? THEN rec END AS rec, bad, CASE WHEN k = 1 OR amt <> 0 THEN 1 ELSE 0 END AS live "
        f"FROM ({stream}) r{_HALF}"
    )
    params = [base_ms, base_ms, base_ms, *params]
    # One row per asset and millisecond first (a hash aggregate, no sort): the deltas' sum and
    # the lowest and highest balance recorded then. All of them must equal the running sum
    # through that millisecond, which the window then gives over far fewer, narrower rows.
    per_ms = (
        "SELECT asset, t, sum(amt) AS amt, sum(k) AS n, min(rec) AS lo, max(rec) AS hi, "
        "max(CASE WHEN k = 0 AND amt IS NOT NULL THEN t END) AS dt, "
        "max(CASE WHEN amt <> 0 THEN pl END) AS pl, "
        f"sum(bad) AS bad, max(live) AS live FROM ({stream}) s GROUP BY asset, t"
    )
    sql = (
        "SELECT asset, sum(n), min(lo - coalesce(run, 0)), max(hi - coalesce(run, 0)), sum(amt), max(dt), "
        "max(pl), sum(bad), max(live) "
        "FROM (SELECT asset, n, lo, hi, amt, dt, pl, bad, live, "
        "sum(amt) OVER (PARTITION BY asset ORDER BY t ROWS UNBOUNDED PRECEDING) AS run "
        f"FROM ({per_ms}) m) w GROUP BY asset"
    )
    if isinstance(cut, _Auto):
        cut = _cut(db, scope, symbols) if n_all >= PARALLEL_MIN_FILLS else None
    if cut is None or d.sqlite:
        per_asset = list(db.conn.execute(sql.replace(_HALF, ""), params))
    else:
        # Split in time (``_join``): the rows at or before ``cut`` and the rows after it, each
        # half's statement on its own connection (its own backend, its own core).
        halves = [
            (sql.replace(_HALF, f" WHERE r.t {op} ?"), [*params, cut])
            for op in ("<=", ">")
        ]
        reader: Any = db.conn
        first, later = reader.concurrently(halves, setup=_pg_setup())
        joined = _join(list(first), list(later))
        if joined is None:
            return None
        per_asset = joined
    checked = 0
    derived: dict[str, Decimal] = {a: total for a, (total, _since) in opening.items()}
    last_delta: dict[str, int] = {}
    for asset, n_obs, lo, hi, total, last_t, places, bad, live in per_asset:
        if bad:
            raise _Unfit
        if asset is None:
            return None
        if not live:
            continue
        open_total = opening.get(asset, (ZERO, None))[0]
        if n_obs:
            o = _scaled(d, open_total)
            if o is None or lo != o or hi != o:
                return None
            checked += n_obs
        value = open_total + (d.value(total, places) if total is not None else ZERO)
        if d.sqlite and total is not None:
            exp = min(open_total.as_tuple().exponent, -int(places or 0))  # type: ignore[type-var]
            value = value.quantize(Decimal(1).scaleb(exp))
        derived[asset] = value
        if last_t is not None:
            last_delta[asset] = last_t
    for b in table:
        asset = b["asset"]
        bt = b["event_ms"] if b["event_ms"] is not None else 1 << 62
        if bt <= base_ms:
            continue
        if bt < last_delta.get(asset, 0):
            return None  # its total at that time is not the last one: the fast path decides
        checked += 1
        derived.setdefault(asset, ZERO)
        if b["free"] + b["locked"] != derived[asset]:
            return None
    return n_sided, n_updates, checked, dict(sorted(derived.items()))


def _pg_setup() -> list[str]:
    """Settings for the statement's transaction on PostgreSQL (``SET LOCAL``: they end with it).

    One big statement: compiling it (JIT) costs more than it saves (~1 s at 1M fills). The
    default ``work_mem`` stays: more (256 MB, 1 GB) keeps the hash aggregate and the sort in
    memory but costs more CPU than the spill (bench/RESULTS.md, session 7)."""
    return ["SET LOCAL jit = off"]


def _cut(db: AuditDB, scope: Scope, symbols: list[str]) -> int | None:
    """The cut millisecond of a time split on PostgreSQL (the middle of the fills' trade
    times, from each symbol's first and last along ``ix_fills_symbol_trade_ms``), or None for
    one statement. Any cut gives the same result (``_join``); the middle only balances the
    halves."""
    if db.sqlite or not hasattr(db.conn, "concurrently"):
        return None
    where, params = scope.where("trade_ms", symbol_col=None)
    swhere = (where + " AND" if where else " WHERE") + " symbol = ?"
    lo: list[int] = []
    hi: list[int] = []
    for sym in symbols:
        first, last = db.conn.execute(
            f"SELECT min(trade_ms), max(trade_ms) FROM fills{swhere}", [*params, sym]
        ).fetchone()
        if first is not None:
            lo.append(first)
            hi.append(last)
    if not lo or min(lo) == max(hi):
        return None
    return (min(lo) + max(hi)) // 2


def _some(op: Any, a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else op(a, b)


def _join(first: list[tuple[Any, ...]], later: list[tuple[Any, ...]]) -> list[tuple[Any, ...]] | None:
    """The statement's rows for the whole stream from its two halves in time: the rows at or
    before the cut (``first``) and after it (``later``). Every (asset, millisecond) group is
    on one side, so each row's values are the same; only the later half's running sums start
    at 0 instead of the asset's sum of deltas in the first half, so its differences (recorded
    - running sum) are that sum too high. Exact (NUMERIC comes back exact; a result that is
    not exact at 1000 digits makes it None: the caller decides)."""
    moved = {row[0]: row[4] for row in first}
    out = {row[0]: list(row) for row in first}
    with localcontext() as ctx:
        ctx.prec = 1000
        ctx.traps[Inexact] = True
        try:
            for asset, n, lo, hi, total, dt, pl, bad, live in later:
                shift = moved.get(asset) or ZERO
                lo = None if lo is None else lo - shift
                hi = None if hi is None else hi - shift
                row = out.get(asset)
                if row is None:
                    out[asset] = [asset, n, lo, hi, total, dt, pl, bad, live]
                    continue
                row[1] = _some(lambda a, b: a + b, row[1], n)
                row[2] = _some(min, row[2], lo)
                row[3] = _some(max, row[3], hi)
                row[4] = _some(lambda a, b: a + b, row[4], total)
                row[5] = _some(max, row[5], dt)
                row[6] = _some(max, row[6], pl)
                row[7] = _some(lambda a, b: a + b, row[7], bad)
                row[8] = _some(max, row[8], live)
        except Inexact:
            return None
    return [tuple(row) for row in out.values()]


def _scaled(d: Dialect, value: Decimal) -> Any:
    """``value`` as the SQL sums carry it (an integer of 10**-scale on SQLite), or None."""
    if not d.sqlite:
        return value
    v = value.scaleb(d.scale)
    if v != v.to_integral_value():
        return None
    return int(v)
