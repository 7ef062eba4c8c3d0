"""The fast path of ``audit verify`` for a ledger that agrees with itself.

``verify.verify_reference`` walks every fill and every recorded balance in one time-ordered
Python loop, keeping per-asset state (what to name in a difference report, where to
continue from after one). At a million fills that loop is most of the time, and for a clean
ledger none of that state is ever used. This module answers the one question a clean
ledger needs, exactly the same way, with column-wise work:

* per asset, the deltas (fills, then balanceUpdates) are laid out in time order with their
  running totals (``cum[k]`` = total after the first ``k`` deltas);
* a recorded balance at time ``t`` agrees when it equals ``cum[bisect_right(times, t)]``
  (every delta at or before ``t`` applied), or, as the reference allows, one of the totals
  within the millisecond ``t`` when the asset's last delta is at ``t``.

Above ``PARALLEL_MIN_FILLS`` fills the ledger is split in time between this process and one
forked worker: a cut millisecond ``T``; this process takes every delta and observation at
or before ``T``, the worker every one after it, so each row is read once (session 6 split by
asset, and both processes read all the fills). The worker cannot know the totals at ``T``
(they are this process's result), so it checks its half relative to them: per asset, its
totals start at 0, and its observations must all agree with one offset (the total at ``T``)
that it names; this process then requires that offset to equal its own closing total. With
exact arithmetic ``offset + relative total`` is the value the whole walk reaches, so every
check is the one-process check; the same-millisecond rule never straddles the cut (every
delta and observation of millisecond ``T`` is on the first side).

Anything it cannot confirm with certainty (a row that does not agree, a millisecond whose
delta order the reference would apply differently, rounding at the context's precision)
makes it return None, and the caller runs the reference: differences are always reported by
the reference, row by row. So the result is the reference's result, only sooner.
"""

from __future__ import annotations

import multiprocessing
import os
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator
from decimal import Decimal, Inexact, localcontext
from functools import partial
from itertools import accumulate, chain, compress, islice, repeat
from operator import add, eq, is_not, itemgetter, le, lt, mul, ne, sub
from typing import TYPE_CHECKING, Any, NamedTuple

from executor.audit.query import AuditDB, Scope, middle_ms, split_symbol

if TYPE_CHECKING:
    from executor.audit.verify import VerifyResult

__all__ = ["verify_fast"]

ZERO = Decimal(0)
_NEVER = 1 << 62
_SIGN = {"BUY": 1, "SELL": -1}


class _Series:
    """One asset's deltas in application order and the totals after each."""

    __slots__ = ("amounts", "cum", "has_updates", "opening", "since", "times")

    def __init__(self, opening: Decimal, since: int | None) -> None:
        self.opening = opening
        self.since = since
        self.times: list[int] = []
        self.amounts: list[Decimal] = []
        self.has_updates = False
        # Set from the deltas once they are laid out; an asset first met later (in a balance or
        # the balances table) has none: its total is the opening.
        self.cum: list[Decimal] = [opening]

    def agrees(self, recorded: Decimal, t: int) -> bool:
        """The reference's ``explains`` for an observation at ``t`` (after every delta <= t)."""
        times, cum = self.times, self.cum
        hi = bisect_right(times, t)
        if recorded == cum[hi]:
            return True
        lo = bisect_left(times, t, 0, hi)
        if lo == hi or self.has_updates:
            # No delta at t: only the total counts. With balanceUpdates the reference's order
            # within a millisecond depends on batching: leave the call to it.
            return False
        return recorded in cum[lo : hi + 1]


class _Outcome(NamedTuple):
    fills: int
    balance_updates: int
    checked: int
    # Each asset's total; for the later half of a time split, the sum of its deltas in that
    # half (None: no delta there), to add to the earlier half's total at the cut.
    derived: dict[str, Decimal | None]
    notes: list[str]
    # Later half only: the total at the cut each asset's observations imply.
    offsets: dict[str, Decimal]


# Above this many fills the ledger is split in time between this process and one forked
# worker (each reads its half of the fills and observations); below, one process.
PARALLEL_MIN_FILLS = 50_000
_JOB: dict[str, Any] = {}
# Rows of the later half read to guess an asset's total at the cut (``_run``).
_GUESS_ROWS = 64


def verify_fast(
    db: AuditDB,
    scope: Scope,
    res: VerifyResult,
    opening: dict[str, Any],
    opening_ids: set[int],
    base_ms: int | None,
    last_ids: set[int],
    table: list[dict[str, Any]],
) -> bool:
    """Fill ``res`` (fills, balance_updates, checked, derived, last_snapshot_ok, notes) and
    return True when every recorded balance agrees; False (``res`` untouched) when the
    reference must decide."""
    args = (scope, {a: (st.total, st.since_ms) for a, st in opening.items()}, opening_ids, base_ms, table)
    cut = _cut(db, scope)
    if cut is None:
        out = _guarded(db, *args, None)
    else:
        _JOB.update(path=db.path, archive=db.archive, args=args, part=(cut, True))
        pool = multiprocessing.get_context("fork").Pool(1)
        try:
            pending = pool.apply_async(_child_job)
            _JOB.clear()
            mine = _guarded(db, *args, (cut, False))
            theirs = pending.get()
        finally:
            pool.close()
            pool.join()
        out = None if mine is None or theirs is None else _join(mine, theirs)
    if out is None:
        return False
    res.fills, res.balance_updates, res.checked, res.derived = (
        out.fills,
        out.balance_updates,
        out.checked,
        out.derived,
    )
    if last_ids:
        res.last_snapshot_ok = True
    res.notes.extend(out.notes)
    return True


def _cut(db: AuditDB, scope: Scope) -> int | None:
    """The cut millisecond of a time split (the middle of the fills' trade times), or None to
    run in one process (small ledger, one core, no fork, no trade time)."""
    if not db.sqlite:  # the worker reopens the file; PostgreSQL runs in one process
        return None
    if (os.cpu_count() or 1) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    where, params = scope.where("trade_ms", symbol_col=None)
    # Counting stops at the threshold (a full count(*) cost ~0.1 s at a million fills).
    enough = f"SELECT count(*) FROM (SELECT 1 FROM fills{where} LIMIT {int(PARALLEL_MIN_FILLS)})"
    if db.conn.execute(enough, params).fetchone()[0] < PARALLEL_MIN_FILLS:
        return None
    # Each symbol's first and last trade time from the (symbol, trade_ms) index; the cut only
    # balances the halves (any cut gives the same result), so the middle of the range will do.
    swhere = (where + " AND" if where else " WHERE") + " symbol = ? AND trade_ms IS NOT NULL"
    return middle_ms(db.conn.execute(
        f"SELECT (SELECT min(trade_ms) FROM fills{swhere}), (SELECT max(trade_ms) FROM fills{swhere})",
        [*params, sym, *params, sym],
    ).fetchone() for sym in db.distinct("fills", "symbol"))


def _join(first: _Outcome, later: _Outcome) -> _Outcome | None:
    """The whole ledger's outcome from its two halves in time, or None when the later half's
    offsets are not the earlier half's closing totals (the reference decides)."""
    closing = first.derived  # every asset of the earlier half: its total at the cut
    with localcontext() as ctx:
        ctx.traps[Inexact] = True
        try:
            for asset, offset in later.offsets.items():
                if offset != closing.get(asset, ZERO):
                    return None
            derived = dict(closing)
            for asset, moved in later.derived.items():
                at_cut = closing.get(asset, ZERO)
                derived[asset] = at_cut if moved is None else at_cut + moved  # type: ignore[operator]
        except Inexact:
            return None
    return _Outcome(
        first.fills + later.fills,
        first.balance_updates,  # each half counts every balanceUpdate in scope
        first.checked + later.checked,
        dict(sorted(derived.items())),
        first.notes + later.notes,
        {},
    )


def _child_job() -> _Outcome | None:
    # A forked worker never uses the parent's sqlite connection.
    with AuditDB(_JOB["path"], _JOB.get("archive")) as db:
        return _guarded(db, *_JOB["args"], _JOB["part"])


def _guarded(
    db: AuditDB,
    scope: Scope,
    opening: dict[str, tuple[Decimal, int | None]],
    opening_ids: set[int],
    base_ms: int | None,
    table: list[dict[str, Any]],
    part: tuple[int, bool] | None,
) -> _Outcome | None:
    with localcontext() as ctx:
        ctx.traps[Inexact] = True  # a rounded sum could differ from the reference's order
        try:
            return _run(db, scope, opening, opening_ids, base_ms, table, part)
        except Inexact:
            return None


def _code(column: str, n: int) -> str:
    """SQL giving ``column``'s index among ``n`` values passed as parameters, in order."""
    if not n:
        return "NULL"
    return f"CASE {column} " + " ".join(f"WHEN ? THEN {i}" for i in range(n)) + " END"


# Small-int codes (0-9) as one character each in a concatenated column, back to ints.
_DIGITS = bytes.maketrans(b"0123456789", bytes(range(10)))
_SIDE_SIGN = {"1": 1, "2": -1}
Columns = tuple[Any, list[int], list[str], list[str], list[str], Any, list[int]]


def _fill_columns(
    db: AuditDB, symbols: list[str], names: list[str], fwhere: str, params: list[Any]
) -> Columns | None:
    """The fills of ``fwhere`` as columns (symbol code, sign, qty, quote_qty, commission,
    commission asset code, time) in (time, id) order, read as one row of concatenated
    columns: a million small tuples from the sqlite3 module cost more than the scan itself
    (bench/RESULTS.md, session 7 ``sqlverify``). None when a row does not fit that form (more
    than ten symbols or assets, a side other than BUY/SELL, an unknown or missing commission
    asset, a comma in a text): the caller reads row by row, as before.

    The rows come in the scan's order; that order is (time, id) exactly when the ids rise
    strictly and the times never fall, which is checked, else the columns are sorted."""
    if not db.sqlite or not 0 < len(symbols) <= 10 or not 0 < len(names) <= 10:
        return None
    row = db.conn.execute(
        "SELECT count(*), count(qty), count(quote_qty), count(commission), group_concat(id), "
        f"group_concat({_code('symbol', len(symbols))}, ''), "
        "group_concat(CASE side WHEN 'BUY' THEN 1 WHEN 'SELL' THEN 2 END, ''), "
        "group_concat(qty), group_concat(quote_qty), group_concat(commission), "
        f"group_concat({_code('commission_asset', len(names))}, ''), "
        f"group_concat(coalesce(trade_ms, received_ms)) FROM fills{fwhere}",
        [*symbols, *names, *params],
    ).fetchone()
    n, n_qty, n_quote, n_fee, id_t, sym_t, side_t, qty_t, quote_t, fee_t, asset_t, t_text = row
    if not n or not n == n_qty == n_quote == n_fee:
        return None
    codes = (sym_t, side_t, asset_t)
    if any(c is None or len(c) != n for c in codes):  # a NULL code (CASE found no match) is left out
        return None
    try:
        ids = list(map(int, id_t.split(",")))
        times = list(map(int, t_text.split(",")))
    except ValueError:  # not an integer time
        return None
    qtys, quote_qtys, fees = qty_t.split(","), quote_t.split(","), fee_t.split(",")
    if any(len(c) != n for c in (ids, times, qtys, quote_qtys, fees)):  # a comma inside a text
        return None
    # The codes as bytes (each a small int when read): ``_rows_of`` selects on them in C.
    syms = sym_t.encode().translate(_DIGITS)
    signs = list(map(_SIDE_SIGN.__getitem__, side_t))
    fee_assets = asset_t.encode().translate(_DIGITS)
    cols = (syms, signs, qtys, quote_qtys, fees, fee_assets, times)
    if not (all(map(lt, ids, islice(ids, 1, None))) and all(map(le, times, islice(times, 1, None)))):
        order = sorted(range(n), key=lambda i: (times[i], ids[i]))
        cols = tuple(list(map(c.__getitem__, order)) for c in cols)  # type: ignore[assignment]
    return cols


def _fill_rows(db: AuditDB, symbols: list[str], names: list[str], fwhere: str, params: list[Any]) -> Columns:
    """``_fill_columns``'s columns read row by row (a sign None: no side; a commission asset
    not in ``names``, or on PostgreSQL any, as its text)."""
    # (SQLite only: PostgreSQL's CASE cannot mix an int and a text; there the text it is.)
    fee_names_sql = names if db.sqlite else []
    whens = " ".join(f"WHEN ? THEN {i}" for i in range(len(fee_names_sql)))
    fee_code = f"CASE commission_asset {whens} ELSE commission_asset END" if whens else "commission_asset"
    rows = db.conn.execute(
        f"SELECT {_code('symbol', len(symbols))}, CASE side WHEN 'BUY' THEN 1 WHEN 'SELL' THEN -1 END, qty, "
        f"quote_qty, commission, {fee_code}, coalesce(trade_ms, received_ms) FROM fills{fwhere}"
        " ORDER BY coalesce(trade_ms, received_ms), id",
        [*symbols, *fee_names_sql, *params],
    ).fetchall()
    return tuple(list(map(itemgetter(i), rows)) for i in range(7))  # type: ignore[return-value]


Observed = dict[str, tuple[list[int], list[str], list[str | None] | None]]


def _observations_concat(db: AuditDB, names: list[str], owhere: str, oparams: list[Any]) -> Observed | None:
    """Per asset, the recorded balances of ``owhere`` as (times, free texts, None), read as one
    row of concatenated columns (see ``_fill_columns``), when every row has a free text and a
    zero (or no) locked: then the recorded total is the free text's value. None otherwise
    (the caller reads row by row). Their order does not matter: each is checked on its own."""
    if not db.sqlite or not 0 < len(names) <= 10:
        return None
    n, n_free, n_locked, codes, times_text, free_text = db.conn.execute(
        # ``trim(locked, '0.') != ''``: a locked that is not zero, the row-wise read's test.
        f"SELECT count(*), count(free), sum(trim(locked, '0.') != ''), "
        f"group_concat({_code('asset', len(names))}, ''), group_concat(event_ms), group_concat(free) "
        f"FROM balance_events{owhere}",
        [*names, *oparams],
    ).fetchone()
    if not n:
        return {}
    if n_free != n or n_locked or codes is None or len(codes) != n:
        return None
    try:
        times = list(map(int, times_text.split(",")))
    except ValueError:
        return None
    frees = free_text.split(",")
    if len(times) != n or len(frees) != n:
        return None
    present = sorted(set(codes))
    if len(present) == 1:
        return {names[int(present[0])]: (times, frees, None)}
    out: Observed = {}
    raw = codes.encode()
    for ch in present:
        keep = _rows_of(raw, {ord(ch)})  # one C pass, not a comparison per row and asset
        out[names[int(ch)]] = (list(compress(times, keep)), list(compress(frees, keep)), None)
    return out


def _observations_rows(db: AuditDB, names: list[str], owhere: str, oparams: list[Any]) -> Observed | None:
    """``_observations_concat``'s result read row by row, with each row's locked text (None:
    zero or none; the list is None when every row's is). None for an asset not in ``names``."""
    # A zero ``locked`` (text of only 0s and a point) comes back as NULL: free alone is the
    # same value. On PostgreSQL money is NUMERIC and the same test is a numeric comparison.
    # The asset comes back as its index in ``names`` (a small int: no str per row).
    locked_zero = "trim(locked, '0.') = ''" if db.sqlite else "locked = 0"
    obs = db.conn.execute(
        f"SELECT {_code('asset', len(names))}, event_ms, free, "
        f"CASE WHEN {locked_zero} THEN NULL ELSE locked END FROM balance_events{owhere}",
        [*names, *oparams],
    ).fetchall()
    obs_assets = list(map(itemgetter(0), obs))
    if None in obs_assets:
        return None
    out: Observed = {}
    for code in sorted(set(obs_assets)):
        rows = list(compress(obs, map(eq, obs_assets, repeat(code))))
        lockeds: list[str | None] | None = list(map(itemgetter(3), rows))
        frees = list(map(itemgetter(2), rows))
        if not any(lockeds) and None not in frees:  # type: ignore[arg-type]
            lockeds = None
        out[names[code]] = (list(map(itemgetter(1), rows)), frees, lockeds)
    return out


def _rows_of(column: bytes | list[Any], values: set[Any]) -> Iterable[Any]:
    """Selectors (for ``compress``) of the rows whose ``column`` value is in ``values``. A
    column of byte codes (``_fill_columns``) is translated in one C pass to a byte 1 or 0 per
    row; a list is compared value by value."""
    if isinstance(column, bytes):
        return column.translate(bytes(int(b in values) for b in range(256)))
    if len(values) == 1:
        return map(eq, column, repeat(next(iter(values))))
    return map(values.__contains__, column)


def _recorded(free: str | None, locked: str | None) -> Decimal:
    """A recorded balance's total from its texts (``locked`` None: zero or none)."""
    if locked is None or free is None:
        return Decimal(free or locked or 0)
    return Decimal(free) + Decimal(locked)


def _run(
    db: AuditDB,
    scope: Scope,
    opening: dict[str, tuple[Decimal, int | None]],
    opening_ids: set[int],
    base_ms: int | None,
    table: list[dict[str, Any]],
    part: tuple[int, bool] | None,
) -> _Outcome | None:
    """Everything for the deltas and observations of ``part`` (``(cut, False)``: at or before
    ``cut``; ``(cut, True)``: after it, relative to the totals at ``cut``; None: all); None
    when a balance does not agree."""
    later = part is not None and part[1]
    # The later half starts every asset at 0: its totals are relative to those at the cut.
    series: dict[str, _Series] = {
        a: _Series(ZERO if later else total, since) for a, (total, since) in opening.items()
    }

    def state(asset: str) -> _Series:
        s = series.get(asset)
        if s is None:
            s = series[asset] = _Series(ZERO, base_ms)
        return s

    def window(col: str) -> tuple[str, list[Any]]:
        """SQL limiting ``col`` (a time) to this process's half."""
        if part is None:
            return "", []
        return f" AND {col} {'>' if later else '<='} ?", [part[0]]

    def in_window(t: int) -> bool:
        return part is None or (t > part[0]) == later

    notes: list[str] = []
    known = db.known_assets()
    # Fills in (time, row id) order, as the reference applies them, column by column: the
    # amounts are ``executor.core.ledger.fill_deltas``'s own expressions (so the same Decimal
    # exponents), computed with map() over whole columns instead of a loop over rows.
    where, params = scope.where("trade_ms", symbol_col=None)
    order = " ORDER BY coalesce(trade_ms, received_ms), id"
    # Every symbol of the table, by a walk along the (symbol, trade_ms) index (a DISTINCT scans
    # all of it: ~0.1 s): one without fills in scope or in this half gives no deltas.
    symbols = db.distinct("fills", "symbol")
    pairs = [split_symbol(sym, known) for sym in symbols]  # by the symbol's index in ``symbols``
    names = sorted(known)
    # The symbol as its index, the side as its sign and the commission asset as its index in
    # ``names`` (its text if not there): small ints, shared, not a new str per row.
    fw, fparams = window("coalesce(trade_ms, received_ms)")
    fwhere = (where + " AND" if where else " WHERE") + " 1 = 1" + fw
    cols = _fill_columns(db, symbols, names, fwhere, [*params, *fparams])
    if cols is None:  # any row the concatenated read cannot carry: row by row
        cols = _fill_rows(db, symbols, names, fwhere, [*params, *fparams])
    syms, signs, qtys, quote_qtys, fees, fee_assets, times = cols
    del cols
    if None in signs:
        # Fills without a side are named in a note and left out, as the reference does.
        nwhere = fwhere + " AND (side IS NULL OR side NOT IN ('BUY', 'SELL'))"
        for fid, sym, tid in db.conn.execute(
            f"SELECT id, symbol, trade_id FROM fills{nwhere}{order}", [*params, *fparams]
        ):
            notes.append(f"fill #{fid} ({sym} trade {tid}) has no side and cannot be applied")
        keep = list(map(is_not, signs, repeat(None)))
        syms, signs, qtys, quote_qtys, fees, fee_assets, times = (
            list(compress(col, keep)) for col in (syms, signs, qtys, quote_qtys, fees, fee_assets, times)
        )
    n = len(times)
    # Role of each fill's commission asset: 0 base, 1 quote, 2 a third asset, 3 no fee asset.
    fee_names = {fa: names[fa] if type(fa) is int else fa for fa in set(fee_assets)}  # code -> asset
    roles = {
        (sym, fa): 3
        if not fee_names[fa]
        else 0
        if fee_names[fa] == pairs[sym][0]
        else 1
        if fee_names[fa] == pairs[sym][1]
        else 2
        for sym, fa in set(zip(syms, fee_assets, strict=True))
    }
    role = list(map(roles.__getitem__, zip(syms, fee_assets, strict=True)))
    dec = Decimal
    if db.sqlite:
        # sign * qty, once per distinct text: sizes repeat (~4,000 texts among a symbol's
        # 500,000 fills), so this is a dict lookup per fill, not a conversion and a product
        # (session 10: ~0.1 s of CPU less per 500,000 fills). Keyed by the text, so "0.5" and
        # "0.50" keep their own exponents. Not for PostgreSQL's Decimals: equal values of
        # other exponents would share a key.
        bought = {t: 1 * dec(t) for t in set(qtys)}  # a sign is 1 or -1 here (no side: left out)
        sold = {t: -1 * dec(t) for t in bought}
        base_amt = [bought[t] if sg == 1 else sold[t] for sg, t in zip(signs, qtys, strict=True)]
    else:
        base_amt = list(map(mul, signs, map(dec, qtys)))  # sign * qty
    quote_amt = list(map(sub, repeat(ZERO), map(mul, signs, map(dec, quote_qtys))))  # 0 - sign * quote_qty
    third_amt: list[Decimal] = [ZERO] * n
    for i in compress(range(n), fees):  # fills with a commission text
        if role[i] == 3:
            continue
        fee = dec(fees[i])
        if not fee:
            continue
        r = role[i]
        if r == 0:
            base_amt[i] = base_amt[i] - fee
        elif r == 1:
            quote_amt[i] = quote_amt[i] - fee
        else:
            third_amt[i] = ZERO - fee
    del qtys, quote_qtys, fees

    # Each asset's fill deltas: where it is the base, the quote or the fee asset of a fill (a fill
    # changes an asset at most once); zero changes are not applied (nor do they create the asset).
    # Only the roles an asset has are scanned, by symbol index (session 6: a pass over a
    # million fills per asset and role, most of them finding nothing, cost 0.3-0.7 s).
    as_base: dict[str, set[int]] = {}
    as_quote: dict[str, set[int]] = {}
    for code, (b, q) in enumerate(pairs):
        as_base.setdefault(b, set()).add(code)
        as_quote.setdefault(q, set()).add(code)
    third_code = {fee_names[fa]: fa for (_, fa), r in roles.items() if r == 2}  # asset -> its value
    third = set(third_code)
    assets_in_fills = {a for p in pairs for a in p} | third
    for asset in sorted(assets_in_fills):
        hits: list[tuple[list[Decimal], Iterator[bool]]] = []
        for amounts, codes in ((base_amt, as_base.get(asset)), (quote_amt, as_quote.get(asset))):
            if codes:
                hits.append((amounts, _rows_of(syms, codes)))
        if asset in third:
            hits.append((third_amt, _rows_of(fee_assets, {third_code[asset]})))
        parts: list[tuple[list[int], list[Decimal]]] = []
        for amounts, found in hits:
            idx = list(compress(range(n), found))
            idx = list(compress(idx, map(amounts.__getitem__, idx)))  # non-zero only
            if idx:
                parts.append((idx, amounts))
        if not parts:
            continue
        if len(parts) == 1:
            idx, amounts = parts[0]
            src = list(map(amounts.__getitem__, idx))
        else:  # e.g. BNB both traded and paid as fees: a fill changes an asset in one role only
            merged = sorted(chain.from_iterable(zip(i, map(a.__getitem__, i), strict=True) for i, a in parts))
            idx, src = [m[0] for m in merged], [m[1] for m in merged]
        s = state(asset)
        ts = list(map(times.__getitem__, idx))
        cut = 0 if s.since is None else bisect_right(ts, s.since)  # at or before its opening: in it
        s.times, s.amounts = ts[cut:], src[cut:]
    n_fills = n

    # balanceUpdates: after the fills of the same millisecond, in (time, id) order. Both halves
    # read all of them (few): the count, and whether an asset has any at all, are the whole
    # ledger's (``_Series.agrees`` leaves an asset with balanceUpdates to the reference).
    n_updates = 0
    uwhere, uparams = scope.where("event_ms", symbol_col=None)
    uwhere += (" AND" if uwhere else " WHERE") + " kind = 'balanceUpdate' AND delta IS NOT NULL"
    extra: dict[str, list[tuple[int, int, int, Decimal]]] = {}
    for uid, asset, delta, ems, rms in db.conn.execute(
        f"SELECT id, asset, delta, event_ms, received_ms FROM balance_events{uwhere}", uparams
    ):
        n_updates += 1
        s = state(asset)
        ut = ems if ems is not None else rms
        if s.since is None or ut > s.since:
            ups = extra.setdefault(asset, [])
            if in_window(ut):
                ups.append((ut, 1, uid, dec(delta)))
    for asset, ups in extra.items():
        s = series[asset]
        s.has_updates = True
        merged = sorted([(t, 0, i, a) for i, (t, a) in enumerate(zip(s.times, s.amounts, strict=True))] + ups)
        s.times = [m[0] for m in merged]
        s.amounts = [m[3] for m in merged]
    for s in series.values():
        if later:  # relative totals: no exponent from a starting 0 (``_join`` adds them to exact totals)
            s.cum = [ZERO, *accumulate(s.amounts, add)]
        else:
            s.cum = list(accumulate(s.amounts, add, initial=s.opening))

    # Every recorded balance with an exchange time in this half, per asset.
    owhere, oparams = scope.where("event_ms", symbol_col=None)
    # The kinds other than balanceUpdate named (a walk of the (kind, event_ms) index), not
    # ``kind != 'balanceUpdate'``: then each is a range of that index in this half's time
    # window, and only this half's rows are read, where the inequality scanned the whole
    # table in both processes. Session 10: at 2.1M recorded balances, 1.0 -> 0.64 s of CPU
    # per process (bench/RESULTS.md).
    kinds = [k for k in db.distinct("balance_events", "kind") if k != "balanceUpdate"]
    owhere += (" AND" if owhere else " WHERE") + (
        f" kind IN ({', '.join('?' * len(kinds)) or 'NULL'})"
        " AND event_ms IS NOT NULL AND (free IS NOT NULL OR locked IS NOT NULL)"
    )
    oparams = [*oparams, *kinds]
    if opening_ids:
        owhere += f" AND id NOT IN ({', '.join(str(int(i)) for i in opening_ids)})"
    ow, owparams = window("event_ms")
    owhere += ow
    oparams.extend(owparams)
    # Along (kind, event_ms): a kind's rows in time order, which is nearly the table's row
    # order (the (asset, event_ms) index would read the table in random order). Their order
    # does not matter: each is checked on its own.
    by_asset = _observations_concat(db, names, owhere, oparams)
    if by_asset is None:
        by_asset = _observations_rows(db, names, owhere, oparams)
        if by_asset is None:  # an asset ``known_assets`` did not list (cannot happen): the reference decides
            return None
    checked = 0
    offsets: dict[str, Decimal] = {}
    for asset, (ts, frees, lockeds) in sorted(by_asset.items()):
        s = state(asset)
        if s.since is not None:  # at or before the asset's opening: not checked
            keep = list(map(lt, repeat(s.since), ts))
            ts, frees = list(compress(ts, keep)), list(compress(frees, keep))
            if lockeds is not None:
                lockeds = list(compress(lockeds, keep))
        if not ts:
            continue
        checked += len(ts)
        # The total after every delta at or before each row's time.
        at = list(map(s.cum.__getitem__, map(partial(bisect_right, s.times), ts)))
        offset = ZERO
        if later:
            # recorded - relative total: the total at the cut, the same for every row of a
            # clean ledger but those matched within their millisecond's deltas. It is read
            # from an early row at a millisecond with no delta of this asset (there the match
            # must be exact), else it is the commonest of the early rows' values; a wrong
            # guess only sends the ledger to the reference. ``_join`` checks it against the
            # earlier half's closing total.
            st = s.times
            early = range(min(len(ts), _GUESS_ROWS))
            diffs = [_recorded(frees[k], lockeds and lockeds[k]) - at[k] for k in early]
            exact = [diffs[k] for k in early if bisect_left(st, ts[k]) == bisect_right(st, ts[k])]
            offset = offsets[asset] = exact[0] if exact else Counter(diffs).most_common(1)[0][0]
        if lockeds is None:
            # Every locked is zero: a row agrees when its free text is the expected total's
            # text (equal text, equal Decimal); any other row is decided on Decimals below.
            expected = map(add, repeat(offset), at) if later else at
            suspects = compress(range(len(ts)), map(ne, frees, map(str, expected)))
        else:
            suspects = range(len(ts))
        for k in suspects:
            recorded = _recorded(frees[k], lockeds and lockeds[k])
            if later:
                if recorded - at[k] != offset and not s.agrees(recorded - offset, ts[k]):
                    return None
            elif recorded != at[k] and not s.agrees(recorded, ts[k]):
                return None
    for b in table:
        bt = b["event_ms"] if b["event_ms"] is not None else _NEVER
        if not in_window(bt):
            continue
        s = state(b["asset"])
        if s.since is not None and bt <= s.since:
            continue
        checked += 1
        recorded_total = b["free"] + b["locked"]
        if later:
            offset = offsets.get(b["asset"])
            if offset is None:
                offset = offsets[b["asset"]] = recorded_total - s.cum[bisect_right(s.times, bt)]
            recorded_total = recorded_total - offset
        if not s.agrees(recorded_total, bt):
            return None

    if later:
        derived: dict[str, Decimal | None] = {a: s.cum[-1] if s.amounts else None for a, s in series.items()}
    else:
        derived = {a: s.cum[-1] for a, s in sorted(series.items())}
    return _Outcome(n_fills, n_updates, checked, derived, notes, offsets)
