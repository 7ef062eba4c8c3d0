"""REST reconciliation: rebuilding the ledger's truth from the exchange after a gap.

``run_gap_fill(reconciler, reason)`` runs at start and after any user-stream gap. While
it runs, stream events are held (``Reconciler.holding``); then, in this order:

1. open orders per configured symbol (our orders get their status; orders we did not
   place are recorded as external);
2. every order the ledger holds as not final and that step 1 did not cover is queried by
   client id. Found: its real status (a NOT_FOUND order that shows up after all is adopted
   with the exchange's status; step 4 reconciles its fills). -2013 (not found), through the
   core state machine and never re-sent: our PENDING_SEND/SENT/UNKNOWN order becomes
   NOT_FOUND (it still counts against every limit), and a NOT_FOUND order found absent
   again becomes NOT_PLACED (confirmed). Either only once ``not_found_grace_ms`` (at
   least the request timeout) has passed since the order's last recorded change -- when
   its outcome became unknown, or when it was first not found; until then it is left for
   later (it may still be in flight inside the exchange). The start-up run after a crash
   applies the same grace;
3. myTrades from the last stored trade id of each symbol, page by page, every page
   passing the gateway's weight budget;
4. any order (ours or external) whose stored fills fall short of its executed quantity
   (reported by the exchange, by a stream event, or by step 2) gets a targeted myTrades
   by orderId;

and last, still holding,

5. the REST account snapshot (taken at exchange time T, its ``updateTime``) is compared
   with the stored balances: first the held events that happened at or before T are
   applied in arrival order (dedupe absorbs the overlap with steps 1-4); every difference
   still there (after a short settle) is a discrepancy, and the exchange's value is
   written. Only then are the held events newer than T applied, and holding stops.

Why hold through step 5: an event newer than T applied before the snapshot's rows are
written puts its balance rows before the older snapshot's in the ledger and makes the
comparison skip its assets (the stream is ahead), so the snapshot -- the audit's opening
one on a fresh ledger -- would lack them. Held until the write, the ledger records the
snapshot first and the newer events after it, as the exchange's clock has them. Whatever
fails, the held events are applied (``release_held`` in a ``finally``): none is lost and
none is applied twice (the buffer hands each out once).

The run is recorded in reconciliation_runs with its counts and discrepancies (also when
it fails).

``fill_missing_for_orders`` is step 4 on its own (the targeted gap fill the reconciler
runs for a suspect order); ``run_balance_snapshot`` is step 5 on its own (the periodic
balance check), holding stream events the same way.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from executor.core.money import ZERO
from executor.core.orders import AbsenceConfirmed, NotFound, OrderStatus, apply
from executor.core.reports import FillReport
from executor.persistence.models import NOT_PLACED
from executor.persistence.store import OrderEventIn, OrderRecord, StatusUpdateIn
from executor.reconcile.balances import SnapshotResult, take_snapshot
from executor.reconcile.reconciler import FUTURES_PREFIX, OrderUpdate, core_state

if TYPE_CHECKING:
    from executor.reconcile.reconciler import OrderKey, Reconciler

__all__ = ["GapFillReport", "fill_missing_for_orders", "run_balance_snapshot", "run_gap_fill"]

log = logging.getLogger(__name__)

TRADES_PAGE = 1000  # myTrades' maximum limit: fewest requests per trade
# The count a run records once it has read every symbol's trades (step 3): the next run reads
# from the newest trade stored before this one began.
SCANNED = "trades_scanned"
START_REASON = "start"


@dataclass
class GapFillReport:
    reason: str
    recon_id: int | None = None
    counts: Counter[str] = field(default_factory=Counter)
    discrepancies: list[dict[str, Any]] = field(default_factory=list)
    updates: list[OrderUpdate] = field(default_factory=list)
    error: str | None = None

    @property
    def found(self) -> int:
        c = self.counts
        return (len(self.discrepancies) + c["orders_updated"] + c["fills_added"] + c["orders_not_placed"]
                + c["orders_marked_not_found"])

    @property
    def fixed(self) -> int:
        c = self.counts
        return (c["orders_updated"] + c["fills_added"] + c["orders_not_placed"] + c["orders_marked_not_found"]
                + c["balances_corrected"])


# ---------------------------------------------------------------------- steps


async def _explain_orders(rec: Reconciler, fills: list[FillReport], report: GapFillReport) -> None:
    """Trades name only an orderId: record the orders the ledger does not hold yet (placed
    by hand or by another program while we were not listening), so every fill has its order."""
    unknown: list[OrderKey] = []
    for key in dict.fromkeys((f.symbol, f.order_id) for f in fills):
        if key in rec.known_orders:
            continue
        if await rec.store.get_order_by_exchange_id(*key) is None:
            unknown.append(key)
        else:
            rec.known_orders.add(key)
    rows = []
    for symbol, order_id in unknown:
        row = await rec.gateway.get_order_by_id(symbol, order_id)
        report.counts["orders_checked"] += 1
        if row is not None:
            rows.append(row)
    if rows:
        res = await rec.apply_order_snapshots(rows, source="gap_fill")
        report.counts["external_orders_added"] += res.external_orders_added
        report.counts["orders_updated"] += res.status_changes
    rec.known_orders.update(unknown)


async def _open_orders(rec: Reconciler, symbols: list[str], report: GapFillReport) -> set[str]:
    """Step 1; returns the client ids (as reported) of the open orders seen."""
    rows: list[dict[str, Any]] = []
    for symbol in symbols:
        rows.extend(await rec.gateway.open_orders(symbol))
    snaps = [rec.order_report(r) for r in rows]
    report.counts["open_orders"] += len(snaps)
    if snaps:
        res = await rec.apply_order_snapshots(snaps, source="gap_fill")
        report.counts["orders_updated"] += res.status_changes
        report.counts["external_orders_added"] += res.external_orders_added
        report.counts["fills_added"] += res.fills_added
        report.updates.extend(res.updates)
    return {s.client_order_id for s in snaps}


async def _query_not_final(rec: Reconciler, not_final: list[OrderRecord], seen_open: set[str],
                           report: GapFillReport) -> None:
    """Step 2: the status of every not-final order by client id."""
    store = rec.store
    now = store.clock()
    found: list[dict[str, Any]] = []
    items: list[Any] = []
    resolved: list[tuple[OrderRecord, str]] = []
    for o in not_final:
        if o.client_order_id in seen_open:
            continue
        if o.symbol.startswith(FUTURES_PREFIX):
            report.counts["futures_orders_skipped"] += 1  # futures REST is not wired here yet
            continue
        if o.external and "#x" in o.client_order_id:
            continue  # renamed on a client-id clash: the exchange knows it by another id
        row = await rec.gateway.get_order(o.symbol, o.client_order_id)
        report.counts["orders_checked"] += 1
        if row is not None:
            found.append(row)
            continue
        report.counts["orders_not_found"] += 1
        if o.external:
            report.discrepancies.append({"kind": "order_not_found", "client_order_id": o.client_order_id,
                                         "symbol": o.symbol, "stored_status": o.status, "external": True})
            continue
        state = core_state(o)
        confirm = state.status is OrderStatus.NOT_FOUND
        after = apply(state, AbsenceConfirmed() if confirm else NotFound())
        if after.status is state.status:
            # The exchange showed this order before; -2013 now is a contradiction, not a resolution.
            report.discrepancies.append({"kind": "order_not_found", "client_order_id": o.client_order_id,
                                         "symbol": o.symbol, "stored_status": o.status, "external": False})
            continue
        # The grace runs from the order's last recorded change: when its outcome became
        # unknown (or it was first not found), not from before the send.
        since = max(o.updated_ms, o.sent_ms or 0, o.created_ms)
        if now - since < rec.not_found_grace_ms:
            report.counts["orders_deferred"] += 1
            continue
        new_status = after.status.value
        items.append(OrderEventIn(o.symbol, new_status, "gap_fill", rec.absent_payload(o.client_order_id),
                                  client_order_id=o.client_order_id, event_ms=now))
        items.append(StatusUpdateIn(o.client_order_id, new_status, "gap_fill", symbol=o.symbol,
                                    reject_reason="-2013: absent again at a later reconciliation"
                                    if confirm else "-2013: not found after the grace"))
        resolved.append((o, new_status))
    if found:
        res = await rec.apply_order_snapshots(found, source="gap_fill")
        report.counts["orders_updated"] += res.status_changes
        report.counts["fills_added"] += res.fills_added
        report.updates.extend(res.updates)
    if items:
        batch = await rec.apply_items(items)
        updates = []
        for change, (o, new_status) in zip(batch.status_changes, resolved, strict=True):
            if change.applied:
                name = "orders_not_placed" if new_status == NOT_PLACED else "orders_marked_not_found"
                report.counts[name] += 1
                updates.append(OrderUpdate(o.client_order_id, o.symbol, o.exchange_order_id, new_status,
                                           o.executed_qty, o.cum_quote_qty, (), "gap_fill"))
        rec.emit_updates(updates)
        report.updates.extend(updates)


async def _catch_up_trades(rec: Reconciler, symbol: str, report: GapFillReport, since_ms: int | None) -> None:
    """Step 3 for one symbol: myTrades, a page at a time, from the newest trade stored
    before the last complete scan began (``since_ms``): every trade up to then is in the
    ledger. Not from the newest stored trade: one stored by another path first (an order's
    FULL answer, a targeted gap fill, an adoption) would hide an older trade the stream lost
    meanwhile (someone trading by hand on the account). The trades since are read again;
    storing them is idempotent."""
    last = None if since_ms is None else await rec.store.last_trade_id(symbol, received_before_ms=since_ms)
    if last is None:
        last = await rec.store.last_trade_id(symbol)
    if last is None:
        # Nothing of ours stored yet: our orders' fills are found per order (step 4);
        # paging the account's whole history would buy nothing the snapshot does not show.
        report.counts["trade_symbols_without_history"] += 1
        return
    next_id = last + 1
    while True:
        page = await rec.gateway.my_trades(symbol, next_id, TRADES_PAGE)
        report.counts["trade_pages"] += 1
        if page:
            fills = [rec.trade_report(r) for r in page]
            await _explain_orders(rec, fills, report)
            res = await rec.apply_fills(fills, source="gap_fill")
            report.counts["trades_fetched"] += len(fills)
            report.counts["fills_added"] += res.fills_added
            next_id = max(f.trade_id for f in fills) + 1
        if len(page) < TRADES_PAGE:
            return


async def _complete_fills(rec: Reconciler, wanted: Mapping[str, Decimal], report: GapFillReport) -> None:
    """Step 4: orders whose stored fills fall short of what was executed."""
    store = rec.store
    for cid, reported in wanted.items():
        o = await store.get_order_by_client_id(cid)
        if o is None or o.exchange_order_id is None:
            continue
        target = max(reported, o.executed_qty)
        if target <= 0:
            continue
        key: OrderKey = (o.symbol, o.exchange_order_id)
        stored = await store.fills_for_order(cid)
        have = sum((f.qty for f in stored), ZERO)
        rec.note_fills_known(key, {f.trade_id: f.qty for f in stored})
        if have >= target:
            continue
        if o.symbol.startswith(FUTURES_PREFIX):
            report.discrepancies.append({"kind": "fills_short", "client_order_id": cid, "symbol": o.symbol,
                                         "executed_qty": target, "stored_fill_qty": have})
            continue
        rows = await rec.gateway.order_trades(o.symbol, o.exchange_order_id)
        report.counts["order_trade_queries"] += 1
        fills: list[FillReport] = [rec.trade_report(r) for r in rows]
        res = await rec.apply_fills(fills, source="gap_fill")
        report.counts["fills_added"] += res.fills_added
        got = sum((f.qty for f in fills), ZERO)
        if max(got, have) < target:
            report.discrepancies.append({"kind": "fills_short", "client_order_id": cid, "symbol": o.symbol,
                                         "executed_qty": target, "stored_fill_qty": max(got, have)})
        if res.fills_added and not o.external:  # the strategy never hears of external orders
            report.updates.append(OrderUpdate(cid, o.symbol, o.exchange_order_id, o.status, o.executed_qty,
                                              o.cum_quote_qty, tuple(fills), "gap_fill"))
            rec.emit_updates(report.updates[-1:])


async def _balances(rec: Reconciler, report: GapFillReport) -> SnapshotResult:
    """Step 5; the caller holds stream events (and releases them when this returns or fails)."""

    async def catch_up(snapshot_ms: int | None) -> None:
        await rec.drain()  # what arrived before the hold
        report.counts["events_released"] += await rec.apply_held(snapshot_ms)

    async def settle(snapshot_ms: int | None) -> None:
        await rec.settle()  # events in flight: held meanwhile, applied up to the snapshot's time
        report.counts["events_released"] += await rec.apply_held(snapshot_ms)

    snap = await take_snapshot(rec.store, rec.gateway, read=rec.account_snapshot,
                               before_compare=catch_up, settle=settle)
    report.counts["balances_corrected"] += len(snap.corrected)
    report.discrepancies.extend(d.as_dict() for d in snap.discrepancies)
    return snap


async def _release(rec: Reconciler, report: GapFillReport, held_before: int) -> None:
    """Apply what is still held and stop holding; count what this run held."""
    report.counts["events_released"] += await rec.release_held()
    report.counts["events_held"] = rec.holding.held_total - held_before


# ---------------------------------------------------------------------- runs


async def _record(rec: Reconciler, report: GapFillReport) -> None:
    if report.recon_id is None:
        return
    await rec.store.finish_reconciliation(
        report.recon_id, found=report.found, fixed=report.fixed, counts=dict(report.counts),
        discrepancies=report.discrepancies, error=report.error)


async def run_gap_fill(rec: Reconciler, reason: str) -> GapFillReport:
    """One full gap fill (see the module docstring). Callers go through
    ``Reconciler.gap_fill``, which keeps runs from overlapping."""
    if rec.gateway is None:
        raise RuntimeError("gap fill needs a REST gateway")
    report = GapFillReport(reason)
    store = rec.store
    report.recon_id = await store.start_reconciliation(reason[:64])
    held_before = rec.holding.held_total
    rec.holding.hold()
    try:
        try:
            await rec.drain()  # what arrived before the hold is applied first
            not_final = await store.orders_not_final()
            for o in not_final:
                if not o.external:
                    rec.remember_ours(o.client_order_id)
            symbols = list(dict.fromkeys([*rec.symbols, *(o.symbol for o in not_final
                                                           if not o.symbol.startswith(FUTURES_PREFIX))]))
            seen_open = await _open_orders(rec, symbols, report)
            await _query_not_final(rec, not_final, seen_open, report)
            since = await store.last_complete_reconciliation_ms(having_count=SCANNED)
            for symbol in symbols:
                await _catch_up_trades(rec, symbol, report, since)
            report.counts[SCANNED] = len(symbols)  # this run read every symbol's trades
            # External orders too: their fills move our balances just the same.
            wanted: dict[str, Decimal] = {o.client_order_id: ZERO for o in not_final}
            for cid, qty in rec.take_suspects().values():
                wanted[cid] = max(qty, wanted.get(cid, ZERO))
            for u in report.updates:
                wanted.setdefault(u.client_order_id, u.executed_qty)
            await _complete_fills(rec, wanted, report)
            # Balances last, with the held events up to the snapshot's time applied: what is
            # still different then is a real discrepancy, not an event we were sitting on.
            await _balances(rec, report)
        finally:
            await _release(rec, report, held_before)  # the events newer than the snapshot
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
        log.error("gap fill (%s) failed: %s", reason, report.error)
        raise
    finally:
        await _record(rec, report)
    log.info("gap fill (%s): %s; %d discrepancies", reason,
             ", ".join(f"{k}={v}" for k, v in sorted(report.counts.items()) if v) or "nothing to do",
             len(report.discrepancies))
    return report


async def fill_missing_for_orders(rec: Reconciler, suspects: Mapping[OrderKey, tuple[str, Decimal]],
                                  *, reason: str) -> GapFillReport | None:
    """Targeted gap fill: fetch the trades of suspect orders that are still short.

    Recorded in reconciliation_runs only when the exchange had to be asked."""
    if rec.gateway is None:
        return None
    report = GapFillReport(reason)
    wanted: dict[str, Decimal] = {}
    for cid, qty in suspects.values():
        wanted[cid] = max(qty, wanted.get(cid, ZERO))
    try:
        await _complete_fills(rec, wanted, report)
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if report.counts["order_trade_queries"] or report.error:
            report.recon_id = await rec.store.start_reconciliation(reason[:64])
            await _record(rec, report)
    return report


async def run_balance_snapshot(rec: Reconciler) -> SnapshotResult:
    """The periodic balance check, recorded as a reconciliation run 'balance_snapshot'."""
    if rec.gateway is None:
        raise RuntimeError("a balance snapshot needs a REST gateway")
    report = GapFillReport("balance_snapshot")
    report.recon_id = await rec.store.start_reconciliation(report.reason)
    held_before = rec.holding.held_total
    rec.holding.hold()  # see step 5 in the module docstring
    try:
        try:
            snap = await _balances(rec, report)
        finally:
            await _release(rec, report, held_before)
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
        await _record(rec, report)
        raise
    report.counts["assets_skipped"] = len(snap.skipped)
    await _record(rec, report)
    return snap
