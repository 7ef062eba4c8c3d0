"""The audit report as set-based SQL: the figures of ``executor.audit.fold`` for a scope,
from aggregates the database computes, with Python finishing only what is inherently
sequential. The fill sums are the same statement on SQLite and PostgreSQL (the audit's
readers: ``AuditDB`` / ``SqlReader``) but for ``Dialect``'s expressions (PostgreSQL needs no
places or exactness columns); the orders' read and each symbol's ordered read are written for
each backend (``_order_counts_sqlite`` / ``_ordered``; ``_pg_fold``), with the same figures.

What SQL does (GROUP BY over the scope's rows):

* orders: counts per outcome, external and resolved-from-unknown counts, ordered and executed
  quantity, the acknowledgement latency histogram, the first-fill latency histogram (a join
  with each order's first fill);
* fills: counts, fills without a side, maker counts and quote volumes, bought/sold quantity
  and quote, fees per asset and in quote (quote-asset fees);
* money sums are exact: PostgreSQL sums NUMERIC; SQLite stores money as TEXT, so it sums the
  text read as an integer of ``SCALE`` decimal places (``Dialect.num``), and any value that
  does not fit that exactly (more places, an exponent, too many digits; an integer overflow
  raises) makes the whole path step aside for the fold. Each sum comes back with the largest
  number of places among its terms, so the Decimal has the exponent the fold's sum has.

What Python does, over one time-ordered read per symbol of four or seven columns:

* the average-cost book: each close divides by the running quantity at 50 digits, so its
  result depends on every earlier step; it is run exactly as the fold runs it;
* FIFO realized PnL by the identity ``gross = position cost - sum(dq * price)`` (every unit's
  cash flow is either realized or still in an open lot at its own price), with the open lots
  under FIFO being the newest acquisitions that add up to the final position: a short walk
  back from the end; base-asset fees valued at the fill price; each fill's slippage, counted
  per distinct (side, price, bid, ask) and added with its multiplicity (the fold sums
  slippage totals exactly, so grouping cannot change them);
* third-asset fees (BNB) at the price the ledger knew at the fill's time (``PriceAt``).

Where the time went at a million fills, and what this module does about it (bench/RESULTS.md,
"#16 cold audit, session 5"): the fill sums walk the covering index ``ix_fills_audit_sums``
in group order (migration 0008; no sort), Binance's 8-place text is summed without padding,
the orders are grouped by their (quantity, executed) text and summed in Python, each
symbol's fills are read along ``ix_fills_symbol_trade_ms`` (no sort of its fills), and on
SQLite a forked worker folds about half of the symbols while this process folds the rest.
Session 6: on SQLite each ordered read is converted column by column and the orders are
counted by a ``Counter`` instead of a sorting GROUP BY; slippage groups are added in one loop
(``GroupFold.add_slippage_groups``) on both backends. Session 7 (SQLite): one read of the
orders gives the counts, both latency histograms and each order's decision quotes (no join
per fill in the ordered read), and each symbol's fills are read by ``trade_ms`` alone when
that order is (trade_ms, trade_id) (``_by_trade_ms``; since session 10: when the trade ids
rise along it); the
average-cost book runs ``AverageBook.apply_all``. Session 7 (PostgreSQL, branch
``pgreport``): the report splits its symbols over two processes there too; the worker reads
through a reader of its own that imports this reader's exported snapshot, so both halves
read one ledger; the latencies (one statement over every fill) are read once, on a helper
connection in the same snapshot, while this process folds. Session 8 (PostgreSQL, branch
``pgaudit3``, ``_pg_fold``): the order counts, fill sums and latencies are read once for the
whole scope (not once per half, each a scan of every row) on two helper connections while
both processes read; each symbol's fills are read once, in time order, joined with their
orders and as text (``_ordered_pg``: the sums, base and third-asset fees, own position and
slippage groups summed in Python from that read, instead of three statements per symbol and
one per third-asset fee); the halves only do those ordered reads. Session 8 (SQLite, branch
``sqlaudit3``): the cyclic garbage collector is off during the fold for every caller, not
only the CLI (``fold.no_cyclic_gc``: its full collections walked millions of rows' objects,
~0.3-0.6 s of CPU per process), and the third-asset fees come from each symbol's ordered
read instead of a statement each. Session 10 (bench/RESULTS.md): ``AverageBook.apply_all``
without ``abs``/``min``/sign products, fills at their touch counted without dividing
(``GroupFold.add_slippage_groups``), the ordered read's order checked on the trade ids alone,
the worker's fill sums seeking its symbols; on PostgreSQL no per-row ``scale()`` maxima
(``Dialect.max_places``).

A ledger whose report needs per-run groups (several runs, whole-ledger scope) is left to the
fold: a run's books open with the inventory at its first fill, at its average cost.
tests/audit/test_setbased.py checks that this path and the fold give the same report.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sqlite3
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from decimal import Decimal, localcontext
from itertools import compress, islice, repeat, starmap
from operator import is_not, itemgetter, lt, mul
from typing import Any

from executor.audit.fold import _CTX, ZERO, LedgerFold, PriceAt, no_cyclic_gc, order_outcome
from executor.audit.query import AuditDB, Scope
from executor.core.orders import Side
from executor.core.pnl import FifoBook

__all__ = ["PARALLEL_MIN_FILLS", "SCALE", "Dialect", "set_based_fold"]

SCALE = 8  # decimal places SQLite sums carry (Binance sends at most 8)
# Tried in turn on SQLite: a ledger with more places (a quote of 9) is summed at 12, with at
# most 6 integer digits; past that the fold does it.
_SCALES = (SCALE, 12)
# (scale, plain) tried in turn by the report on SQLite: Binance's own form first.
_MODES = ((SCALE, True), *((s, False) for s in _SCALES))
_ACCEPTED_OUT = frozenset({"never placed", "rejected", "unresolved"})
_TIME = "coalesce(f.trade_ms, f.received_ms)"


class NotExact(Exception):
    """A value the SQL sums cannot carry exactly: the caller folds instead."""


class Dialect:
    """The few expressions that differ between the backends.

    ``plain`` (SQLite): the form Binance writes, every summed value with exactly ``scale``
    places (``"0.00100000"``), is summed as the text without its point: a quarter of the
    string work of the general form, which pads any fraction. A value of another form makes
    ``unfit`` true, and the caller runs the general form (``_MODES``)."""

    def __init__(self, sqlite: bool, scale: int = SCALE, *, plain: bool = False) -> None:
        self.sqlite = sqlite
        self.scale = scale
        self.plain = plain and sqlite
        self._unit = Decimal(1).scaleb(-scale)

    def num(self, x: str) -> str:
        """``x`` as a summable exact number: NUMERIC on PostgreSQL; on SQLite the text as an
        integer count of 10**-scale (the fraction padded to ``scale`` places)."""
        if not self.sqlite:
            return x
        if self.plain:
            return f"CAST(replace({x}, '.', '') AS INTEGER)"
        s = self.scale
        pad = "0" * s
        dot = f"instr({x}, '.')"
        # Exactly ``scale`` places (Binance's own format): drop the point. Else pad the fraction.
        return (
            f"CAST(CASE WHEN {dot} = length({x}) - {s} THEN replace({x}, '.', '') "
            f"WHEN {dot} > 0 THEN substr({x}, 1, {dot} - 1) || substr(substr({x}, {dot} + 1) "
            f"|| '{pad}', 1, {s}) ELSE {x} || '{pad}' END AS INTEGER)"
        )

    def places(self, x: str) -> str:
        """Decimal places of ``x`` as stored (its Decimal's exponent, negated)."""
        if not self.sqlite:
            return f"scale({x})"
        if self.plain:
            return str(self.scale)  # every value summed has exactly that many (``unfit``)
        return f"(CASE instr({x}, '.') WHEN 0 THEN 0 ELSE length({x}) - instr({x}, '.') END)"

    def max_places(self, x: str, when: str | None = None) -> str:
        """An aggregate of the largest ``places`` among the summed values of ``x`` (those where
        ``when``), for ``value``. PostgreSQL: NULL, computed by no row: its NUMERIC sum already
        has the largest scale among its terms, which ``value`` keeps (session 10: three
        ``scale()`` calls and maxima per fill less, bench/RESULTS.md)."""
        if not self.sqlite:
            return "NULL"
        places = self.places(x)
        return f"max(CASE WHEN {when} THEN {places} END)" if when else f"max({places})"

    def count_unfit(self, test: str) -> str:
        """An aggregate counting the rows where ``test`` (built from ``unfit``) holds: none on
        PostgreSQL, where nothing is unfit."""
        return f"sum(CASE WHEN {test} THEN 1 ELSE 0 END)" if self.sqlite else "0"

    def nonzero(self, x: str) -> str:
        return f"{x} GLOB '*[1-9]*'" if self.sqlite else f"{x} <> 0"

    def unfit(self, x: str) -> str:
        """True for a value ``num`` cannot carry exactly (SQLite only; never on PostgreSQL)."""
        if not self.sqlite:
            return "false"
        if self.plain:
            # The stored text is canonical (``executor.persistence.types``): positional for
            # exponents down to -30 (digits, one point), else scientific (with an ``E``). So
            # no ``E`` and a point ``scale`` from the end is exactly ``scale`` places; at most
            # 19 characters fit an integer of 10**-scale below 2**63 (a longer text would be
            # clamped by CAST, not refused).
            # Checked as: no exponent, the point ``scale`` characters before the end (a
            # third of the cost of one GLOB of digit classes).
            return f"(length({x}) > 19 OR substr({x}, -{self.scale + 1}, 1) <> '.' OR {x} LIKE '%E%')"
        dot = f"instr({x}, '.')"
        return (
            f"(CASE WHEN {dot} = length({x}) - {self.scale} THEN length({x}) > 19 "
            f"ELSE (instr({x}, 'E') > 0 OR {self.places(x)} > {self.scale} "
            f"OR (CASE WHEN {dot} > 0 THEN {dot} - 1 ELSE length({x}) END) > {18 - self.scale}) END)"
        )

    def value(self, total: Any, places: Any) -> Decimal:
        """A sum read back as a Decimal with the exponent the fold's sum would have."""
        if total is None:
            return ZERO
        if not self.sqlite:
            return total if isinstance(total, Decimal) else Decimal(total)
        v = Decimal(total).scaleb(-self.scale)
        return v.quantize(Decimal(1).scaleb(-int(places or 0)))


def _where(scope: Scope, time_col: str, alias: str) -> tuple[str, list[Any]]:
    return scope.where(time_col, run_col=f"{alias}.run_id", symbol_col=f"{alias}.symbol")


def _and(where: str, cond: str) -> str:
    return (where + " AND " if where else " WHERE ") + cond


def set_based_fold(
    db: AuditDB, scope: Scope, pairs: Callable[[str], tuple[str, str]], prices: PriceAt
) -> LedgerFold | None:
    """The fold of ``scope`` (groups per symbol over the whole scope) from SQL; None when this
    path cannot give exactly what the fold gives. Above ``PARALLEL_MIN_FILLS`` fills of two or
    more symbols, a forked worker folds part of the symbols (every figure is per symbol) while
    this process folds the rest: on SQLite it reopens the file, on PostgreSQL it reads through
    a connection of its own in this reader's snapshot (``SqlReader.share`` / ``joined``), so
    both halves read one ledger whatever is committed meanwhile (``_pg_fold``)."""
    if not db.sqlite:
        return _pg_fold(db, scope, pairs, prices)
    with no_cyclic_gc():  # the forked worker inherits it (callers other than the CLI)
        return _sqlite_fold(db, scope, pairs, prices)


def _sqlite_fold(
    db: AuditDB, scope: Scope, pairs: Callable[[str], tuple[str, str]], prices: PriceAt
) -> LedgerFold | None:
    """``set_based_fold`` on SQLite: split over this process and a forked worker."""
    walked = _walk(db) if scope.symbol is None else []
    split = _split(db, scope, walked)
    if split is None:
        return _fold_part(db, scope, pairs, prices)
    # SQLite: the worker opens the file itself.
    theirs_scope = _Part(*_fields(scope), symbols=split, inside=True, plus=True)
    _JOB.update(source=(db.path, db.archive), where=db.path, scope=theirs_scope, pairs=pairs)
    pool = multiprocessing.get_context("fork").Pool(1)
    try:
        pending = pool.apply_async(_child_job)
        _JOB.clear()
        # Every symbol but the worker's, NOT IN: a symbol whose first fill is committed while
        # this runs (SQLite: no snapshot across statements) is this process's in full.
        mine_scope = _Part(*_fields(scope), symbols=split, inside=False, plus=True)
        mine = _fold_part(db, mine_scope, pairs, prices, tuple(walked))
        theirs = pending.get()
    finally:
        pool.close()
        pool.join()
    if mine is None or theirs is None:
        return None
    groups, unconverted = theirs
    mine.groups.update(groups)  # disjoint: each symbol was folded by one process
    mine.unconverted.update(unconverted)
    return mine


def _pg_fold(
    db: AuditDB, scope: Scope, pairs: Callable[[str], tuple[str, str]], prices: PriceAt
) -> LedgerFold | None:
    """``set_based_fold`` on PostgreSQL (session 8, bench/RESULTS.md): the aggregates (order
    counts, fill sums, latencies) are read once for the whole scope, each one scan, and each
    symbol's fills once, in time order, joined with their orders (``_ordered_pg``).

    Split (above ``PARALLEL_MIN_FILLS`` fills of two or more symbols): a forked worker does
    the ordered reads of part of the symbols (``_split``), this process those of the others,
    and the aggregates run meanwhile on two helper connections of this reader, all in one
    snapshot; the ordered figures are then added to the aggregates' groups
    (``GroupFold.add_ordered``). Before (session 7) each half read the aggregates of its own
    symbols, each a scan of every row, and ran three statements per symbol."""
    db.conn.execute("SET LOCAL jit = off")  # short statements: compiling them costs more
    split = _split(db, scope)
    calls = _aggregate_calls(scope)
    fold = LedgerFold(pairs, prices, per_run=False)
    if split is None:
        results = [db.conn.execute(sql, params) for sql, params in calls]
        symbols = _add_aggregates(fold, results)
        part = _ordered_part(db, scope, pairs, prices, sorted(symbols))
        if part is None:
            return None
        _add_part(fold, part.groups, part.unconverted)
        return fold
    # The snapshot, exported before the fork (the reader's event loop runs on a thread the
    # worker does not have); two backends already work at once (one per process): parallel
    # workers of each statement would only add processes.
    source = db.conn.share()
    db.conn.execute(_ONE_WORKER)
    mine = [s for s in _walk(db) if s not in split]
    _JOB.update(source=source, where=db.path, scope=scope, pairs=pairs, symbols=split)
    pool = multiprocessing.get_context("fork").Pool(1)
    try:
        pending = pool.apply_async(_child_job)
        _JOB.clear()
        # The aggregates on helper connections in the same snapshot, while both processes
        # read their symbols' fills: orders with the latencies on one, fills on the other.
        setup = ["SET LOCAL jit = off", _ONE_WORKER]
        on_orders = db.conn.submit(calls[:3], setup=setup)
        on_fills = db.conn.submit(calls[3:], setup=setup)
        part = _ordered_part(db, scope, pairs, prices, mine)
        theirs = pending.get()
        results = [*on_orders.result(), *on_fills.result()]
    finally:
        pool.close()
        pool.join()
    if part is None or theirs is None:
        return None
    _add_aggregates(fold, results)
    _add_part(fold, part.groups, part.unconverted)
    _add_part(fold, *theirs)
    return fold


def _add_part(fold: LedgerFold, groups: dict[Any, Any], unconverted: dict[str, Any]) -> None:
    """One part's ordered figures (``_ordered_part``) into ``fold``'s groups: every symbol
    with a row in the ordered read has fills with a side in the sums (one snapshot)."""
    for (_rid, sym), g in groups.items():
        fold.group(None, sym).add_ordered(g)
    fold.unconverted.update(unconverted)  # disjoint: each symbol was read by one part


# Above this many fills (and with two or more symbols) the report is split between this
# process and one forked worker; below, one process.
PARALLEL_MIN_FILLS = 50_000
_SAMPLE = 4096  # rows sampled to share the symbols out (``_split``)
_JOB: dict[str, Any] = {}
# PostgreSQL, split: two backends already work at once (one per process); parallel workers of
# each statement would only add processes, each costing more CPU in all than one backend.
_ONE_WORKER = "SET LOCAL max_parallel_workers_per_gather = 0"
# PostgreSQL: each symbol's ordered read hashes every order (id, external, quotes: ~30 MB at
# 500,000 orders) to join its fills; with the server's default 4 MB the hash is split into
# batches on disk and the rows sorted on disk after it, with this it is one batch in memory
# (EXPLAIN ANALYZE at 1M fills: 1.14 s -> 1.00 s, no temporary files). Only for this reader's
# read-only transaction.
_WORK_MEM = "SET LOCAL work_mem = '128MB'"


@dataclass(frozen=True)
class _Part(Scope):
    """A scope restricted to the symbols ``symbols`` (``inside``) or to every other symbol.
    ``plus``: SQLite's ``+symbol`` (no index on symbol); PostgreSQL has no unary plus on text,
    and its planner needs no such hint (each symbol's ordered read is per symbol anyway)."""

    symbols: tuple[str, ...] = ()
    inside: bool = True
    plus: bool = True

    def where(
        self, time_col: str, *, run_col: str | None = "run_id", symbol_col: str | None = "symbol"
    ) -> tuple[str, list[Any]]:
        where, params = super().where(time_col, run_col=run_col, symbol_col=symbol_col)
        if symbol_col and self.symbols and self.symbol is None:
            # ``+``: not through an index on symbol (orders would then be read in random
            # order); a covering index is still scanned whole.
            marks = ", ".join("?" * len(self.symbols))
            cond = f"{'+' if self.plus else ''}{symbol_col} {'' if self.inside else 'NOT '}IN ({marks})"
            where = (where + " AND " if where else " WHERE ") + cond
            params = [*params, *self.symbols]
        return where, params


def _fields(scope: Scope) -> tuple[Any, ...]:
    return (scope.run_id, scope.since_ms, scope.until_ms, scope.symbol)


def _walk(db: AuditDB) -> list[str]:
    """Every symbol with a fill (any scope), by a walk along the (symbol, trade_ms) index."""
    return db.distinct("fills", "symbol")


def _split(db: AuditDB, scope: Scope, symbols: list[str] | None = None) -> tuple[str, ...] | None:
    """The symbols the worker folds (about half of the fills), or None for one process.
    ``symbols``: ``_walk``'s, when the caller has walked already."""
    if scope.symbol is not None or (os.cpu_count() or 1) < 2:
        return None
    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    # The symbols by a walk along the (symbol, trade_ms) index, enough fills by a count that
    # stops at the threshold, and each symbol's share of the fills from a sample of rows at
    # evenly spaced row ids: a few thousand seeks instead of a GROUP BY over every fill
    # (session 6 round 2: 0.2-0.35 s before the fork). The shares only balance the halves.
    symbols = _walk(db) if symbols is None else symbols
    if len(symbols) < 2:
        return None
    enough = f"SELECT count(*) FROM (SELECT 1 FROM fills LIMIT {int(PARALLEL_MIN_FILLS)}) AS e"
    if db.conn.execute(enough).fetchone()[0] < PARALLEL_MIN_FILLS:
        return None
    # Two subqueries: each reads one end of the rowid (a single min(), max() scans an index).
    lo, hi = db.conn.execute("SELECT (SELECT min(id) FROM fills), (SELECT max(id) FROM fills)").fetchone()
    step = max(1, (hi - lo) // _SAMPLE)
    ids = (
        "WITH RECURSIVE r(i) AS (SELECT ? UNION ALL SELECT i + ? FROM r WHERE i + ? <= ?)"
        if db.sqlite
        else "WITH r(i) AS (SELECT generate_series(CAST(? AS bigint), CAST(? AS bigint), CAST(? AS bigint)))"
    )
    bounds = (lo, step, step, hi) if db.sqlite else (lo, hi, step)
    sample = dict(
        db.conn.execute(
            f"{ids} SELECT f.symbol, count(*) FROM r JOIN fills f ON f.id = r.i GROUP BY f.symbol", bounds
        ).fetchall()
    )
    counts = sorted(((sample.get(sym, 0), sym) for sym in symbols), reverse=True)
    # Largest first, each to the lighter side; the worker takes the side with the largest.
    sides: tuple[list[str], list[str]] = ([], [])
    load = [0, 0]
    for n, sym in counts:
        k = 0 if load[0] <= load[1] else 1
        sides[k].append(sym)
        load[k] += n
    return tuple(sorted(sides[0]))


def _child_job() -> tuple[dict[Any, Any], dict[str, Any]] | None:
    # A forked worker never uses the parent's connection (nor, on PostgreSQL, its reader's
    # event loop, whose thread is not in this process): its own, and its own prices.
    from executor.audit.report import PriceSeries

    job = dict(_JOB)
    source = job["source"]
    scope = job["scope"]
    if isinstance(source, tuple):
        with AuditDB(*source) as db:
            fold = _fold_part(db, scope, job["pairs"], PriceSeries(db, scope.until_ms))
            return None if fold is None else (fold.groups, fold.unconverted)
    from executor.audit.reader import SqlReader

    reader = SqlReader.joined(source)
    try:
        opened = AuditDB(job["where"], reader=reader)
    except BaseException:
        reader.close()
        raise
    for stmt in ("SET LOCAL jit = off", _ONE_WORKER):
        opened.conn.execute(stmt)
    with opened as db:
        # PostgreSQL: only the ordered reads of its symbols; the parent reads the aggregates.
        part = _ordered_part(db, scope, job["pairs"], PriceSeries(db, scope.until_ms), job["symbols"])
        return None if part is None else (part.groups, part.unconverted)


def _fold_part(
    db: AuditDB, scope: Scope, pairs: Callable[[str], tuple[str, str]], prices: PriceAt,
    walked: tuple[str, ...] = (),
) -> LedgerFold | None:
    """The fold of ``scope`` on SQLite (PostgreSQL: ``_pg_fold``). ``walked``: every symbol
    with a fill, as ``_walk`` found them before the split (this process's part only).

    The fill sums of a part are read for its symbols named, without ``+``: along the covering
    index ``ix_fills_audit_sums`` from each symbol's first entry, not by a scan of the whole
    index (the orders keep ``+``: those are read in row order). Session 10: at 1M fills of
    two symbols, ~0.05 s of CPU less per process. The worker's part names its symbols; this
    process's is every other one, named from ``walked``, and a walk after the sums confirms
    that no symbol had its first fill committed meanwhile (SQLite has no snapshot across
    statements): else its sums are read again by ``NOT IN``, so such a symbol is this
    process's in full, orders and fills."""
    fold = LedgerFold(pairs, prices, per_run=False)
    seek: Scope | None = None
    if isinstance(scope, _Part) and scope.symbols and scope.symbol is None:
        if scope.inside:
            seek = replace(scope, plus=False)
        elif walked:
            mine = tuple(sym for sym in walked if sym not in scope.symbols)
            seek = replace(scope, symbols=mine, inside=True, plus=False) if mine else None
    try:
        quotes = _order_counts_sqlite(db, Dialect(True, SCALE), scope, fold)  # with the latencies
        for scale, plain in _MODES:
            d = Dialect(True, scale, plain=plain)
            try:
                sums = _fill_sums(db, d, seek or scope)
                if seek is not None and not scope.inside and not set(_walk(db)) <= set(walked):
                    sums = _fill_sums(db, d, scope)  # a symbol appeared: the statement naming none
            except NotExact:
                continue
            _fills(db, d, scope, fold, sums, quotes)
            return fold
    except NotExact:
        return None
    except sqlite3.OperationalError as exc:
        if "overflow" in str(exc).lower():  # an SQLite integer sum past 2**63
            return None
        raise
    return None


# -- PostgreSQL: the aggregates once, then one ordered read per symbol


def _aggregate_calls(scope: Scope) -> list[tuple[str, list[Any]]]:
    """The statements of the aggregates over the whole scope, each one scan: the order
    counts, the two latency histograms, the fill sums (``_add_aggregates`` reads them)."""
    d = Dialect(False)
    return [_order_counts_call(d, scope), *_latency_calls(scope), _fill_sums_call(d, scope)]


def _add_aggregates(fold: LedgerFold, results: list[Any]) -> set[str]:
    """``_aggregate_calls``' rows into ``fold``; returns the symbols with fills with a side
    (those the ordered reads give the books of)."""
    counts, ack, first, sums = results
    d = Dialect(False)
    _add_order_counts(fold, d, counts)
    _add_latencies(fold, [ack, first])
    return _add_fill_sums(fold, _fill_sum_rows(d, sums))[0]


def _ordered_part(
    db: AuditDB, scope: Scope, pairs: Callable[[str], tuple[str, str]], prices: PriceAt,
    symbols: list[str] | tuple[str, ...],
) -> LedgerFold | None:
    """The ordered figures (``_ordered_pg``) of ``symbols``, in a fold of their own (a symbol
    with no fill with a side in scope gets no group); None when ``_fifo`` refuses."""
    part = LedgerFold(pairs, prices, per_run=False)
    db.conn.execute(_WORK_MEM)  # from here on, in this reader's transaction
    try:
        for sym in symbols:
            _ordered_pg(db, scope, part, sym)
    except NotExact:
        return None
    return part


# -- orders


def _order_counts_sqlite(db: AuditDB, d: Dialect, scope: Scope, fold: LedgerFold) -> dict[int, str | None]:
    """Counts, ordered and executed quantity per symbol, with the sums taken in Python over
    each distinct (quantity, executed) text and its count: orders repeat their sizes, and a
    ``Decimal`` of the stored text is exact whatever its form (no padding in SQL, and no
    fallback for an order of a few places). The text is grouped as text, so every distinct
    exponent keeps its own group and the sums have the fold's exponent. The groups are
    counted by a ``Counter`` over the rows, not by SQL: SQLite's GROUP BY sorts every order
    (500,000 orders: 1.6 s of CPU against 0.7 s for reading them and counting in Python).

    Session 7 (bench/RESULTS.md): the same read gives

    * each own order's latencies (PostgreSQL: ``_latency_calls``): to acknowledgement, and to its first fill
      by a seek per order on ``ix_fills_order_id_received_ms_symbol`` (the first received
      fill of that order, any scope), counted per (symbol, latency) in Python: one scan of
      the orders instead of three statements, two of which sorted;
    * the "non-zero" tests (``Dialect.nonzero``: a digit 1-9 in the text) once per distinct
      text in Python (``_NONZERO``, the same test), not twice per order in SQL;
    * each order's decision quotes as ``_ordered`` reads them, returned as a dict by id
      (None for an external order), which ``_ordered`` uses instead of a join per fill."""
    where, params = _where(scope, "o.created_ms", "o")
    t0 = "coalesce(o.decision_ms, o.created_ms)"
    sql = (
        "SELECT o.symbol, o.status, CASE WHEN o.external THEN 1 ELSE 0 END, o.quantity, o.executed_qty, "
        "CASE WHEN o.resolved_from_unknown THEN 1 ELSE 0 END, "
        f"CASE WHEN NOT o.external THEN o.acked_ms - {t0} END, "
        "CASE WHEN NOT o.external THEN (SELECT min(f.received_ms) FROM fills f WHERE f.order_id = o.id) "
        f"- {t0} END, o.id, {_QUOTES} FROM orders o{where}"
    )
    rows = db.conn.execute(sql, params).fetchall()
    dec = Decimal
    nonzero = _NONZERO
    for (sym, status, ext, qty, exe, rfu), n in Counter(map(itemgetter(*range(6)), rows)).items():
        ex_nz = 1 if exe is not None and nonzero(exe) else 0  # CASE WHEN nonzero(executed) THEN 1 ELSE 0
        g, oc = _count_orders(fold, sym, status, ex_nz, ext, n, rfu * n)
        if not ext and oc not in _ACCEPTED_OUT and qty is not None and nonzero(qty):
            # As the fold adds them (the current context): n equal terms are one product.
            g.ordered += dec(qty) * n
            g.executed += dec(exe) * n
    for col, hist in ((6, "ack"), (7, "first_fill")):
        # None: an external order, or no acknowledgement / no fill (as the joins left out).
        lats = Counter(map(itemgetter(0, col), rows))
        for (sym, lat), n in sorted(kv for kv in lats.items() if kv[0][1] is not None):
            _add_hist(getattr(fold.group(None, sym), hist), lat, n)
    return dict(map(itemgetter(8, 9), rows))


# ``Dialect.nonzero`` on SQLite (``x GLOB '*[1-9]*'``), in Python: a digit 1-9 anywhere.
_NONZERO = re.compile("[1-9]").search
# An own order's decision quotes as one text "bid ask" ('' for a NULL); NULL for an external
# order: one object per order for ``_ordered``'s slippage groups.
_QUOTES = (
    "CASE WHEN NOT o.external THEN coalesce(o.decision_bid, '') || ' ' || coalesce(o.decision_ask, '') END"
)


def _count_orders(fold: LedgerFold, sym: str, status: str, ex_nz: int, ext: int, n: int,
                  rfu: int) -> tuple[Any, str]:
    """``n`` orders of one (symbol, status, executed or not, external) group, counted as the
    fold counts them; returns the symbol's group and the orders' outcome."""
    g = fold.group(None, sym)
    oc = order_outcome(status, Decimal(ex_nz))
    g.counts[oc] += n
    g.orders_total += n
    g.external += ext * n
    g.resolved_from_unknown += rfu
    return g, oc


def _order_counts_call(d: Dialect, scope: Scope) -> tuple[str, list[Any]]:
    """Counts per (symbol, status, executed or not, external), with the ordered and executed
    quantities of our accepted orders summed (PostgreSQL; ``_add_order_counts``)."""
    where, params = _where(scope, "o.created_ms", "o")
    q_ok = f"o.quantity IS NOT NULL AND {d.nonzero('o.quantity')}"
    unfit = f"{d.unfit('o.executed_qty')} OR ({q_ok} AND {d.unfit('o.quantity')})"
    sql = (
        f"SELECT o.symbol, o.status, CASE WHEN {d.nonzero('o.executed_qty')} THEN 1 ELSE 0 END, "
        "CASE WHEN o.external THEN 1 ELSE 0 END, count(*), "
        "sum(CASE WHEN o.resolved_from_unknown THEN 1 ELSE 0 END), "
        f"sum(CASE WHEN {q_ok} THEN {d.num('o.quantity')} END), "
        f"{d.max_places('o.quantity', q_ok)}, "
        f"sum(CASE WHEN {q_ok} THEN {d.num('o.executed_qty')} END), "
        f"{d.max_places('o.executed_qty', q_ok)}, "
        f"{d.count_unfit(unfit)} "
        f"FROM orders o{where} GROUP BY 1, 2, 3, 4"
    )
    return sql, params


def _add_order_counts(fold: LedgerFold, d: Dialect, rows: Any) -> None:
    for sym, status, ex_nz, ext, n, rfu, qty, q_pl, exe, e_pl, unfit in rows:
        if unfit:
            raise NotExact
        g, oc = _count_orders(fold, sym, status, ex_nz, ext, n, rfu)
        if not ext and oc not in _ACCEPTED_OUT and qty is not None:
            g.ordered += d.value(qty, q_pl)
            g.executed += d.value(exe, e_pl)


def _latency_calls(scope: Scope) -> list[tuple[str, list[Any]]]:
    """PostgreSQL: the latencies (whole milliseconds) of our own orders, two statements: to
    acknowledgement, to first fill (each order's first fill from
    ``ix_fills_order_id_received_ms_symbol`` alone: the first entry of each order id, merge
    joined with the orders; 0.51 s at 1M fills against 0.67 s for ``min()`` per order id, and
    1.49 s when a larger ``work_mem`` makes the planner hash every fill instead, so the
    aggregates do not run with ``_WORK_MEM``); rows (symbol, ms, n)."""
    where, params = _where(scope, "o.created_ms", "o")
    own = _and(where, "NOT o.external")
    t0 = "coalesce(o.decision_ms, o.created_ms)"
    ack = _and(own, "o.acked_ms IS NOT NULL")
    first = (
        f"SELECT o.symbol, ff.m - {t0}, count(*) FROM orders o JOIN (SELECT DISTINCT ON (order_id) "
        "order_id, received_ms AS m FROM fills WHERE order_id IS NOT NULL ORDER BY order_id, received_ms) ff "
        f"ON ff.order_id = o.id{own} GROUP BY 1, 2"
    )
    return [(f"SELECT o.symbol, o.acked_ms - {t0}, count(*) FROM orders o{ack} GROUP BY 1, 2", params),
            (first, params)]


def _add_latencies(fold: LedgerFold, results: list[Any]) -> None:
    """``_latency_calls``' rows into ``fold``'s histograms."""
    ack, first = results
    for sym, lat, n in ack:
        _add_hist(fold.group(None, sym).ack, lat, n)
    for sym, lat, n in first:
        _add_hist(fold.group(None, sym).first_fill, lat, n)


def _add_hist(h: Any, key: int, n: int) -> None:
    h.counts[key] = h.counts.get(key, 0) + n
    h.n += n
    h.total += key * n


# -- fills


def _fill_sums(db: AuditDB, d: Dialect, scope: Scope) -> list[tuple[Any, ...]]:
    """Per (symbol, side, maker flag, fee asset): count, quantity, quote quantity, non-zero
    fees and their count; ``side`` a ``Side`` or None, money as Decimals."""
    sql, params = _fill_sums_call(d, scope)
    return _fill_sum_rows(d, db.conn.execute(sql, params))


def _fill_sums_call(d: Dialect, scope: Scope) -> tuple[str, list[Any]]:
    where, params = _where(scope, "f.trade_ms", "f")
    fee_nz = d.nonzero("f.commission")
    if d.plain:
        # SQLite, Binance's form (``Dialect.plain``; any other text refuses the whole
        # statement): every value has ``scale`` places, so the places are that constant and
        # a zero fee adds 0 to the integer sum; only the count needs the non-zero test.
        # Session 8 (bench/RESULTS.md, ``sqlaudit3``): two GLOBs, three CASEs and three
        # aggregate steps less per fill: 0.68 -> 0.59 s of CPU per 500,000 fills.
        sql = (
            "SELECT f.symbol, f.side, f.is_maker, f.commission_asset, count(*), "
            f"sum({d.num('f.qty')}), {d.scale}, sum({d.num('f.quote_qty')}), {d.scale}, "
            f"sum({d.num('f.commission')}), {d.scale}, sum({fee_nz}), "
            f"sum({d.unfit('f.qty')} OR {d.unfit('f.quote_qty')} OR {d.unfit('f.commission')}) "
            f"FROM fills f{where} GROUP BY 1, 2, 3, 4"
        )
        return sql, params
    unfit = f"{d.unfit('f.qty')} OR {d.unfit('f.quote_qty')} OR {d.unfit('f.commission')}"
    sql = (
        "SELECT f.symbol, f.side, f.is_maker, f.commission_asset, count(*), "
        f"sum({d.num('f.qty')}), {d.max_places('f.qty')}, "
        f"sum({d.num('f.quote_qty')}), {d.max_places('f.quote_qty')}, "
        f"sum(CASE WHEN {fee_nz} THEN {d.num('f.commission')} END), "
        f"{d.max_places('f.commission', fee_nz)}, "
        f"sum(CASE WHEN {fee_nz} THEN 1 ELSE 0 END), "
        f"{d.count_unfit(unfit)} "
        f"FROM fills f{where} GROUP BY 1, 2, 3, 4"
    )
    return sql, params


def _fill_sum_rows(d: Dialect, rows: Any) -> list[tuple[Any, ...]]:
    sides = {"BUY": Side.BUY, "SELL": Side.SELL}
    out = []
    for sym, side, maker, fee_asset, n, q, q_pl, qq, qq_pl, fee, fee_pl, fee_n, unfit in rows:
        if unfit:
            raise NotExact
        out.append(
            (
                sym,
                sides.get(side),
                None if maker is None else bool(maker),
                fee_asset,
                n,
                d.value(q, q_pl),
                d.value(qq, qq_pl),
                d.value(fee, fee_pl) if fee_n else None,
                fee_n,
            )
        )
    return out


def _fills(db: AuditDB, d: Dialect, scope: Scope, fold: LedgerFold, sums: list[tuple[Any, ...]],
           quotes: dict[int, str | None] | None) -> None:
    # Third-asset fees come from each symbol's ordered read (session 8): not a statement each.
    symbols, _third = _add_fill_sums(fold, sums)
    for sym in sorted(symbols):
        _ordered(db, d, scope, fold, sym, quotes)


def _add_fill_sums(fold: LedgerFold, sums: list[tuple[Any, ...]]) -> tuple[set[str], set[tuple[str, str]]]:
    """The fill sums into ``fold``; returns the symbols with fills with a side and the
    (symbol, asset) of their third-asset fees."""
    third: set[tuple[str, str]] = set()
    symbols: set[str] = set()
    for sym, side, maker, fee_asset, n, qty, quote_qty, fee, _fee_n in sums:
        g = fold.group(None, sym)
        g.fills += n
        if side is None:
            g.fills_without_side += n
            continue
        symbols.add(sym)
        base, quote = fold.pairs(sym)
        if maker is not None:
            g.known_quote += quote_qty
            if maker:
                g.maker_quote += quote_qty
                g.maker_n += n
        t = g.totals
        t.count += n
        if side is Side.BUY:
            t.bought_qty += qty
            t.bought_quote += quote_qty
        else:
            t.sold_qty += qty
            t.sold_quote += quote_qty
        if fee is not None and fee_asset:
            t.by_asset[fee_asset] = t.by_asset.get(fee_asset, ZERO) + fee
            if fee_asset == quote:
                t.fees += fee
            elif fee_asset != base:  # a base fee's value in quote comes from the ordered read
                third.add((sym, fee_asset))
    return symbols, third


def _order_by(db: AuditDB, scope: Scope, sym: str) -> str:
    """The fold's order of ``sym``'s fills, (time, trade id). Time is the exchange's
    ``trade_ms``, else ``received_ms``; when no fill in scope lacks ``trade_ms`` (a bounded
    scope never has one), ``trade_ms`` itself orders them, along ``ix_fills_symbol_trade_ms``:
    no sort of every fill of the symbol (at 500,000 fills: 4.2 s of CPU -> 1.4 s on SQLite)."""
    if scope.since_ms is None and scope.until_ms is None:
        where, params = _where(Scope(scope.run_id, None, None, sym), "f.trade_ms", "f")
        null = _and(where, "f.trade_ms IS NULL")
        if db.conn.execute(f"SELECT 1 FROM fills f{null} LIMIT 1", params).fetchone():
            return f"{_TIME}, f.trade_id"
    return _BY_TRADE


_BY_TRADE = "f.trade_ms, f.trade_id"


def _by_trade_ms(db: AuditDB, select: str, params: list[Any]) -> list[Any] | None:
    """The rows of ``select`` (whose last column is ``trade_id``) in ``_BY_TRADE`` order, or
    None when this cannot tell.

    They are read ``ORDER BY f.trade_ms`` only: along ``ix_fills_symbol_trade_ms`` with no
    sort at all, where ``trade_ms, trade_id`` makes SQLite sort each run of equal
    ``trade_ms`` ("USE TEMP B-TREE FOR RIGHT PART OF ORDER BY": 500,000 fills, ~0.2-0.35 s of
    CPU). That order is (trade_ms, trade_id) when the trade ids rise strictly along it (then
    they rise within every run of equal ``trade_ms``): Binance numbers a symbol's trades in
    time order, so this is the rule; on any other ledger (None on the caller's side) the
    caller reads with the full ORDER BY. Session 10: checking that on the ids alone, not on
    the ties of both columns, reads one column less (~0.05 s of CPU per 500,000 fills)."""
    rows = db.conn.execute(f"{select} ORDER BY f.trade_ms", params).fetchall()
    if len(rows) < 2:
        return rows
    ids = list(map(itemgetter(-1), rows))
    try:
        if all(map(lt, ids, islice(ids, 1, None))):
            return rows
    except TypeError:  # an id stored as text beside integers: SQLite's own order
        pass
    return None


def _ordered(db: AuditDB, d: Dialect, scope: Scope, fold: LedgerFold, sym: str,
             quotes_by_id: dict[int, str | None] | None) -> None:
    """One time-ordered read of ``sym``'s fills: the average-cost book, FIFO by the identity,
    base fees in quote, the bot's own position, slippage.

    Column-wise (session 6): the rows are fetched at once and each column converted with
    ``map`` (C loops), and the slippage groups are counted with a ``Counter`` over the own
    fills' (side, price, bid, ask); only the average-cost book, which depends on every
    earlier step, is a Python loop. Every sum is taken in the fills' order, as before.

    Session 7: each fill's order quotes come from ``quotes`` (the orders' read of
    ``_order_counts_sqlite``, by order id) instead of a join per fill (500,000 fills: about
    0.35 s of CPU); an order it lacks (outside a bounded scope) is read by id. A dict built
    only for this was tried in session 6 and cost more than the join.

    Session 8 (bench/RESULTS.md, branch ``sqlaudit3``): the third-asset fees (as
    ``_add_fill_sums`` finds them: a non-zero fee in an asset neither base nor quote) come
    from this read too, as "asset amount time" texts (NULL on every other fill), where each
    was a statement of its own over the symbol's fills (~0.3-0.4 s of CPU per 500,000 fills,
    against a few hundredths for one more, mostly NULL, column). Session 10: the time is in
    that text (as ``_ordered_pg`` reads it), so the read has no time column of its own."""
    where, params = _where(Scope(scope.run_id, scope.since_ms, scope.until_ms, sym), "f.trade_ms", "f")
    base, quote = fold.pairs(sym)
    cond = _and(where, "f.side IN ('BUY', 'SELL')")
    nz = d.nonzero("f.commission")
    cols = (
        f"SELECT f.side = 'BUY', f.qty, CASE WHEN f.commission_asset = ? AND {nz} THEN f.commission END, "
        "f.price, f.order_id, CASE WHEN f.commission_asset NOT IN (?, ?) AND f.commission_asset <> '' "
        f"AND {nz} THEN f.commission_asset || ' ' || f.commission || ' ' || {_TIME} END"
    )
    args = [base, base, quote, *params]
    order = _order_by(db, scope, sym)
    rows = None
    if order == _BY_TRADE:  # no fill in scope without a trade_ms: it is the time, ``_TIME``
        rows = _by_trade_ms(db, f"{cols}, f.trade_id FROM fills f{cond}", args)
    if rows is None:
        rows = db.conn.execute(f"{cols} FROM fills f{cond} ORDER BY {order}", args).fetchall()
    buys, qtys, fees, texts, order_ids, thirds = (list(map(itemgetter(i), rows)) for i in range(6))
    del rows
    if any(thirds):  # "asset amount time" texts
        _third_fees(fold, sym, quote, ((a, x, int(t)) for a, x, t in
                                       (text.rsplit(" ", 2) for text in thirds if text)))
    del thirds
    quotes = _quotes_of(db, quotes_by_id, order_ids)
    del order_ids
    g = fold.group(None, sym)
    dec = Decimal
    with localcontext(_CTX):
        prices = list(map(dec, texts))
        # Each distinct quantity text converted and negated once (sizes repeat: ~4,000 texts
        # among a symbol's 500,000 fills; as ``_ordered_pg``), not a Decimal per fill.
        bought = {t: dec(t) for t in set(qtys)}
        sold = {t: -q for t, q in bought.items()}
        dqs = [bought[t] if b else sold[t] for b, t in zip(buys, qtys, strict=True)]
        base_fees = ZERO
        for i in compress(range(len(fees)), fees):  # fills with a non-zero base-asset fee
            fee = dec(fees[i])
            dqs[i] = dqs[i] - fee
            base_fees += fee * prices[i]
        moves = list(compress(zip(dqs, prices, strict=True), dqs))  # non-zero changes only
        flow = sum(starmap(mul, moves), ZERO)  # sum of dq * price, in order
        g.avg.apply_all(moves)
        own = list(map(is_not, quotes, repeat(None)))
        g.totals.fees += base_fees
        g.own_qty += sum(compress(dqs, own), ZERO)
        g.fifo = _fifo(moves, flow)
        slips = Counter(compress(zip(buys, texts, quotes, strict=True), own))
        g.add_slippage_groups(
            (buy, p, bid or None, ask or None, n)
            for (buy, p, ba), n in slips.items()
            if ba != " "
            for bid, ask in (ba.split(" "),)
        )


def _third_fees(fold: LedgerFold, sym: str, quote: str, fees: Iterable[tuple[str, str, int]]) -> None:
    """Fees in a third asset, each (asset, amount text, fill time), valued at the ledger's
    price of ``asset``+quote at the fill's time; a fee with no such price is unconverted.
    Asset by asset in name order, each in time order (every sum exact at ``_CTX``, so the
    order changes no figure). Both backends' ordered reads bring these (``_ordered``,
    ``_ordered_pg``)."""
    by_asset: dict[str, list[tuple[str, int]]] = {}
    for asset, amount, t in fees:
        by_asset.setdefault(asset, []).append((amount, t))
    g = fold.group(None, sym)
    price_at = fold.price_at
    dec = Decimal
    total = g.totals.fees
    with localcontext(_CTX):
        for asset in sorted(by_asset):
            for text, t in by_asset[asset]:
                amount = dec(text)
                price = price_at(asset + quote, t)
                if price is None:
                    per = fold.unconverted.setdefault(sym, {})
                    per[asset] = per.get(asset, ZERO) + amount
                else:
                    total += amount * price
    g.totals.fees = total


def _quotes_of(
    db: AuditDB, by_id: dict[int, str | None] | None, order_ids: list[int | None]
) -> list[str | None]:
    """Each fill's ``_QUOTES`` (None: no order row, or an external order), as the join
    ``fills LEFT JOIN orders`` gives it. ``by_id`` first (``_order_counts_sqlite``); the orders
    it lacks are read by id (a fill in a bounded scope of an order created before it)."""
    by_id = {} if by_id is None else by_id
    missing = set(order_ids)
    missing.discard(None)
    missing.difference_update(by_id.keys())
    if missing:
        by_id = dict(by_id)
        ids = sorted(missing)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT o.id, {_QUOTES} FROM orders o WHERE o.id IN ({marks})"
            by_id.update(db.conn.execute(sql, chunk))
    return list(map(by_id.get, order_ids))


def _ordered_pg(db: AuditDB, scope: Scope, fold: LedgerFold, sym: str) -> None:
    """``_ordered`` on PostgreSQL: one time-ordered read of ``sym``'s fills joined with their
    orders (session 8), for the average-cost book, FIFO by the identity, base and
    third-asset fees in quote, the bot's own position and the slippage groups, each summed
    in Python at the fold's precision (exact: the same values the NUMERIC sums gave).

    Session 7 ran three statements per symbol (NUMERIC sums over a join with the orders, the
    ordered (dq, price), the slippage groups over a second join) and one per third-asset fee:
    ~3 s of a backend's CPU per 500,000 fills against ~1 s for this one read. Every column
    comes as text, read by COPY (``SqlReader.columns``; NUMERIC's text is exact, and
    ``Decimal(text)`` costs less than asyncpg's binary NUMERIC decoding): dq, price, the base
    fee (NULL on most fills), an own
    fill's slippage key "B|S price bid ask" (NULL: no order, or an external one; counted as
    text, a string hashes faster than a Decimal), a third-asset fee as "asset amount ms"
    (NULL on every other fill)."""
    where, params = _where(Scope(scope.run_id, scope.since_ms, scope.until_ms, sym), "f.trade_ms", "f")
    base, quote = fold.pairs(sym)
    cond = _and(where, "f.side IN ('BUY', 'SELL')")
    fee = "CASE WHEN f.commission_asset = ? AND f.commission <> 0 THEN f.commission END"
    third = "f.commission_asset NOT IN (?, ?) AND f.commission_asset <> '' AND f.commission <> 0"
    sql = (
        f"SELECT CAST(CASE WHEN f.side = 'BUY' THEN f.qty ELSE -f.qty END - coalesce({fee}, 0) AS text), "
        f"CAST(f.price AS text), CAST({fee} AS text), "
        "CASE WHEN NOT o.external THEN CASE WHEN f.side = 'BUY' THEN 'B ' ELSE 'S ' END || "
        "CAST(f.price AS text) || ' ' || coalesce(CAST(o.decision_bid AS text), '') || ' ' || "
        "coalesce(CAST(o.decision_ask AS text), '') END, "
        f"CASE WHEN {third} THEN f.commission_asset || ' ' || CAST(f.commission AS text) || ' ' || "
        f"CAST({_TIME} AS text) END "
        f"FROM fills f LEFT JOIN orders o ON o.id = f.order_id{cond} ORDER BY {_order_by(db, scope, sym)}"
    )
    reader: Any = db.conn
    args = [base, base, base, quote, *params]
    columns = reader.columns(sql, args, 5)
    if columns is None:  # a value COPY escapes (never in Binance's assets and numbers)
        rows = reader.rows(sql, args)
        columns = [list(map(itemgetter(i), rows)) for i in range(5)]
        del rows
    dq_texts, price_texts, fees, keys, thirds = columns  # NULL: '' or None, both false
    del columns
    if not dq_texts:
        return
    if any(thirds):  # "asset amount time" texts
        _third_fees(fold, sym, quote, ((a, x, int(t)) for a, x, t in
                                       (text.rsplit(" ", 2) for text in thirds if text)))
    g = fold.group(None, sym)
    dec = Decimal
    with localcontext(_CTX):
        # Each distinct dq text converted once: sizes repeat (1M fills: ~4,000 dq texts among
        # a symbol's 500,000 fills; ~0.08 s less CPU a symbol). Prices repeat less (~94,000):
        # the same for them measured no gain.
        dqs = list(map({t: dec(t) for t in set(dq_texts)}.__getitem__, dq_texts))
        prices = list(map(dec, price_texts))
        del dq_texts, price_texts
        with_fee = compress(zip(fees, prices, strict=True), fees)  # fills with a base-asset fee
        g.totals.fees += sum(starmap(mul, ((dec(f), p) for f, p in with_fee)), ZERO)
        moves = list(compress(zip(dqs, prices, strict=True), dqs))  # non-zero changes only
        g.avg.apply_all(moves)
        g.own_qty += sum(compress(dqs, keys), ZERO)  # a key: a fill of our own order
        g.fifo = _fifo(moves, sum(starmap(mul, moves), ZERO))
        groups = Counter(filter(None, keys))
        g.add_slippage_groups(
            (side == "B", p, bid or None, ask or None, n)
            for key, n in groups.items()
            for side, p, bid, ask in (key.split(" "),)
            if bid or ask
        )


def _fifo(moves: Any, flow: Decimal) -> FifoBook:
    """The FIFO book after ``moves`` (non-zero signed base changes at their prices, in order)
    without replaying them: the open lots are the newest moves in the position's direction
    that add up to it (FIFO closes the oldest first; a move that crossed zero is never needed
    beyond what it opened), and ``gross = cost of the open lots - sum(dq * price)``."""
    book = FifoBook()
    position = sum((m[0] for m in moves), ZERO)
    lots: deque[list[Decimal]] = deque()
    cost = ZERO
    if position:
        long = position > 0
        need = abs(position)
        for dq, price in reversed(moves):
            if (dq > 0) != long:
                continue
            take = min(abs(dq), need)
            q = take if long else -take
            lots.appendleft([q, price])
            cost += q * price
            need -= take
            if not need:
                break
        if need:  # cannot happen without an opening lot; refuse rather than guess
            raise NotExact
    book.lots = lots
    book.gross = cost - flow
    return book

