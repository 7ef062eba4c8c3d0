"""The audit report's metrics, per symbol (and per run and symbol when the scope spans
several runs), computed from ledger rows.

Definitions (the rendered report repeats the short forms):

* outcome of an order: filled (FILLED); partly filled (ended CANCELED/EXPIRED with a
  non-zero executed quantity); cancelled / expired (ended with nothing executed);
  rejected; never placed (NOT_PLACED: the exchange never had it); open (still on the book
  when the data ends); unresolved (PENDING_SEND/SENT/UNKNOWN/NOT_FOUND). "resolved from unknown"
  counts orders whose outcome was once UNKNOWN and was later settled by a query.
* realized PnL: ``executor.core.pnl`` (FIFO and average cost), net of fees; fees in quote
  are taken as is, base fees at the fill price, third-asset fees (BNB) at the latest known
  price of ``<asset><quote>`` at or before the fill's time (fills and decision marks in the
  ledger); a fee with no such price is listed as unconverted.
* closing inventory is valued at the last known price: the newer of the last fill's price
  and the last decision-time mark (or mid) recorded with an order; the report says which
  (the ledger records no market marks of its own).
* positions (per base asset) are ``executor.figures.positions`` of the fills in scope (the
  same function the live status and the web use); balances are the ledger's latest.
* slippage (bps, positive = cost) of each fill against the decision-time mid
  ((bid+ask)/2) and touch (ask for a BUY, bid for a SELL); external orders have none.
* fill ratio: executed / ordered base quantity over our orders the exchange accepted.
* maker share: maker quote volume / quote volume of fills whose maker flag is known.
* latency: decision (``decision_ms``, else the order's creation) to acknowledgement
  (``acked_ms``, first exchange status seen) and to first fill (when the order's first fill
  was received); both on the bot's clock. Percentiles are nearest-rank; slippage's are taken
  to 0.001 bps (``executor.audit.fold``).

The figures are those of the fold, ``executor.audit.fold``. An audit of the whole ledger
starts from the stored checkpoint when there is a valid one (``executor.audit.checkpoints``)
and folds only the rows after it; otherwise they come from set-based SQL
(``executor.audit.setbased``: aggregates in the database, one ordered read per symbol for
the average-cost book) when that can give them exactly, else from folding every row. The
exports and charts (``keep_rows``) and a scope spanning several runs (per-run groups) fold.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from executor.audit.fold import (
    _CTX,
    OUTCOMES,
    GroupFold,
    LedgerFold,
    OrderRef,
    Stats,
    order_outcome,
    percentile,
)
from executor.audit.query import AuditDB, FillRow, OrderRow, Scope, split_symbol
from executor.figures import BalanceFigure, balances
from executor.persistence.values import now_ms

__all__ = [
    "OUTCOMES",
    "AuditReport",
    "Stats",
    "SymbolReport",
    "build_report",
    "fold_scope",
    "order_outcome",
    "percentile",
]

ZERO = Decimal(0)
_NO_STATS = Stats(0, None, None, None)


@dataclass
class SymbolReport:
    group: str  # "all" or "run N"
    run_id: int | None
    symbol: str
    base: str
    quote: str
    orders: dict[str, int] = field(default_factory=dict)
    orders_total: int = 0
    external_orders: int = 0
    resolved_from_unknown: int = 0
    fills: int = 0
    fills_without_side: int = 0
    bought_qty: Decimal = ZERO
    sold_qty: Decimal = ZERO
    bought_quote: Decimal = ZERO
    sold_quote: Decimal = ZERO
    fees_by_asset: dict[str, Decimal] = field(default_factory=dict)
    fees_quote: Decimal = ZERO
    fees_unconverted: dict[str, Decimal] = field(default_factory=dict)
    realized_fifo: Decimal = ZERO
    realized_fifo_gross: Decimal = ZERO
    realized_avg: Decimal = ZERO
    realized_avg_gross: Decimal = ZERO
    position_qty: Decimal = ZERO
    own_position_qty: Decimal = ZERO  # fills of our own orders only: what the bot's risk checks see
    position_cost_fifo: Decimal = ZERO
    position_cost_avg: Decimal = ZERO
    mark_price: Decimal | None = None
    mark_ms: int | None = None
    mark_source: str | None = None
    market_value: Decimal | None = None
    unrealized_fifo: Decimal | None = None
    unrealized_avg: Decimal | None = None
    slippage_mid_bps: Stats = _NO_STATS
    slippage_touch_bps: Stats = _NO_STATS
    fill_ratio: Decimal | None = None
    maker_share: Decimal | None = None
    maker_fills: int = 0
    latency_ack_ms: Stats = _NO_STATS
    latency_first_fill_ms: Stats = _NO_STATS


@dataclass
class AuditReport:
    database: str
    scope: str
    generated_ms: int
    runs: list[dict[str, Any]]
    symbols: list[SymbolReport]  # per symbol over the whole scope
    by_run: list[SymbolReport]  # per run and symbol (only when the scope holds several runs)
    reconciliations: list[dict[str, Any]]
    totals_by_quote: dict[str, dict[str, Decimal]]
    notes: list[str]
    operator_actions: list[dict[str, Any]] = field(default_factory=list)
    orders: list[OrderRow] = field(default_factory=list, repr=False)
    fills: list[FillRow] = field(default_factory=list, repr=False)
    fill_slippage: dict[int, tuple[Decimal | None, Decimal | None]] = field(default_factory=dict, repr=False)
    balances: list[BalanceFigure] = field(default_factory=list)  # as last recorded (account-wide)
    balances_ms: int | None = None  # when the newest of them was recorded
    positions: dict[str, Decimal] = field(default_factory=dict)  # figures.positions of the fills in scope


class Pairs:
    """(base, quote) of each symbol, split once (``split_symbol`` with the ledger's assets)."""

    def __init__(self, known: frozenset[str]) -> None:
        self.known = known
        self.cache: dict[str, tuple[str, str]] = {}

    def __call__(self, symbol: str) -> tuple[str, str]:
        p = self.cache.get(symbol)
        if p is None:
            p = self.cache[symbol] = split_symbol(symbol, self.known)
        return p


class PriceSeries:
    """``price_at(symbol, t)``: the latest price the ledger knows of ``symbol`` at or before
    ``t`` (fills and decision marks), for valuing third-asset fees; read once per symbol."""

    def __init__(self, db: AuditDB, until_ms: int | None = None) -> None:
        self.db = db
        self.until_ms = until_ms
        self.points: dict[str, tuple[list[int], list[Decimal]]] = {}

    def __call__(self, symbol: str, t: int) -> Decimal | None:
        series = self.points.get(symbol)
        if series is None:
            pts = self.db.price_points(symbol, self.until_ms)
            series = self.points[symbol] = ([p[0] for p in pts], [p[1] for p in pts])
        i = bisect.bisect_right(series[0], t) - 1
        return series[1][i] if i >= 0 else None


def order_refs(orders: list[OrderRow]) -> dict[int, OrderRef]:
    return {o.id: (o.external, o.decision_bid, o.decision_ask) for o in orders}


def fold_scope(
    db: AuditDB, scope: Scope, fold: LedgerFold, *, keep_rows: bool = False
) -> tuple[list[OrderRow], list[FillRow], dict[int, tuple[Decimal | None, Decimal | None]]]:
    """Fold every order and fill in ``scope`` into ``fold``; returns the rows when kept."""
    orders = db.orders(scope, slim=not keep_rows)
    fills = db.fills(scope)
    refs = order_refs(orders)
    missing = sorted({f.order_id for f in fills if f.order_id is not None and f.order_id not in refs})
    refs.update(order_refs(db.orders_by_id(missing)))
    everything = scope.since_ms is None and scope.until_ms is None and scope.run_id is None
    fold.add_orders(orders, db.first_fills(None if everything else [o.id for o in orders]))
    per_fill: dict[int, tuple[Decimal | None, Decimal | None]] = {}
    fold.add_fills(fills, refs.get, per_fill if keep_rows else None)
    if keep_rows:
        return orders, fills, per_fill
    return [], [], {}


def build_report(
    db: AuditDB, scope: Scope, *, keep_rows: bool = False, use_checkpoint: bool = True,
    set_based: bool = True,
) -> AuditReport:
    """Everything the audit report shows, for ``scope``. ``keep_rows`` also keeps the order and
    fill rows and each fill's slippage (for the CSV exports and charts). The whole ledger is
    folded from its checkpoint when one is valid (``use_checkpoint``); otherwise the figures
    come from set-based SQL (``executor.audit.setbased``, ``set_based``) when it can give them
    exactly, else from folding every row (the same figures either way)."""
    from executor.audit.checkpoints import resume_report
    from executor.audit.setbased import set_based_fold

    notes: list[str] = []
    pairs = Pairs(db.known_assets())
    prices = PriceSeries(db, scope.until_ms)
    fold: LedgerFold | None = None
    orders: list[OrderRow] = []
    fills: list[FillRow] = []
    per_fill: dict[int, tuple[Decimal | None, Decimal | None]] = {}
    whole = scope.since_ms is None and scope.until_ms is None and scope.run_id is None
    per_run = False
    if use_checkpoint and whole and not keep_rows:
        fold, note = resume_report(db, pairs, prices)
        if note:
            notes.append(note)
    if fold is None:
        several = db.conn.execute("SELECT count(*) FROM runs").fetchone()[0] > 1
        per_run = scope.run_id is None and several
        if set_based and not keep_rows and not per_run:
            fold = set_based_fold(db, scope, pairs, prices)
    if fold is None:
        fold = LedgerFold(pairs, prices, per_run=per_run)
        orders, fills, per_fill = fold_scope(db, scope, fold, keep_rows=keep_rows)

    groups = {k: g for k, g in fold.groups.items() if scope.symbol is None or k[1] == scope.symbol}
    reports: list[SymbolReport] = []
    for (rid, sym), g in sorted(groups.items(), key=lambda kv: kv[0][1]):
        if rid is None:
            rep = _symbol_report("all", None, sym, pairs(sym), g)
            rep.fees_unconverted = dict(sorted(fold.unconverted.get(sym, {}).items()))
            _mark(db, scope, rep)
            reports.append(rep)
    run_ids = sorted({rid for rid, _ in groups if rid is not None})
    by_run: list[SymbolReport] = []
    if len(run_ids) > 1:
        for (rid, sym), g in sorted(
            ((k, g) for k, g in groups.items() if k[0] is not None), key=lambda kv: (kv[0][1], kv[0][0])
        ):
            by_run.append(_symbol_report(f"run {rid}", rid, sym, pairs(sym), g))
        notes.append("per-run PnL carries the inventory held when the run's first fill came, at its cost")

    totals: dict[str, dict[str, Decimal]] = {}
    for rep in reports:
        t = totals.setdefault(rep.quote, defaultdict(lambda: ZERO))
        t["realized_fifo"] += rep.realized_fifo
        t["realized_avg"] += rep.realized_avg
        t["fees"] += rep.fees_quote
        t["volume"] += rep.bought_quote + rep.sold_quote
        if rep.unrealized_fifo is not None:
            t["unrealized_fifo"] += rep.unrealized_fifo
    if scope.since_ms is not None or scope.run_id is not None:
        notes.append("PnL counts only fills in scope: inventory held before the scope starts is not included")
    if any(r.fills_without_side for r in reports):
        notes.append("fills without a side (not linked to an order) are counted but left out of PnL")
    unconverted: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for rep in reports:
        for a, v in rep.fees_unconverted.items():
            unconverted[a] += v
    if unconverted:
        notes.append(
            "fees with no known price to convert them to quote (left out of fees in quote): "
            + ", ".join(f"{v} {a}" for a, v in sorted(unconverted.items()))
        )
    held = _positions(fold, scope)
    rows = db.balances()
    return AuditReport(
        balances=balances([BalanceFigure(r["asset"], r["free"], r["locked"]) for r in rows]),
        balances_ms=max((r["updated_ms"] for r in rows), default=None),
        positions=dict(sorted(held.items())),
        database=str(db.path),
        scope=scope.describe(),
        generated_ms=now_ms(),
        runs=db.runs(scope),
        symbols=reports,
        by_run=by_run,
        reconciliations=db.reconciliations(scope),
        totals_by_quote={q: dict(v) for q, v in totals.items()},
        notes=notes,
        operator_actions=db.operator_actions(scope),
        orders=orders,
        fills=fills,
        fill_slippage=per_fill,
    )


def _positions(fold: LedgerFold, scope: Scope) -> dict[str, Decimal]:
    """``executor.figures.positions`` of the fills in scope, without reading them again: per
    symbol that is the FIFO book's net quantity (the sum of every fill's ``fill_delta``; the
    lots are exact pieces of them), added up per base asset."""
    held: dict[str, Decimal] = {}
    with localcontext(_CTX):
        for (rid, sym), g in fold.groups.items():
            if rid is None and g.totals.count and (scope.symbol is None or sym == scope.symbol):
                base = fold.pairs(sym)[0]
                held[base] = held.get(base, ZERO) + g.fifo.position()[0]
    return held


def _symbol_report(
    group: str, run_id: int | None, symbol: str, pair: tuple[str, str], g: GroupFold
) -> SymbolReport:
    rep = SymbolReport(group, run_id, symbol, *pair)
    rep.orders = dict(g.counts)
    rep.orders_total = g.orders_total
    rep.external_orders = g.external
    rep.resolved_from_unknown = g.resolved_from_unknown
    rep.fill_ratio = g.executed / g.ordered if g.ordered else None
    rep.latency_ack_ms = g.ack.stats()
    rep.latency_first_fill_ms = g.first_fill.stats()
    rep.fills = g.fills
    rep.fills_without_side = g.fills_without_side
    rep.maker_fills = g.maker_n
    rep.maker_share = g.maker_quote / g.known_quote if g.known_quote else None
    rep.slippage_mid_bps = g.slip_mid.stats(3)
    rep.slippage_touch_bps = g.slip_touch.stats(3)
    t = g.totals
    rep.bought_qty, rep.sold_qty = t.bought_qty, t.sold_qty
    rep.bought_quote, rep.sold_quote = t.bought_quote, t.sold_quote
    rep.fees_by_asset = dict(sorted(t.by_asset.items()))
    rep.fees_quote = t.fees
    with localcontext(_CTX):
        rep.realized_fifo_gross, rep.realized_avg_gross = g.fifo.gross, g.avg.gross
        rep.realized_fifo = g.fifo.gross - t.fees
        rep.realized_avg = g.avg.gross - t.fees
        rep.position_qty, rep.position_cost_fifo = g.fifo.position()
        rep.position_cost_avg = g.avg.position()[1]
    rep.own_position_qty = g.own_qty
    return rep


def _mark(db: AuditDB, scope: Scope, rep: SymbolReport) -> None:
    last = db.last_price(rep.symbol, scope.until_ms)
    if last is None:
        return
    rep.mark_ms, rep.mark_price, rep.mark_source = last
    rep.market_value = rep.position_qty * rep.mark_price
    rep.unrealized_fifo = rep.market_value - rep.position_cost_fifo
    rep.unrealized_avg = rep.market_value - rep.position_cost_avg
