"""The audit report's metrics, per symbol (and per run and symbol when the scope spans
several runs), computed from ledger rows.

Definitions (the rendered report repeats the short forms):

* outcome of an order: filled (FILLED); partly filled (ended CANCELED/EXPIRED with a
  non-zero executed quantity); cancelled / expired (ended with nothing executed);
  rejected; never placed (NOT_PLACED: the exchange never had it); open (still on the book
  when the data ends); unresolved (PENDING_SEND/SENT/UNKNOWN). "resolved from unknown"
  counts orders whose outcome was once UNKNOWN and was later settled by a query.
* realized PnL: ``executor.core.pnl`` (FIFO and average cost), net of fees; fees in quote
  are taken as is, base fees at the fill price, third-asset fees (BNB) at the latest known
  price of ``<asset><quote>`` at the fill's time (fills and decision marks in the ledger);
  a fee with no such price is listed as unconverted.
* closing inventory is marked to the last known price (last fill or decision mark).
* slippage (bps, positive = cost) of each fill against the decision-time mid
  ((bid+ask)/2) and touch (ask for a BUY, bid for a SELL); external orders have none.
* fill ratio: executed / ordered base quantity over our orders the exchange accepted.
* maker share: maker quote volume / quote volume of fills whose maker flag is known.
* latency: decision (``decision_ms``, else the order's creation) to acknowledgement
  (``acked_ms``, first exchange status seen) and to first fill (when the first fill was
  received); both on the bot's clock. Percentiles are nearest-rank.
"""

from __future__ import annotations

import bisect
import math
import multiprocessing
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Context, Decimal, localcontext
from typing import Any

from executor.audit.query import AuditDB, FillRow, OrderRow, Scope, split_symbol
from executor.core.orders import Side
from executor.core.pnl import PnlResult, average_cost_pnl, fifo_pnl
from executor.persistence.types import now_ms

__all__ = [
    "OUTCOMES",
    "AuditReport",
    "Stats",
    "SymbolReport",
    "build_report",
    "order_outcome",
    "percentile",
]

ZERO = Decimal(0)
OUTCOMES = (
    "filled",
    "partly filled",
    "cancelled",
    "expired",
    "rejected",
    "never placed",
    "open",
    "unresolved",
)
_ACCEPTED_OUT = frozenset({"never placed", "rejected", "unresolved"})


def order_outcome(status: str, executed_qty: Decimal) -> str:
    if status == "FILLED":
        return "filled"
    if status in ("CANCELED", "EXPIRED", "EXPIRED_IN_MATCH"):
        if executed_qty > 0:
            return "partly filled"
        return "cancelled" if status == "CANCELED" else "expired"
    if status == "REJECTED":
        return "rejected"
    if status == "NOT_PLACED":
        return "never placed"
    if status in ("PENDING_SEND", "SENT", "UNKNOWN"):
        return "unresolved"
    return "open"


def percentile(sorted_values: Sequence[Any], p: float) -> Any:
    """Nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Stats:
    n: int
    mean: Decimal | None
    p50: Any
    p99: Any

    @classmethod
    def of(cls, values: Iterable[Any]) -> Stats:
        vals = sorted(values)
        if not vals:
            return cls(0, None, None, None)
        with localcontext() as ctx:
            ctx.prec = 50
            # ZERO + v is Decimal(v) + ... for ints and Decimals alike: no per-value copy needed.
            mean = sum(vals, ZERO) / len(vals)
        return cls(len(vals), mean, percentile(vals, 50), percentile(vals, 99))


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
    position_cost_fifo: Decimal = ZERO
    position_cost_avg: Decimal = ZERO
    mark_price: Decimal | None = None
    mark_ms: int | None = None
    mark_source: str | None = None
    market_value: Decimal | None = None
    unrealized_fifo: Decimal | None = None
    unrealized_avg: Decimal | None = None
    slippage_mid_bps: Stats = field(default_factory=lambda: Stats(0, None, None, None))
    slippage_touch_bps: Stats = field(default_factory=lambda: Stats(0, None, None, None))
    fill_ratio: Decimal | None = None
    maker_share: Decimal | None = None
    maker_fills: int = 0
    latency_ack_ms: Stats = field(default_factory=lambda: Stats(0, None, None, None))
    latency_first_fill_ms: Stats = field(default_factory=lambda: Stats(0, None, None, None))


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
    orders: list[OrderRow] = field(default_factory=list, repr=False)
    fills: list[FillRow] = field(default_factory=list, repr=False)
    fill_slippage: dict[int, tuple[Decimal | None, Decimal | None]] = field(default_factory=dict, repr=False)


class _FeeConverter:
    """Values third-asset fees in quote at the latest known price at the fill's time."""

    def __init__(self, db: AuditDB, scope: Scope, pairs: dict[str, tuple[str, str]]) -> None:
        self.db = db
        self.pid = os.getpid()
        self.until_ms = scope.until_ms
        self.pairs = pairs
        self.points: dict[str, tuple[list[int], list[Decimal]]] = {}
        # Keyed by fill: PnL is computed twice (FIFO, average) and per run too.
        self.missing: dict[tuple[str, int], tuple[str, str, Decimal]] = {}

    def _series(self, symbol: str) -> tuple[list[int], list[Decimal]]:
        if symbol not in self.points:
            if os.getpid() != self.pid:
                # In the forked FIFO worker: never share the parent's sqlite connection.
                self.db, self.pid = AuditDB(self.db.path), os.getpid()
            pts = self.db.price_points(symbol, self.until_ms)
            self.points[symbol] = ([t for t, _ in pts], [p for _, p in pts])
        return self.points[symbol]

    def __call__(self, asset: str, amount: Decimal, fill: Any) -> Decimal:
        times, prices = self._series(asset + self.pairs[fill.symbol][1])
        if not times:
            self.missing[fill.key] = (fill.symbol, asset, amount)
            return ZERO
        # Latest price at or before the fill; the first one after it if none came before.
        i = bisect.bisect_right(times, fill.time_ms) - 1
        return amount * prices[max(i, 0)]

    def unconverted(self, symbol: str | None = None) -> dict[str, Decimal]:
        out: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for sym, asset, amount in self.missing.values():
            if symbol is None or sym == symbol:
                out[asset] += amount
        return dict(sorted(out.items()))


def _group_orders(orders: Iterable[OrderRow]) -> dict[str, list[OrderRow]]:
    by: dict[str, list[OrderRow]] = defaultdict(list)
    for o in orders:
        by[o.symbol].append(o)
    return by


_CTX50 = Context(prec=50)


def _slip(side: Side, price: Decimal, reference: Decimal) -> Decimal:
    """``executor.core.pnl.slippage_bps`` for a positive reference, without entering a local
    context per call: the same three operations at the same precision, so the same result
    (tests/audit/test_report_fast.py checks it)."""
    c = _CTX50
    diff = c.subtract(price, reference) if side is Side.BUY else c.subtract(reference, price)
    return c.multiply(c.divide(diff, reference), 10000)


def _stats_int(values: list[int]) -> Stats:
    vals = sorted(values)
    if not vals:
        return Stats(0, None, None, None)
    return Stats(len(vals), Decimal(sum(vals)) / len(vals), percentile(vals, 50), percentile(vals, 99))


def _symbol_report(
    group: str,
    run_id: int | None,
    symbol: str,
    base: str,
    quote: str,
    orders: list[OrderRow],
    fills: list[FillRow],
    order_info: dict[int, OrderRow],
    convert: _FeeConverter,
    opening: tuple[PnlResult, PnlResult] | None,
    per_fill: dict[int, tuple[Decimal | None, Decimal | None]] | None,
    pnl_later: Callable[[], tuple[PnlResult, PnlResult]] | None = None,
) -> tuple[SymbolReport, PnlResult, PnlResult]:
    rep = SymbolReport(group, run_id, symbol, base, quote)
    counts = dict.fromkeys(OUTCOMES, 0)
    ordered = executed = ZERO
    ack_lat: list[int] = []
    decided: dict[int, int] = {}
    for o in orders:
        oc = order_outcome(o.status, o.executed_qty)
        counts[oc] += 1
        rep.external_orders += o.external
        rep.resolved_from_unknown += o.resolved_from_unknown
        if o.external:
            continue
        if oc not in _ACCEPTED_OUT and o.quantity:
            ordered += o.quantity
            executed += o.executed_qty
        t0 = o.decision_ms if o.decision_ms is not None else o.created_ms
        decided[o.id] = t0
        if o.acked_ms is not None:
            ack_lat.append(o.acked_ms - t0)
    rep.orders = counts
    rep.orders_total = len(orders)
    rep.fill_ratio = executed / ordered if ordered else None
    rep.latency_ack_ms = _stats_int(ack_lat)

    # One pass over the fills for what pnl does not compute: slippage, maker share, first fills.
    slip_mid: list[Decimal] = []
    slip_touch: list[Decimal] = []
    cache: dict[tuple[int, Decimal], tuple[Decimal | None, Decimal | None]] = {}
    first_fill: dict[int, int] = {}
    maker_quote = known_quote = ZERO
    maker_n = 0
    priced: list[FillRow] = []
    for f in fills:
        if f.side is None:
            rep.fills_without_side += 1
            continue
        priced.append(f)
        if f.is_maker is not None:
            known_quote += f.quote_qty
            if f.is_maker:
                maker_quote += f.quote_qty
                maker_n += 1
        oid = f.order_id
        if oid is None:
            continue
        if oid in decided and (oid not in first_fill or f.received_ms < first_fill[oid]):
            first_fill[oid] = f.received_ms
        key = (oid, f.price)
        sl = cache.get(key)
        if sl is None:
            o = order_info.get(oid)
            mid = touch = None
            if o is not None and not o.external:
                bid, ask = o.decision_bid, o.decision_ask
                if bid is not None and ask is not None and bid > 0 and ask > 0:
                    mid = _slip(f.side, f.price, (bid + ask) / 2)
                ref = ask if f.side == "BUY" else bid
                if ref is not None and ref > 0:
                    touch = _slip(f.side, f.price, ref)
            sl = cache[key] = (mid, touch)
        if sl[0] is not None:
            slip_mid.append(sl[0])
        if sl[1] is not None:
            slip_touch.append(sl[1])
        if per_fill is not None:
            per_fill[f.id] = sl
    rep.fills = len(fills)
    rep.maker_fills = maker_n
    rep.maker_share = maker_quote / known_quote if known_quote else None
    rep.slippage_mid_bps = Stats.of(slip_mid)
    rep.slippage_touch_bps = Stats.of(slip_touch)
    rep.latency_first_fill_ms = _stats_int([t - decided[oid] for oid, t in first_fill.items()])

    open_q = open_p_f = open_p_a = ZERO
    if opening is not None:
        of, oa = opening
        open_q = of.position_qty
        open_p_f = of.position_cost / of.position_qty if of.position_qty else ZERO
        open_p_a = oa.position_cost / oa.position_qty if oa.position_qty else ZERO
    # ``priced`` is one symbol's rows of a table unique on (symbol, trade_id), selected in
    # (time, trade id) order (``AuditDB.fills``): pnl need not dedupe or sort them again.
    # Both may be running in a worker process meanwhile (see _start_parallel_pnl).
    if pnl_later is not None:
        fifo, avg = pnl_later()
    else:
        avg = average_cost_pnl(priced, symbol, base, quote, convert, open_q, open_p_a, presorted=True)
        fifo = fifo_pnl(priced, symbol, base, quote, convert, open_q, open_p_f, presorted=True)
    rep.bought_qty, rep.sold_qty = fifo.bought_qty, fifo.sold_qty
    rep.bought_quote, rep.sold_quote = fifo.bought_quote, fifo.sold_quote
    rep.fees_by_asset = dict(sorted(fifo.fees_by_asset.items()))
    rep.fees_quote = fifo.fees
    rep.realized_fifo, rep.realized_fifo_gross = fifo.realized, fifo.realized_gross
    rep.realized_avg, rep.realized_avg_gross = avg.realized, avg.realized_gross
    rep.position_qty = fifo.position_qty
    rep.position_cost_fifo, rep.position_cost_avg = fifo.position_cost, avg.position_cost
    return rep, fifo, avg


# Below this many fills the report runs in one process; above, FIFO and average-cost PnL run
# in a forked worker while this process loads orders and does everything else.
PARALLEL_MIN_FILLS = 50_000
_JOB: dict[str, Any] = {}


def _pnl_job(symbol: str) -> tuple[PnlResult, PnlResult, dict[tuple[str, int], tuple[str, str, Decimal]]]:
    fills, (base, quote), convert = _JOB["fills"][symbol], _JOB["pairs"][symbol], _JOB["convert"]
    priced = [f for f in fills if f.side is not None]
    fifo = fifo_pnl(priced, symbol, base, quote, convert, presorted=True)
    avg = average_cost_pnl(priced, symbol, base, quote, convert, presorted=True)
    # The fees the worker could not convert: the parent's notes list them.
    return fifo, avg, dict(convert.missing)


def _start_parallel_pnl(
    fills_by: dict[str, list[FillRow]], pairs: dict[str, tuple[str, str]], convert: _FeeConverter
) -> dict[str, Any] | None:
    """Start FIFO and average-cost PnL per symbol in one forked worker; None where fork is not
    available."""
    if (os.cpu_count() or 1) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    _JOB.update(fills=fills_by, pairs=pairs, convert=convert)
    pool = multiprocessing.get_context("fork").Pool(1)
    pending = {s: pool.apply_async(_pnl_job, (s,)) for s in sorted(fills_by)}
    pool.close()  # the worker exits when the queued jobs are done
    _JOB.clear()  # the worker has its own copy of memory from the fork
    pending["\0pool"] = pool
    return pending


def build_report(db: AuditDB, scope: Scope, *, keep_rows: bool = False) -> AuditReport:
    """Everything the audit report shows, for ``scope``. ``keep_rows`` also keeps the order and
    fill rows and each fill's slippage (for the CSV exports and charts)."""
    notes: list[str] = []
    runs = db.runs(scope)
    fills = db.fills(scope)
    known = db.known_assets()
    pairs = {s: split_symbol(s, known) for s in sorted({f.symbol for f in fills})}
    convert = _FeeConverter(db, scope, pairs)
    fills_by: dict[str, list[FillRow]] = defaultdict(list)
    for f in fills:
        fills_by[f.symbol].append(f)
    # PnL starts in the worker now, so it overlaps loading the orders here.
    pnl_pending = _start_parallel_pnl(fills_by, pairs, convert) if len(fills) >= PARALLEL_MIN_FILLS else None
    orders = db.orders(scope, slim=not keep_rows)
    order_info = {o.id: o for o in orders}
    missing = sorted({f.order_id for f in fills if f.order_id is not None and f.order_id not in order_info})
    for o in db.orders_by_id(missing):
        order_info[o.id] = o
    symbols = sorted({o.symbol for o in orders} | set(fills_by))
    for s in symbols:
        if s not in pairs:
            pairs[s] = split_symbol(s, known)
    orders_by = _group_orders(orders)
    per_fill: dict[int, tuple[Decimal | None, Decimal | None]] | None = {} if keep_rows else None

    def later(symbol: str) -> Callable[[], tuple[PnlResult, PnlResult]] | None:
        if pnl_pending is None or symbol not in pnl_pending:
            return None

        def get() -> tuple[PnlResult, PnlResult]:
            fifo, avg, missing = pnl_pending[symbol].get()
            convert.missing.update(missing)
            return fifo, avg

        return get

    reports: list[SymbolReport] = []
    for s in symbols:
        base, quote = pairs[s]
        rep, _, _ = _symbol_report(
            "all",
            None,
            s,
            base,
            quote,
            orders_by.get(s, []),
            fills_by.get(s, []),
            order_info,
            convert,
            None,
            per_fill,
            later(s),
        )
        _mark(db, scope, rep)
        reports.append(rep)

    by_run: list[SymbolReport] = []
    run_ids = sorted(
        {o.run_id for o in orders if o.run_id is not None} | {f.run_id for f in fills if f.run_id is not None}
    )
    if len(run_ids) > 1:
        for s in symbols:
            base, quote = pairs[s]
            opening: tuple[PnlResult, PnlResult] | None = None
            for rid in run_ids:
                ro = [o for o in orders_by.get(s, []) if o.run_id == rid]
                rf = [f for f in fills_by.get(s, []) if f.run_id == rid]
                if not ro and not rf:
                    continue
                rep, fifo, avg = _symbol_report(
                    f"run {rid}", rid, s, base, quote, ro, rf, order_info, convert, opening, None
                )
                opening = (fifo, avg)
                by_run.append(rep)
        notes.append("per-run PnL carries the inventory of earlier runs in scope at its average cost")
    if pnl_pending is not None:
        pnl_pending["\0pool"].join()

    for rep in reports:
        rep.fees_unconverted = convert.unconverted(rep.symbol)
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
    if convert.missing:
        notes.append(
            "fees with no known price to convert them to quote (left out of fees in quote): "
            + ", ".join(f"{v} {a}" for a, v in convert.unconverted().items())
        )
    recon = db.reconciliations(scope)
    return AuditReport(
        database=str(db.path),
        scope=scope.describe(),
        generated_ms=now_ms(),
        runs=runs,
        symbols=reports,
        by_run=by_run,
        reconciliations=recon,
        totals_by_quote={q: dict(v) for q, v in totals.items()},
        notes=notes,
        orders=orders if keep_rows else [],
        fills=fills if keep_rows else [],
        fill_slippage=per_fill or {},
    )


def _mark(db: AuditDB, scope: Scope, rep: SymbolReport) -> None:
    last = db.last_price(rep.symbol, scope.until_ms)
    if last is None:
        return
    rep.mark_ms, rep.mark_price, rep.mark_source = last
    rep.market_value = rep.position_qty * rep.mark_price
    rep.unrealized_fifo = rep.market_value - rep.position_cost_fifo
    rep.unrealized_avg = rep.market_value - rep.position_cost_avg
