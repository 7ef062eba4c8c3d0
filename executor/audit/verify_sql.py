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

On PostgreSQL the same result comes from one statement per asset over only that asset's rows
(``_ordered``: no per-millisecond aggregate, a sort by time alone; 2.2x less backend CPU at
1M fills, bench/RESULTS.md #16 session 7 round 2); the one statement stays for ledgers whose
fills or balanceUpdates lack their own time, and on SQLite. Above ``PARALLEL_MIN_FILLS``
fills the work runs on two connections at once in the audit's one snapshot
(``SqlReader.concurrently``): the assets shared by weight, and an asset that outweighs the
rest (or, for the one statement, every row) split in time at a cut millisecond: the rows at
or before it and the rows after it. The later half's running sums start at 0, so its
differences are shifted by the first half's sum of deltas, which ``_join`` subtracts exactly
(the SQLite twin of this split is ``verify_fast``'s, across two processes).
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal, Inexact, localcontext
from typing import TYPE_CHECKING, Any

from executor.audit.query import AuditDB, Scope, middle_ms, split_symbol, sqlalchemy_errors
from executor.audit.setbased import _SCALES, SCALE, Dialect

if TYPE_CHECKING:
    from executor.audit.verify import VerifyResult

__all__ = ["verify_sql"]

ZERO = Decimal(0)
# Above this many fills, on PostgreSQL, the statement is split in time between two
# connections (``_cut``, ``_join``); below, one statement.
PARALLEL_MIN_FILLS = 50_000
_HALF = "/*half*/"  # where a half's time condition goes (``_run``)
# PostgreSQL: one window per asset over that asset's rows (``_ordered``); False: the one
# statement over every asset's rows (kept for ledgers ``_ordered`` leaves to it, and tests).
ORDERED = True
# ``_ordered`` on two connections: an asset that alone carries more than this share of the
# fills' weight is split in time as well (its halves go to both connections).
DOMINANT = 0.6
# ``_ordered`` only while at most this many assets each carry 5 % or more of the fills' weight
# (four at the bench's million fills); beyond, the one statement (``_ordered``'s guard).
MAX_BUSY_ASSETS = 8


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
        except (sqlite3.OperationalError, *sqlalchemy_errors("DBAPIError")) as exc:
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
    if not d.sqlite and ORDERED:
        ordered = _ordered(db, scope, opening_ids, base_ms, cut)
        if ordered is not None:
            n_sided, n_updates, per_asset = ordered
            if per_asset is None:
                return None
            return _finish(d, opening, base_ms, table, n_sided, n_updates, per_asset)
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
    return _finish(d, opening, base_ms, table, n_sided, n_updates, per_asset)


def _finish(
    d: Dialect,
    opening: dict[str, tuple[Decimal, int | None]],
    base_ms: int,
    table: list[dict[str, Any]],
    n_sided: int,
    n_updates: int,
    per_asset: list[tuple[Any, ...]],
) -> tuple[int, int, int, dict[str, Decimal]] | None:
    """The result from the statement's rows per asset (asset, observations, lowest and
    highest recorded - running sum, sum of deltas, last delta's time, places, unfit, live)."""
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


def _ordered(
    db: AuditDB,
    scope: Scope,
    opening_ids: set[int],
    base_ms: int,
    cut: int | _Auto | None,
) -> tuple[int, int, list[tuple[Any, ...]] | None] | None:
    """PostgreSQL: the statement's rows per asset, one window per asset over only that asset's
    rows (n_sided, n_updates, rows; rows None: the caller returns None), or None when this
    ledger needs the one statement (a fill or balanceUpdate without its own time).

    Why: the one statement pushes every delta and observation (5.1M rows at 1M fills)
    through a hash aggregate keyed by (asset, millisecond), a sort and a window, ~2.7 us a row.
    Here each asset's rows are one ``UNION ALL`` of two scans (its fills, its balance events),
    sorted by time alone and summed by a window whose frame (``RANGE``: every row of the same
    millisecond) gives each observation the sum of every delta at or before its millisecond,
    as the per-millisecond aggregate did. A fill is one row per asset it moves: its base or
    quote change and its fee, when the fee is in that asset, are added in the row (2.1M rows
    instead of 3M at 1M fills), and no aggregate runs before the window."""
    fwhere, fparams = scope.where("trade_ms", symbol_col=None)
    sided = "side IN ('BUY', 'SELL')"
    groups = db.conn.execute(
        "SELECT symbol, CASE WHEN commission <> 0 AND commission_asset <> '' THEN commission_asset END, "
        f"count(*), coalesce(sum(CASE WHEN {sided} THEN 1 ELSE 0 END), 0), "
        f"coalesce(sum(CASE WHEN {sided} AND trade_ms IS NULL THEN 1 ELSE 0 END), 0) "
        f"FROM fills{fwhere} GROUP BY 1, 2",
        fparams,
    ).fetchall()
    n_all = sum(g[2] for g in groups)
    n_sided = sum(g[3] for g in groups)
    uwhere, uparams = scope.where("event_ms", symbol_col=None)
    upd = (uwhere + " AND" if uwhere else " WHERE") + " kind = 'balanceUpdate' AND delta IS NOT NULL"
    n_updates, untimed = db.conn.execute(
        f"SELECT count(*), count(*) - count(event_ms) FROM balance_events{upd}", uparams
    ).fetchone()
    if any(g[4] for g in groups) or untimed:
        return None  # its time is received_ms: the one statement orders by that
    if n_all != n_sided:
        return n_sided, n_updates, None
    known = db.known_assets()
    symbols = sorted({g[0] for g in groups if g[3]})
    pairs = {sym: split_symbol(sym, known) for sym in symbols}
    fee_assets = {g[1] for g in groups if g[1] is not None and g[3]}
    assets = sorted(set(known) | fee_assets | {a for p in pairs.values() for a in p})
    weight = {a: sum(g[2] for g in groups if a in pairs.get(g[0], ()) or g[1] == a) for a in assets}
    total_weight = sum(weight.values())
    if sum(1 for w in weight.values() if w * 20 >= total_weight) > MAX_BUSY_ASSETS:
        # Each asset's balance events are read along its index, and a busy asset's rows lie
        # on nearly every page of the table: many busy assets would read the table many
        # times over; the one statement reads it twice.
        return None
    sign = "CASE side WHEN 'BUY' THEN 1 ELSE -1 END"
    after = (fwhere + " AND" if fwhere else " WHERE") + f" {sided}"
    bwhere = (uwhere + " AND" if uwhere else " WHERE") + " asset = ?"
    opening = f" AND id NOT IN ({', '.join(str(int(i)) for i in sorted(opening_ids))})" if opening_ids else ""
    kinds = (
        "((kind = 'balanceUpdate' AND delta IS NOT NULL) OR (kind <> 'balanceUpdate' "
        f"AND event_ms IS NOT NULL AND (free IS NOT NULL OR locked IS NOT NULL){opening}))"
    )
    recorded = (
        "coalesce(CASE WHEN free IS NOT NULL THEN free END, 0) "
        "+ coalesce(CASE WHEN locked IS NOT NULL THEN locked END, 0)"
    )

    def marks(n: int) -> str:
        return ", ".join("?" * n)

    def fills_of(asset: str) -> tuple[list[str], list[str], list[Any], str, list[Any]] | None:
        """(amount terms, conditions each term's row is live, their params, row filter, its
        params) of ``asset``'s fills, or None when no fill moves it."""
        bases = [sym for sym, p in pairs.items() if p[0] == asset]
        quotes = [sym for sym, p in pairs.items() if p[1] == asset]
        terms: list[str] = []
        live: list[str] = []
        params: list[Any] = []
        cond: list[str] = []
        cparams: list[Any] = []
        if bases:
            terms.append(f"CASE WHEN symbol IN ({marks(len(bases))}) THEN {sign} * qty ELSE 0 END")
            live.append(f"(symbol IN ({marks(len(bases))}) AND qty <> 0)")
            params += bases
        if quotes:
            terms.append(f"CASE WHEN symbol IN ({marks(len(quotes))}) THEN -{sign} * quote_qty ELSE 0 END")
            live.append(f"(symbol IN ({marks(len(quotes))}) AND quote_qty <> 0)")
            params += quotes
        if bases or quotes:
            cond.append(f"symbol IN ({marks(len(bases) + len(quotes))})")
            cparams += bases + quotes
        # The symbols whose fills pay a fee in ``asset`` without trading it (BNB): every row's
        # symbol is in a list, so a ledger of many symbols reads each asset's fills along
        # ``ix_fills_symbol_trade_ms`` rather than all of them once per asset.
        others = sorted({g[0] for g in groups if g[1] == asset and g[3]} - set(bases) - set(quotes))
        if asset in fee_assets:
            terms.append("CASE WHEN commission_asset = ? AND commission <> 0 THEN -commission ELSE 0 END")
            live.append("(commission_asset = ? AND commission <> 0)")
            params.append(asset)
        if others:
            cond.append(f"(symbol IN ({marks(len(others))}) AND commission_asset = ? AND commission <> 0)")
            cparams += [*others, asset]
        if not terms:
            return None
        return terms, live, params, " OR ".join(cond), cparams

    def per_asset(items: list[tuple[str, str]]) -> tuple[str, list[Any]]:
        """One row per (asset, half) of ``items`` for the rows after the opening: half "" (all
        of them), "<=" (at or before ``cut``) or ">" (after it); the one statement's row shape."""
        parts: list[str] = []
        params: list[Any] = []
        for asset, op in items:
            half = f" AND t {op} ?" if op else ""
            children: list[str] = []
            cparams: list[Any] = []
            f = fills_of(asset)
            if f is not None:
                terms, _live, tparams, cond, condp = f
                children.append(
                    f"SELECT trade_ms AS t, {' + '.join(terms)} AS amt, CAST(NULL AS NUMERIC) AS rec "
                    f"FROM fills{after} AND trade_ms > ?{half.replace('t ', 'trade_ms ')} AND ({cond})"
                )
                cparams += [*tparams, *fparams, base_ms, *([cut] if op else []), *condp]
            children.append(
                "SELECT event_ms AS t, CASE WHEN kind = 'balanceUpdate' THEN delta END AS amt, "
                f"CASE WHEN kind <> 'balanceUpdate' THEN {recorded} END AS rec "
                f"FROM balance_events{bwhere} AND event_ms > ?{half.replace('t ', 'event_ms ')} AND {kinds}"
            )
            cparams += [*uparams, asset, base_ms, *([cut] if op else [])]
            parts.append(
                "SELECT CAST(? AS VARCHAR), CAST(? AS VARCHAR), count(d), min(d), max(d), sum(amt), max(dt), "
                "CAST(NULL AS INTEGER), 0, 1 "
                "FROM (SELECT amt, rec - coalesce(sum(amt) OVER (ORDER BY t), 0) AS d, "
                "CASE WHEN amt IS NOT NULL THEN t END AS dt "
                f"FROM ({' UNION ALL '.join(children)}) u) w"
            )
            params += [op, asset, *cparams]
        return " UNION ALL ".join(parts), params

    reader: Any = db.conn
    if isinstance(cut, _Auto):
        # Two connections, each a share of the assets (weighed by how many fills move each):
        # no table is scanned twice. An asset that alone outweighs the rest is split in time
        # too (``_join``).
        split = n_all >= PARALLEL_MIN_FILLS and hasattr(reader, "concurrently")
        cut = _cut(db, scope, symbols) if split else None
        items = [(a, "") for a in sorted(assets, key=lambda a: -weight[a])]
        if cut is not None and items and weight[items[0][0]] > total_weight * DOMINANT:
            top = items.pop(0)[0]
            items[:0] = [(top, "<="), (top, ">")]
        bins: list[list[tuple[str, str]]] = [[], []]
        load = [0, 0]
        for a, op in items:
            i = load.index(min(load))
            bins[i].append((a, op))
            load[i] += weight[a] // 2 if op else weight[a]
        if not split:
            bins = [items]
    elif cut is None:
        bins = [[(a, "") for a in assets]]
    else:  # every asset split at ``cut`` (the tests' every cut)
        bins = [[(a, "<=") for a in assets], [(a, ">") for a in assets]]
    calls = [per_asset(b) for b in bins if b]
    if len(calls) == 1:
        for stmt in _SERIAL:
            db.conn.execute(stmt)
        results = [list(db.conn.execute(*calls[0]))]
    else:
        results = [list(r) for r in reader.concurrently(calls, setup=[*_pg_setup(), *_SERIAL])]
    first: list[tuple[Any, ...]] = []
    later: list[tuple[Any, ...]] = []
    for rows_of in results:
        for half, *row in rows_of:
            (later if half == ">" else first).append(tuple(row))
    if later:
        joined = _join(first, later)
        if joined is None:
            return n_sided, n_updates, None
        rows = joined
    else:
        rows = first
    out: list[tuple[Any, ...]] = []
    for row in rows:
        asset, n = row[0], row[1]
        if not n and not _live(db, asset, fills_of(asset), after, fparams, bwhere, uparams, kinds):
            row = (*row[:8], 0)
        out.append(tuple(row))
    return n_sided, n_updates, out


def _live(
    db: AuditDB,
    asset: str,
    fills: tuple[list[str], list[str], list[Any], str, list[Any]] | None,
    after: str,
    fparams: list[Any],
    bwhere: str,
    uparams: list[Any],
    kinds: str,
) -> bool:
    """Whether the one statement would list ``asset`` (a row of it at any time in scope: a
    recorded balance, or a non-zero delta, each fill's base, quote and fee change apart), for
    an asset with no observation after the opening (rare: the usual asset has many)."""
    if fills is not None:
        _terms, live, params, _cond, _condp = fills
        hit = db.conn.execute(
            f"SELECT 1 FROM fills{after} AND ({' OR '.join(live)}) LIMIT 1", [*fparams, *params]
        ).fetchone()
        if hit:
            return True
    nonzero = "(kind <> 'balanceUpdate' OR delta <> 0)"
    hit = db.conn.execute(
        f"SELECT 1 FROM balance_events{bwhere} AND {kinds} AND {nonzero} LIMIT 1",
        [*uparams, asset],
    ).fetchone()
    return hit is not None


# The per-asset statements run without parallel workers: the two connections are this
# path's parallelism, and a worker's share comes back through a Gather Merge of sorted rows,
# which costs more CPU than it saves (8.6-10 s of the cluster's CPU against ~6 s at 1M fills).
_SERIAL = ["SET LOCAL max_parallel_workers_per_gather = 0"]


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
    return middle_ms(db.conn.execute(f"SELECT min(trade_ms), max(trade_ms) FROM fills{swhere}",
                                     [*params, sym]).fetchone() for sym in symbols)


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
