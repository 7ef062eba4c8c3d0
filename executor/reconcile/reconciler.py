"""The report applier: venue-neutral reports about our account into the ledger, exactly once.

``Reconciler`` reads only ``core.reports`` (the exchange adapters translate every venue
payload into those; a payload handed over raw goes through the adapter's ``Translator``
given as ``translate``) and turns each into idempotent ledger writes
(``executor.persistence.store`` batch items), committed in groups:

* ``OrderStatusReport`` -> an order_events row (unique (symbol, orderId, execution id), or
  the report's ``dedupe_key`` when the venue gives no execution id), the order's status and
  cumulative quantities (monotonic: a late NEW after FILLED changes nothing), and the
  ``FillReport``s it carries (a stream trade: source ``stream``; a placement's immediate
  fills: ``order_response``). The order is the report's ``client_order_id`` (its own id;
  a cancel answer's request id is only ``event_client_id``);
* an order whose client id is not ours (not our prefix, not an order we recorded) is
  recorded as external: its events and fills are kept (they move our balances) but it is
  never reported to the strategy (and so never cancelled by us);
* ``BalanceReport`` -> balances (free/locked) + balance_events; ``BalanceDeltaReport`` ->
  balance_events; ``AccountReport`` -> futures_account_updates. USD-M rows live under the
  ledger symbol ``UM:<SYMBOL>`` (``core.reports.ledger_symbol``) because the ledger has no
  market column and spot and USD-M share symbol names and overlapping order/trade ids: a
  fill is keyed by (venue, symbol, trade id);
* REST order answers (placement, query, open orders, cancel) are ``OrderStatusReport``s
  too and go through the same path. Whichever path brings a fill first stores it; the
  others are no-ops.

Missing fills: after each commit the cumulative quantity an event reports (``z``) is
compared with the fills stored for that order; a shortfall marks the order a *suspect*,
and shortly after (reordered events get a moment to arrive) a targeted gap fill checks the
ledger again and, if still short, fetches that order's trades (myTrades with orderId).

Streams hand events to ``submit`` (non-blocking); a writer task applies what has queued in
one transaction per batch (group commit), parsing the next batch while SQLite writes the
previous one. Within a batch every order's observations are folded through the core state
machine (``core.orders.apply``) into one status update, while every event keeps its own
order_events row. While a gap fill runs, submitted events are held
(``holding.HoldingBuffer``) and applied afterwards in arrival order; around a REST
balance snapshot those that happened before the snapshot's time are applied before its
comparison and the newer ones only after its rows are written (``apply_held``). ``gap_fill`` itself is
in ``gapfill.py``; this class serialises runs (one at a time; requests during a run
coalesce into one follow-up run).

Order updates go to ``on_order_update`` after each commit, only for our orders; the free
balances an account update reported go to ``on_balances``. After every gap fill and balance
snapshot ``on_resync`` runs under the apply lock (no commit interleaves), so a consumer can
reload what it derives from the ledger (the tracker's position) consistently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from executor.core.bounded import BoundedDict, BoundedSet
from executor.core.ids import IdKind, parse_client_id, validate_prefix
from executor.core.money import ZERO
from executor.core.orders import (
    FINAL_STATUSES,
    Observation,
    OrderState,
    OrderStatus,
    Side,
    apply,
    observe,
    stored_status,
)
from executor.core.reports import (
    FUTURES_PREFIX,
    REPORT_TYPES,
    AccountReport,
    AccountSnapshot,
    BalanceDeltaReport,
    BalanceReport,
    FillReport,
    FillSource,
    MalformedEvent,
    OrderStatusReport,
    Report,
    Translator,
    Venue,
    balance_identity,
    ledger_symbol,
)
from executor.persistence.store import (
    BalanceEventIn,
    BalanceRow,
    BalancesIn,
    BatchItem,
    BatchResult,
    ExternalOrderIn,
    FillIn,
    FuturesUpdateIn,
    OrderEventIn,
    OrderRecord,
    StatusUpdateIn,
    Store,
)
from executor.reconcile.holding import HoldingBuffer

if TYPE_CHECKING:
    from executor.reconcile.balances import SnapshotResult
    from executor.reconcile.gapfill import GapFillReport

__all__ = [
    "FUTURES_PREFIX",
    "ApplyResult",
    "OrderUpdate",
    "Reconciler",
    "balance_identity",
    "core_state",
    "futures_symbol",
    "ledger_status",
    "raise_gc_threshold",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

DEFAULT_BATCH_MAX = 2000
# The garbage collector's youngest-generation threshold while the writer runs (see
# ``raise_gc_threshold``); Python's default is 700.
GC_YOUNG_THRESHOLD = 10_000
COMPLETE_MEMORY = 100_000  # finished orders remembered, so replays of them cost no ledger read
# Caches of the ledger, bounded so a week of orders does not grow memory. A forgotten owner
# is asked of the ledger again (resolve_owners); forgotten known fills make at worst a
# suspect whose targeted gap fill finds them in the ledger; a forgotten known order is
# looked up in the ledger by the next gap fill.
OWNERS_MEMORY = 20_000
KNOWN_FILLS_MEMORY = 20_000
KNOWN_ORDERS_MEMORY = 20_000
# A report, or a payload the adapter's translator turns into one (or into nothing).
Incoming = Report | Mapping[str, Any] | bytes | str | object
OrderKey = tuple[str, int]  # (ledger symbol, exchange order id)


def futures_symbol(symbol: str) -> str:
    """The ledger symbol of a USD-M futures symbol (keeps its orders and fills apart from spot's)."""
    return ledger_symbol(symbol, Venue.USDM)


def raise_gc_threshold(young: int = GC_YOUNG_THRESHOLD) -> bool:
    """Raise (never lower) the collector's youngest-generation threshold to ``young``.

    A busy stream allocates ~15 short-lived container objects per executionReport
    (events, plan items, ledger rows) that all live until their batch is committed. With
    Python's default of 700 the collector runs every few dozen events and, through the
    older generations, keeps walking the thousands of in-flight objects of the batches
    being planned and written: timed with gc callbacks at ~12 of ~65 us of CPU per raw
    executionReport (bench/reconcile_throughput.py). Those objects are freed by reference
    counting anyway (they hold no cycles), so collecting less often frees the same memory
    later by at most ``young`` objects. Returns whether the threshold was changed."""
    first, *older = gc.get_threshold()
    if first == 0 or first >= young:  # collection off, or already at least this high
        return False
    gc.set_threshold(young, *older)
    log.info("reconciler: garbage collector threshold %d -> %d for the event stream", first, young)
    return True


def ledger_status(status: OrderStatus) -> str:
    """Core status -> the ledger's status text (the same name: the core defines both)."""
    return status.value


def core_state(rec: OrderRecord) -> OrderState:
    """The core state machine's view of a stored order."""
    return OrderState(stored_status(rec.status), rec.executed_qty, rec.cum_quote_qty, rec.exchange_order_id)


def _event_status(status: OrderStatus, executed: bool) -> str:
    # One observation through the pure machine (it only depends on these two): NEW with
    # executed > 0 reads PARTIALLY_FILLED, whichever fact arrived first.
    obs = Observation(status, Decimal(1) if executed else ZERO)
    return ledger_status(apply(OrderState(), obs).status)


def _exchange_statuses() -> list[OrderStatus]:
    out = []
    for status in OrderStatus:
        try:
            Observation(status)
        except ValueError:
            continue  # a local status: never observed from the exchange
        out.append(status)
    return out


# ``_event_status`` for every (exchange status, executed > 0), computed once.
_EVENT_STATUS = {(st, ex): _event_status(st, ex) for st in _exchange_statuses() for ex in (False, True)}
_SIDE_TEXT = {Side.BUY: "BUY", Side.SELL: "SELL"}
# Where an order report came from -> the source its fills are stored with.
_GAP_FILL = FillSource.GAP_FILL.value
_FILL_SOURCE = {"stream": FillSource.STREAM.value, "order_response": FillSource.ORDER_RESPONSE.value}


@dataclass(frozen=True)
class OrderUpdate:
    """What the strategy loop hears about one of our orders after a commit."""

    client_order_id: str
    symbol: str
    exchange_order_id: int | None
    status: str
    executed_qty: Decimal
    cum_quote_qty: Decimal
    fills: tuple[FillReport, ...]  # fills of this order first stored by this commit
    source: str


@dataclass
class ApplyResult:
    """What one ``apply``/``apply_many`` (or one writer batch) did."""

    events: int = 0
    malformed: int = 0
    ignored: int = 0  # control events (listenKeyExpired, eventStreamTerminated, unknown types)
    order_events_added: int = 0
    duplicates: int = 0  # order events already stored
    fills_added: int = 0
    fills_duplicate: int = 0
    status_changes: int = 0  # orders whose stored state moved forward
    external_orders_added: int = 0
    balance_events_added: int = 0
    suspects: int = 0  # orders whose stored fills fall short of the exchange's cumulative qty
    conflicts: list[str] = field(default_factory=list)
    updates: list[OrderUpdate] = field(default_factory=list)

    def add(self, other: ApplyResult) -> None:
        for f in dataclasses.fields(self):
            mine = getattr(self, f.name)
            if isinstance(mine, list):
                mine.extend(getattr(other, f.name))
            else:
                setattr(self, f.name, mine + getattr(other, f.name))


_OrderInfo = tuple[str, str, str, str | None, Decimal | None, Decimal | None]


@dataclass
class _Fold:
    """Every observation of one order in one batch, folded through the core state machine
    (so the ledger gets one status update per order per batch, not one per event)."""

    symbol: str
    order_id: int
    client_id: str  # as reported (for an external order, not necessarily its ledger id)
    ours: bool
    source: str
    state: OrderState = field(default_factory=OrderState)
    event_ms: int | None = None
    reject: str | None = None
    external: ExternalOrderIn | None = None
    info: _OrderInfo | None = None  # for adoption (see Reconciler._adopt)


@dataclass
class _Plan:
    """Batch items for some facts, and what is needed to interpret the batch's result."""

    items: list[BatchItem] = field(default_factory=list)
    folds: dict[OrderKey, _Fold] = field(default_factory=dict)
    # (ledger symbol, trade id) -> (the fill, our client id, its order)
    fills: dict[tuple[str, int], tuple[FillReport, str | None, OrderKey]] = field(default_factory=dict)
    free: dict[str, Decimal] = field(default_factory=dict)  # free balances reported, latest last
    result: ApplyResult = field(default_factory=ApplyResult)

    def status_items(self) -> list[BatchItem]:
        out: list[BatchItem] = [f.external for f in self.folds.values() if f.external is not None]
        for f in self.folds.values():
            st = f.state
            out.append(StatusUpdateIn(
                f.client_id if f.ours else None, ledger_status(st.status), f.source, symbol=f.symbol,
                exchange_order_id=f.order_id, executed_qty=st.executed_qty, cum_quote_qty=st.cum_quote,
                event_ms=f.event_ms, reject_reason=f.reject))
        return out


class Reconciler:
    """Applies user events and REST order facts to the ledger; runs gap fills and snapshots.

    ``gateway`` (a ``RestGateway``) is needed for gap fills and snapshots only.
    ``translate`` (the venue adapter's ``core.reports.Translator``) turns what reaches this
    class raw -- stream payloads, REST order answers, trade rows, the account -- into
    reports; without it only reports are accepted (a raw payload counts as malformed).
    ``symbols`` are the spot symbols a gap fill checks even with nothing stored for them.
    ``prefix`` is our client-id prefix (the ledger's, ``persistence.identity``).
    ``on_order_update`` is called synchronously after each commit, for our orders only; it
    must not block (an async consumer puts the update on its own queue).
    ``not_found_grace_ms``: a reconciliation (start-up included) does not conclude anything
    from a -2013 for an order whose outcome became unknown less than this long ago (it may
    still be in flight; see ``gapfill``). At least the request timeout.
    ``gc_young_threshold``: ``start`` raises the garbage collector's youngest threshold to
    this (``raise_gc_threshold``; a process-wide setting); None (the default) leaves the
    collector alone: an interleaved A/B gave no measurable gain (bench/RESULTS.md, soak).
    """

    def __init__(self, store: Store, gateway: Any = None, *, prefix: str, symbols: Iterable[str] = (),
                 translate: Translator | None = None,
                 on_order_update: Callable[[OrderUpdate], None] | None = None,
                 batch_max: int = DEFAULT_BATCH_MAX, not_found_grace_ms: int = 5000,
                 suspect_delay_s: float = 0.25, gc_young_threshold: int | None = None) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        self.gc_young_threshold = gc_young_threshold
        self.store = store
        self.gateway = gateway
        self.translate = translate
        self.prefix = validate_prefix(prefix)
        self.symbols = tuple(dict.fromkeys(symbols))
        self.on_order_update = on_order_update
        self.on_balances: Callable[[Mapping[str, Decimal]], None] | None = None
        self.on_resync: Callable[[], Awaitable[None]] | None = None
        self.batch_max = batch_max
        self.not_found_grace_ms = not_found_grace_ms
        self.suspect_delay_s = suspect_delay_s
        self.holding: HoldingBuffer[Incoming] = HoldingBuffer()
        self.totals = ApplyResult()  # everything applied since start, for status output
        self.write_errors = 0
        self._ours: BoundedSet[str] = BoundedSet(OWNERS_MEMORY)
        self._external: BoundedSet[str] = BoundedSet(OWNERS_MEMORY)
        self._queue: deque[Incoming] = deque()
        self._apply_lock = asyncio.Lock()  # one commit at a time
        self._drain_lock = asyncio.Lock()  # one drainer at a time keeps arrival order
        self._wake = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        # Fills known to be stored, per unfinished order: the in-memory first check of an
        # event's cumulative quantity, before the ledger is asked (see suspects).
        self._known_fills: BoundedDict[OrderKey, dict[int, Decimal]] = BoundedDict(KNOWN_FILLS_MEMORY)
        self._suspects: dict[OrderKey, tuple[str, Decimal]] = {}
        # Orders final with every fill stored (insertion-ordered, the oldest forgotten first).
        self._complete: dict[OrderKey, None] = {}
        self._suspect_task: asyncio.Task[None] | None = None
        self._gap_lock = asyncio.Lock()
        self._gap_running = False  # the lock is held by a gap fill (not a snapshot or check)
        self._followup: tuple[asyncio.Future[GapFillReport], list[str]] | None = None
        self.last_gap_fill: GapFillReport | None = None
        self._background: set[asyncio.Task[None]] = set()
        # (symbol, orderId) the ledger is known to hold a row for (gap fill explains the rest).
        self.known_orders: BoundedSet[OrderKey] = BoundedSet(KNOWN_ORDERS_MEMORY)

    # ------------------------------------------------------------------ ownership

    def is_ours_by_id(self, client_id: str) -> bool | None:
        """True/False when known without the ledger; None when the ledger must be asked."""
        if client_id in self._ours:
            return True
        if client_id in self._external:
            return False
        parsed = parse_client_id(client_id, self.prefix)
        if parsed is not None and parsed.kind is IdKind.ORDER:
            return True  # not cached: the prefix says it every time, memory stays flat
        return None

    def remember_ours(self, client_id: str) -> None:
        """The order manager recorded this id: ours even if it lacks our prefix."""
        self._external.discard(client_id)
        self._ours.add(client_id)

    async def resolve_owners(self, client_ids: Iterable[str]) -> None:
        """Decide, once per id, whether ids without our prefix are orders we recorded."""
        for cid in dict.fromkeys(client_ids):
            if self.is_ours_by_id(cid) is not None:
                continue
            rec = await self.store.get_order_by_client_id(cid) if cid else None
            (self._ours if rec is not None and not rec.external else self._external).add(cid)

    def is_ours(self, client_id: str) -> bool:
        """After ``resolve_owners``: whether ``client_id`` is one of our orders."""
        return bool(self.is_ours_by_id(client_id))

    # ------------------------------------------------------------------ translating facts

    def report(self, item: Incoming) -> Report | None:
        """``item`` as a report: itself if it is one, else through the adapter's translator
        (None: a control event with nothing to record). ``MalformedEvent`` otherwise."""
        if type(item) in REPORT_TYPES:  # the common case first (no ABC isinstance check)
            return item  # type: ignore[return-value]
        if self.translate is None:
            raise MalformedEvent(f"a raw {type(item).__name__} payload and no translator to read it")
        return self.translate.user_event(item)

    def order_report(self, row: Any) -> OrderStatusReport:
        """A REST order answer as a report (through the adapter's translator)."""
        if isinstance(row, OrderStatusReport):
            return row
        if self.translate is None:
            raise MalformedEvent(f"a raw {type(row).__name__} order answer and no translator to read it")
        return self.translate.order(row)

    def _translator(self, what: str) -> Translator:
        if self.translate is None:
            raise RuntimeError(f"{what} needs the venue adapter's translator (Reconciler(translate=...))")
        return self.translate

    def trade_report(self, row: Any) -> FillReport:
        """A trade-history row as a fill report (through the adapter's translator)."""
        return row if isinstance(row, FillReport) else self._translator("a trade row").trade(row)

    def account_snapshot(self, row: Any) -> AccountSnapshot:
        """A REST account as a snapshot report (through the adapter's translator)."""
        return row if isinstance(row, AccountSnapshot) else self._translator("an account").account(row)

    def absent_payload(self, client_order_id: str) -> Mapping[str, Any]:
        """The venue's "no such order" answer as the ledger records it."""
        return self._translator("a not-found order").absent(client_order_id)

    def _plan_order(self, plan: _Plan, rep: OrderStatusReport, source: str) -> None:
        """One observation of one order: its event row, its status folded into the batch's
        state for the order, and the fills it carries. Positional item construction: this
        runs once per stream order event."""
        cid = rep.client_order_id
        order_id = rep.order_id
        symbol = rep.symbol if rep.venue is Venue.SPOT else ledger_symbol(rep.symbol, rep.venue)
        key = (symbol, order_id)
        fold = plan.folds.get(key)
        if fold is None:
            fold = plan.folds[key] = _Fold(symbol, order_id, cid, self.is_ours(cid), source)
        ours = fold.ours
        cum, quote, rep_status, event_ms = rep.executed_qty, rep.cum_quote, rep.status, rep.event_ms
        fold.state = observe(fold.state, rep_status, cum, quote, order_id)
        if event_ms is not None and (fold.event_ms is None or event_ms > fold.event_ms):
            fold.event_ms = event_ms
        if rep.reject_reason:
            fold.reject = rep.reject_reason
        status = _EVENT_STATUS[rep_status, cum > 0]
        side = rep.side
        if side is not None and rep.order_type is not None:
            side_text = _SIDE_TEXT[side]
            if not ours:
                if fold.external is None:
                    fold.external = ExternalOrderIn(
                        symbol, order_id, cid, side_text, rep.order_type, status, source, rep.time_in_force,
                        rep.price, rep.quantity, None, cum, quote, rep.created_ms, event_ms)
            elif fold.info is None:
                fold.info = (symbol, side_text, rep.order_type, rep.time_in_force, rep.price, rep.quantity)
        # External orders are found by (symbol, orderId): their client id may clash with ours.
        plan.items.append(OrderEventIn(
            symbol, status, source, rep.payload, order_id, cid if ours else None, rep.event_client_id,
            rep.execution_id, rep.execution_type, cum, quote, rep.trade_id, event_ms, None, rep.dedupe_key))
        if rep.fills:
            fill_source = _FILL_SOURCE.get(source, _GAP_FILL)
            for fill in rep.fills:
                self._fill_fact(plan, fill, symbol, fill_source, cid if ours else None)

    def _fill_fact(self, plan: _Plan, fill: FillReport, symbol: str, source: str,
                   client_id: str | None) -> None:
        """Queue one fill under its ledger symbol (the first report of a trade wins)."""
        fill_key = (symbol, fill.trade_id)
        if fill_key in plan.fills:
            return
        plan.items.append(FillIn(
            symbol, fill.trade_id, fill.price, fill.qty, source, fill.quote_qty, fill.commission,
            fill.commission_asset, fill.is_maker, fill.time_ms, _SIDE_TEXT[fill.side], client_id,
            fill.order_id))
        plan.fills[fill_key] = (fill, client_id, (symbol, fill.order_id))

    def _plan_event(self, plan: _Plan, rep: Report | None) -> None:
        kind = type(rep)
        if kind is OrderStatusReport:
            self._plan_order(plan, rep, "stream")  # type: ignore[arg-type]
        elif kind is BalanceReport:
            assert isinstance(rep, BalanceReport)
            rows = tuple(BalanceRow(b.asset, b.free, b.locked) for b in rep.balances)
            for b in rep.balances:
                plan.free[b.asset] = b.free
            plan.items.append(BalancesIn(rows, "stream", rep.ref, event_ms=rep.event_ms, kind=rep.kind,
                                         payload=rep.payload))
        elif kind is BalanceDeltaReport:
            assert isinstance(rep, BalanceDeltaReport)
            plan.items.append(BalanceEventIn(rep.kind, rep.asset, "stream", delta=rep.delta,
                                             event_ms=rep.event_ms, event_ref=rep.ref, payload=rep.payload))
        elif kind is AccountReport:
            assert isinstance(rep, AccountReport)
            plan.items.append(FuturesUpdateIn(
                rep.payload, event_ms=rep.event_ms, transaction_ms=rep.transaction_ms, reason=rep.reason,
                balances=[dataclasses.asdict(b) for b in rep.balances],
                positions=[dataclasses.asdict(p) for p in rep.positions]))
        else:
            plan.result.ignored += 1
            log.debug("reconciler: ignoring %s", type(rep).__name__)
            return
        plan.result.events += 1

    # ------------------------------------------------------------------ committing

    async def _commit(self, plan: _Plan) -> ApplyResult:
        res = plan.result
        statuses = plan.status_items()
        if not plan.items and not statuses:
            return res
        batch = await self.store.apply_batch([*plan.items, *statuses])
        await self._interpret(plan, batch)
        self.totals.add(dataclasses.replace(res, conflicts=[], updates=[]))
        self._schedule_suspects()
        return res

    async def _interpret(self, plan: _Plan, batch: BatchResult) -> None:
        res = plan.result
        res.order_events_added += batch.events_added
        res.duplicates += batch.events_duplicate
        res.fills_added += len(batch.fills_added)
        res.fills_duplicate += batch.fills_duplicate
        res.external_orders_added += len(batch.external_orders_added)
        res.balance_events_added += batch.balance_events_added
        for cid in batch.external_orders_added:
            self._external.add(cid)

        # Fills now stored (new or duplicate alike), per order, for the shortfall check.
        telling = self.on_order_update is not None
        new_fills: dict[str, list[FillReport]] = {}
        added = set(batch.fills_added) if telling else set()
        known = self._known_fills
        for key, (fill, cid, order_key) in plan.fills.items():
            fills_of = known.get(order_key)
            if fills_of is None:
                fills_of = known[order_key] = {}
            fills_of[key[1]] = fill.qty
            if cid is not None and key in added:
                new_fills.setdefault(cid, []).append(fill)

        folds = list(plan.folds.values())
        changes = batch.status_changes
        missing: list[_Fold] = []
        for fold, change in zip(folds, changes, strict=True):
            if change.conflict:
                res.conflicts.append(change.conflict)
                log.warning("reconciler: %s (order %s %s)", change.conflict, fold.symbol, fold.order_id)
            if not fold.ours:
                continue
            if not change.found:
                missing.append(fold)
                continue
            if change.applied:
                res.status_changes += 1
            key = (fold.symbol, fold.order_id)
            cum = fold.state.executed_qty
            fills_of = known.get(key)
            have = sum(fills_of.values(), ZERO) if fills_of else ZERO
            if key in self._complete:
                pass  # final and fully filled in the ledger: a replay adds nothing
            elif cum > have:
                prev = self._suspects.get(key)
                self._suspects[key] = (fold.client_id, max(cum, prev[1]) if prev else cum)
                res.suspects += 1
            else:
                self._suspects.pop(key, None)
                if change.status in _FINAL_LEDGER and have == cum:
                    known.pop(key, None)  # done: nothing more can arrive
                    self._complete[key] = None
                    if len(self._complete) > COMPLETE_MEMORY:
                        del self._complete[next(iter(self._complete))]
            if telling and (change.applied or fold.client_id in new_fills):
                res.updates.append(OrderUpdate(
                    fold.client_id, fold.symbol, fold.order_id, change.status or "",
                    change.executed_qty or ZERO, change.cum_quote_qty or ZERO,
                    tuple(new_fills.get(fold.client_id, ())), fold.source))

        if missing:
            await self._adopt(missing)
        self.emit_updates(res.updates)
        if plan.free and self.on_balances is not None:
            try:
                self.on_balances(plan.free)
            except Exception:
                log.exception("reconciler: balance callback failed for %s", ", ".join(plan.free))

    async def _adopt(self, folds: Sequence[_Fold]) -> None:
        """An id with our prefix that the ledger does not hold (another run's database,
        or a row lost): record it as ours now so its history has a home, then re-apply."""
        again: list[BatchItem] = []
        for fold in folds:
            if fold.info is None:
                continue
            symbol, side, otype, tif, price, qty = fold.info
            log.warning("reconciler: order %s has our prefix but no ledger row; adopting it", fold.client_id)
            try:
                await self.store.record_order_intent(
                    fold.client_id, symbol, side, otype, quantity=qty, price=price, time_in_force=tif or None,
                    reason="adopted: seen on the exchange without a recorded intent")
            except Exception:
                # Most likely recorded meanwhile by another path; the status update below
                # finds the row either way (and reports a missing one as not found).
                log.exception("reconciler: could not record adopted order %s", fold.client_id)
            st = fold.state
            again.append(StatusUpdateIn(
                fold.client_id, ledger_status(st.status), fold.source, symbol=fold.symbol,
                exchange_order_id=fold.order_id, executed_qty=st.executed_qty, cum_quote_qty=st.cum_quote,
                event_ms=fold.event_ms, reject_reason=fold.reject))
        if again:
            await self.store.apply_batch(again)

    def emit_updates(self, updates: Sequence[OrderUpdate]) -> None:
        """Hand order updates to ``on_order_update`` (each failure logged, none raised)."""
        if self.on_order_update is None:
            return
        for u in updates:
            try:
                self.on_order_update(u)
            except Exception:
                log.exception("reconciler: order update callback failed for %s", u.client_order_id)

    # ------------------------------------------------------------------ public apply paths

    async def apply(self, event: Incoming) -> ApplyResult:
        """Apply one event now, in its own transaction (ignores holding; streams use ``submit``)."""
        return await self.apply_many([event])

    async def apply_many(self, events: Sequence[Incoming]) -> ApplyResult:
        """Apply events now, in arrival order, in one transaction (group commit)."""
        async with self._apply_lock:
            return await self._apply_unlocked(events)

    async def _apply_unlocked(self, events: Sequence[Incoming]) -> ApplyResult:
        return await self._commit(await self._prepare(events))

    async def _prepare(self, events: Sequence[Incoming]) -> _Plan:
        """Parse and plan (CPU work; reads the ledger only to tell whose an unknown id is)."""
        plan = _Plan()
        parsed: list[Report | None] = []
        for item in events:
            try:
                parsed.append(self.report(item))
            except MalformedEvent as exc:
                plan.result.malformed += 1
                log.warning("reconciler: dropped a malformed user event: %s", exc)
        await self.resolve_owners([r.client_order_id for r in parsed if type(r) is OrderStatusReport])
        for ev in parsed:
            self._plan_event(plan, ev)
        return plan

    async def apply_order_response(self, response: Mapping[str, Any] | OrderStatusReport, *,
                                   source: str = "order_response") -> ApplyResult:
        """Apply a REST order answer (placement, GET order, cancel) like a stream event.

        ``source``: ``order_response`` for our own placement/cancel answers (FULL fills are
        stored with that source), ``rest_query`` or ``gap_fill`` for queries."""
        return await self.apply_order_snapshots([response], source=source)

    async def apply_order_snapshots(self, responses: Sequence[Mapping[str, Any] | OrderStatusReport], *,
                                    source: str) -> ApplyResult:
        """REST order answers (reports, or raw through the translator) in one commit; a
        placement's immediate fills get source ``order_response`` (else ``gap_fill``)."""
        reports = [self.order_report(r) for r in responses]
        async with self._apply_lock:
            await self.resolve_owners(r.client_order_id for r in reports)
            plan = _Plan()
            for rep in reports:
                self._plan_order(plan, rep, source)
                plan.result.events += 1
            return await self._commit(plan)

    async def apply_fills(self, fills: Sequence[FillReport], *, source: str = "gap_fill") -> ApplyResult:
        """Store fills known only by order id (trade-history rows); they link to orders by
        (ledger symbol, orderId)."""
        async with self._apply_lock:
            plan = _Plan()
            for f in fills:
                self._fill_fact(plan, f, ledger_symbol(f.symbol, f.venue), source, None)
            plan.result.events += len(fills)
            return await self._commit(plan)

    async def apply_items(self, items: Sequence[BatchItem]) -> BatchResult:
        """Raw ledger writes that belong to a reconciliation (NOT_PLACED resolutions and
        their event rows), serialised with every other apply."""
        async with self._apply_lock:
            return await self.store.apply_batch(items)

    # ------------------------------------------------------------------ streams: queue + writer

    def submit(self, event: Incoming) -> None:
        """Hand over one stream event (parsed or raw); never blocks. Held during a gap fill."""
        if self.holding.offer(event):
            return
        self._queue.append(event)
        self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        """Start the writer task that applies submitted events in batches (and, unless
        ``gc_young_threshold`` is None, raise the collector's threshold: ``raise_gc_threshold``)."""
        if self.gc_young_threshold is not None:
            raise_gc_threshold(self.gc_young_threshold)
        if self._writer_task is None or self._writer_task.done():
            self._writer_task = asyncio.create_task(self._writer(), name="reconciler-writer")

    async def stop(self) -> None:
        """Apply what is queued, then stop the writer, the suspect check and any gap fill
        still running in the background (the next start reconciles whatever it missed)."""
        await self.drain()
        for task in (self._writer_task, self._suspect_task, *self._background):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task})  # a cancellation of stop() itself still propagates
                if not task.cancelled() and task.exception() is not None:
                    log.error("reconciler: %s ended with an error", task.get_name(),
                              exc_info=task.exception())
        self._writer_task = self._suspect_task = None
        self._background.clear()

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.drain()

    async def drain(self) -> None:
        """Apply everything queued so far (not what is held), batch by batch, and return
        once all of it is committed.

        Pipelined: the next batch is parsed and planned while the previous one is being
        written (SQLite works in its own thread), and commits stay in arrival order."""
        async with self._drain_lock:
            pending: asyncio.Task[None] | None = None
            try:
                while self._queue:
                    batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.batch_max))]
                    try:
                        plan = await self._prepare(batch)
                    except Exception:  # noqa: BLE001 - _lost logs the traceback and requests a gap fill
                        self._lost(len(batch))
                        continue
                    if pending is not None:
                        await pending
                    pending = asyncio.get_running_loop().create_task(self._commit_guarded(plan, len(batch)))
            finally:
                if pending is not None:
                    await pending

    async def _commit_guarded(self, plan: _Plan, n: int) -> None:
        async with self._apply_lock:
            try:
                await self._commit(plan)
            except Exception:  # noqa: BLE001 - _lost logs the traceback and requests a gap fill
                self._lost(n)

    async def _apply_guarded(self, batch: Sequence[Incoming]) -> None:
        try:
            await self._apply_unlocked(batch)
        except Exception:  # noqa: BLE001 - _lost logs the traceback and requests a gap fill
            self._lost(len(batch))

    def _lost(self, n: int) -> None:
        # The events are lost to the ledger, not to the exchange: a gap fill restores them.
        self.write_errors += 1
        log.exception("reconciler: could not apply %d stream events; requesting a gap fill", n)
        self.request_background_gap_fill("apply_error")

    def request_background_gap_fill(self, reason: str) -> None:
        """Start a gap fill that nobody waits for (its failure is logged); ``stop`` cancels it."""
        if self.gateway is None:
            return
        task = asyncio.get_running_loop().create_task(self._gap_fill_quietly(reason),
                                                      name=f"gap-fill {reason}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def background_tasks(self) -> frozenset[asyncio.Task[None]]:
        return frozenset(t for t in self._background if not t.done())

    async def _gap_fill_quietly(self, reason: str) -> None:
        try:
            await self.gap_fill(reason)
        except Exception:
            log.exception("reconciler: gap fill (%s) failed", reason)

    def exchange_ms(self, item: Incoming) -> int | None:
        """The exchange time of a stream event (None: it has none, or it cannot be read;
        applying it reports why)."""
        try:
            rep = self.report(item)
        except Exception:  # noqa: BLE001 - unreadable: the apply path logs and counts it
            return None
        if isinstance(rep, OrderStatusReport | BalanceReport | BalanceDeltaReport | AccountReport):
            return rep.event_ms
        return None

    async def apply_held(self, until_ms: int | None) -> int:
        """Apply the held events that happened at or before ``until_ms`` (exchange time;
        every held event if None), in arrival order, events without an exchange time
        included; newer ones stay held, in arrival order, and holding goes on. Returns how
        many were applied. A REST account snapshot taken at ``until_ms`` uses it: what
        happened before the snapshot explains its differences, what happened after it must
        reach the ledger after the snapshot's rows (``gapfill``)."""

        def due(item: Incoming) -> bool:
            if until_ms is None:
                return True
            at = self.exchange_ms(item)
            return at is None or at <= until_ms

        n = 0
        while True:
            async with self._apply_lock:
                batch = self.holding.take_where(due, self.batch_max)
                if not batch:
                    return n
                n += len(batch)
                await self._apply_guarded(batch)

    async def release_held(self) -> int:
        """Apply every held event in arrival order, then stop holding; returns how many."""
        n = 0
        while len(self.holding):
            async with self._apply_lock:
                batch = self.holding.take(self.batch_max)
                n += len(batch)
                await self._apply_guarded(batch)
        self.holding.stop_holding()
        return n

    # ------------------------------------------------------------------ missing fills

    @property
    def suspects(self) -> dict[OrderKey, tuple[str, Decimal]]:
        """Orders whose stored fills fall short of what the exchange reported (not yet checked)."""
        return dict(self._suspects)

    def take_suspects(self) -> dict[OrderKey, tuple[str, Decimal]]:
        out, self._suspects = self._suspects, {}
        return out

    def note_fills_known(self, key: OrderKey, fills: Mapping[int, Decimal]) -> None:
        self._known_fills.setdefault(key, {}).update(fills)

    def _schedule_suspects(self) -> None:
        if not self._suspects or self.gateway is None:
            return
        if self._suspect_task is None or self._suspect_task.done():
            self._suspect_task = asyncio.get_running_loop().create_task(self._check_suspects_later())

    async def _check_suspects_later(self) -> None:
        await asyncio.sleep(self.suspect_delay_s)  # reordered events get a moment to arrive
        try:
            await self.check_suspects()
        except Exception:
            log.exception("reconciler: targeted gap fill failed")

    async def check_suspects(self) -> GapFillReport | None:
        """Targeted gap fill for the suspect orders (myTrades by orderId), if still short."""
        from executor.reconcile.gapfill import fill_missing_for_orders

        async with self._gap_lock:
            if not self._suspects:
                return None
            return await fill_missing_for_orders(self, self.take_suspects(), reason="missing_fill")

    # ------------------------------------------------------------------ gap fill + snapshots

    async def gap_fill(self, reason: str) -> GapFillReport:
        """Rebuild the truth from REST (see ``gapfill.run_gap_fill``), holding stream events.

        Runs never overlap: a request made while one runs waits for a single follow-up run
        that serves every request made meanwhile."""
        from executor.reconcile.gapfill import run_gap_fill

        # Coalesce only behind a running gap fill: the lock is also held by balance snapshots
        # and missing-fill checks, which never start the follow-up run (waiting for it hung
        # the periodic reconciliation for good; bench/soak.py found it).
        if self._gap_lock.locked() and self._gap_running:
            if self._followup is None:
                self._followup = (asyncio.get_running_loop().create_future(), [reason])
            else:
                self._followup[1].append(reason)
            return await asyncio.shield(self._followup[0])
        async with self._gap_lock:
            self._gap_running = True
            try:
                try:
                    report = await run_gap_fill(self, reason)
                except asyncio.CancelledError:
                    self._abort_followup("the gap fill it waited behind was cancelled")
                    raise
                except Exception:
                    # The waiters asked for a run that starts after this one: they get it, and
                    # its own outcome, whatever became of this one (never left waiting).
                    await self._serve_followup()
                    raise
                self.last_gap_fill = report
                await self._serve_followup()
                await self._resync(report.reason)
                return report
            finally:
                self._gap_running = False

    async def _serve_followup(self) -> None:
        """Run the follow-up gap fill(s) requested meanwhile and settle every waiter."""
        from executor.reconcile.gapfill import run_gap_fill

        while self._followup is not None:
            future, reasons = self._followup
            self._followup = None
            try:
                follow = await run_gap_fill(self, "+".join(dict.fromkeys(reasons))[:64])
            except asyncio.CancelledError:
                _settle(future, GapFillAborted("gap fill cancelled (the bot is stopping)"))
                self._abort_followup("the gap fill it waited behind was cancelled")
                raise
            except Exception as exc:  # noqa: BLE001 - handed to every waiter of the follow-up run (run_gap_fill logged it)
                _settle(future, exc)
            else:
                self.last_gap_fill = follow
                future.set_result(follow)

    def _abort_followup(self, why: str) -> None:
        if self._followup is not None:
            _settle(self._followup[0], GapFillAborted(why))
            self._followup = None

    async def _resync(self, why: str) -> None:
        """``on_resync`` under the apply lock, after a gap fill or snapshot (``why``)."""
        if self.on_resync is None:
            return
        async with self._apply_lock:
            try:
                await self.on_resync()
            except Exception:
                # The consumer keeps its incremental figures; the next gap fill tries again.
                log.exception("reconciler: reloading from the ledger after %s failed", why)

    async def exclusive(self, fn: Callable[[], Awaitable[_T]]) -> _T:
        """``fn()`` under the apply lock: no commit interleaves, so what it reads from the
        ledger and what the order updates have told its caller agree (a futures position
        reload; ``on_resync`` is the same for the spot tracker)."""
        async with self._apply_lock:
            return await fn()

    async def snapshot_balances(self) -> SnapshotResult:
        """Compare a REST account snapshot with stored balances; the exchange wins."""
        from executor.reconcile.gapfill import run_balance_snapshot

        async with self._gap_lock:
            snap = await run_balance_snapshot(self)
            await self._resync("balance_snapshot")
            return snap

    async def settle(self, seconds: float = 0.3, in_flight: Callable[[], int] | None = None) -> None:
        """Give the stream up to ``seconds`` for events in flight, then apply what arrived.

        ``in_flight`` counts the events the streams still expect (orders sent, no event
        yet): the wait ends as soon as it is 0. Without it the full ``seconds`` are waited.
        Nothing depends on the wait for correctness (a gap fill follows and stream events
        are idempotent); it only lets the stream, not REST, bring what is already on the way."""
        if in_flight is None:
            await asyncio.sleep(seconds)
        else:
            deadline = asyncio.get_running_loop().time() + seconds
            while in_flight() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
        await self.drain()


class GapFillAborted(RuntimeError):
    """A waiter's gap fill will not run: the bot is stopping."""


def _settle(future: asyncio.Future[GapFillReport], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
        future.exception()  # retrieved: waiters re-raise it, no "never retrieved" noise


_FINAL_LEDGER = FINAL_STATUSES
