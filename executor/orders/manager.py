"""The order manager: from a strategy's intent to an order on the exchange, exactly once.

For each ``Place`` (``submit`` decides synchronously, then one task does the I/O):

1. our client order id (``ClientIdFactory``; in a bot, from a block the ledger reserved
   durably, ``orders.id_supply``: if none is left the decision waits in a task for the next
   block, ``wait_for_ids``), rounding to tick/step and every symbol filter
   (``core.intents.build_order_request``) -- a filter failure is a refusal, nothing is sent;
2. the risk checks on the rounded order (``RiskChecker``); a refusal is logged with its
   reason and recorded in the ledger (``risk_refusals``), nothing is sent;
3. the order enters the tracker (PENDING_SEND: the strategy sees it before its next
   handler call), and its record in the ledger (with its decision context: bid, ask and
   mark at decision time, the strategy's reason) is queued at once, so the intents of one
   decision (both legs of a hedge) are committed together (``Store.record_order_intent``);
4. the gateway prepares the request (admission, signing, the HTTP request) while the
   record commits and HOLDS it until the record is durable (``place_order(hold=...)``):
   nothing is written to the exchange before; a failed record means ``NotSent`` and the
   order is NOT_PLACED. The requests of one decision (the legs of a hedge, announced with
   ``join_send_group`` in the decision's iteration) are then written back to back, in the
   decision's order, once all of them are built (``exchange.client.SendLeg``: a leg waits
   at most 2 ms for the others; a single order never waits). Then its outcome decides:

   * ``Accepted``: the response (FULL: status and fills) is applied through the
     reconciler, so a fill is stored once whichever path (response, stream, gap fill)
     brings it first;
   * ``Rejected``: REJECTED with the code and message recorded;
   * ``Unknown`` (5xx, -1007, timeout, reset): UNKNOWN, then resolved by querying its
     client order id with backoff until the exchange answers: found -> its status (an
     order that shows up late is adopted: its status from the exchange, its fills
     reconciled). A -2013 means nothing until the grace has passed since the outcome
     became unknown (``ResolveTiming.grace_s``: ``not_found_grace_s``, at least the request
     timeout): then NOT_FOUND, which still counts against the open-order and position
     limits (the strategy sees it working, so it sends no replacement), and only a -2013
     again a full grace later confirms NOT_PLACED. It is NEVER sent again;
   * ``RateLimited`` (429/418): the gateway's gate now holds every sender; this order was
     refused before it acted, so it is NOT_PLACED with the limiter's answer recorded.

``Cancel`` carries its own cancel client id (recorded in the ledger first); an ``Unknown``
cancel is resolved by querying the order. ``Replace`` cancels first and places the new order
only once the old one is confirmed CANCELED (if it filled meanwhile, nothing is placed).

Pause (``paused``, set by ``executor.oversight.control``): Place and Replace are refused at intake,
quietly (counted under ``counts["paused"]``); cancels and the orders already working go on.

Kill switch: ``cancel_all_ours`` cancels every working order of ours (tracked ones and any
open order on the exchange whose client id has our prefix) and never touches others; the
risk checks refuse new orders while the switch is engaged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from executor.core.bounded import BoundedDict
from executor.core.filters import SymbolRules
from executor.core.ids import ClientIdFactory, IdsExhausted, is_ours
from executor.core.intents import (
    Cancel,
    Intent,
    OrderRejected,
    OrderRequest,
    Place,
    Replace,
    build_order_request,
)
from executor.core.orders import OrderStatus, Side
from executor.exchange.client import SendLeg, join_send_group, send_leg
from executor.exchange.outcome import Accepted, RateLimited, Rejected, Unknown
from executor.exchange.rest import GatewayError, NotSent
from executor.market.state import MarketState
from executor.orders.tracker import OrderTracker, TrackedOrder
from executor.oversight import metrics
from executor.risk.checks import ALLOWED, Decision, Refused, RiskChecker, RiskView

if TYPE_CHECKING:
    from executor.strategy.base import OrderView

__all__ = ["CancelAllIncomplete", "OrderManager", "ResolveTiming"]

log = logging.getLogger(__name__)


class CancelAllIncomplete(Exception):
    """``cancel_all_ours`` could not make sure every order of ours was cancelled."""

NOT_PLACED = OrderStatus.NOT_PLACED.value
NOT_FOUND = OrderStatus.NOT_FOUND.value
UNKNOWN_ORDER = -2011  # cancel of an order the exchange does not have (filled, cancelled, never placed)
# Send times kept for the -2013 grace: a forgotten one is older than the grace anyway (age
# bound), and no 10,000 sends fit in one grace period (size bound, a safety net).
SENT_AT_MEMORY = 10_000
SENT_AT_MIN_AGE_S = 60.0


class Gateway(Protocol):
    # ``hold``: write nothing before it has completed; if it fails, raise NotSent unsent.
    async def place_order(self, params: Mapping[str, Any], *,
                          hold: Awaitable[object] | None = None) -> Any: ...
    async def cancel_order(self, symbol: str, orig_client_id: str, cancel_client_id: str) -> Any: ...
    async def get_order(self, symbol: str, orig_client_order_id: str) -> dict[str, Any] | None: ...
    async def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class ResolveTiming:
    """How an unknown outcome is chased: first query after ``first_s``, doubling to ``max_s``.

    A -2013 only counts once ``grace_s`` has passed since the outcome became unknown (the
    order may still be in flight inside the exchange before that), and the absence is
    confirmed only by a second -2013 a further ``grace_s`` later. ``grace_s`` is
    ``not_found_grace_s`` but never less than ``request_timeout_s`` (``[orders]
    request_timeout_s``): a request the client gave up on may still be processed.
    """

    first_s: float = 0.1
    max_s: float = 5.0
    not_found_grace_s: float = 3.0
    request_timeout_s: float = 0.0

    @property
    def grace_s(self) -> float:
        return max(self.not_found_grace_s, self.request_timeout_s)


_PAUSED = Refused("paused by the operator", "paused")


def _ms() -> int:
    return time.time_ns() // 1_000_000


class _DecisionView:
    """The risk view for one synchronous decision: our working orders are listed once.

    The tracker keeps final orders for a while (status display, late updates), so each
    listing walks all of them; the filters and several risk checks each asked for it, which
    was most of the tick-to-order path. Nothing can change between the checks of one decision
    (no awaits), so one listing is exact. Everything else is the app's view.
    """

    __slots__ = ("_open", "_view")

    def __init__(self, view: RiskView) -> None:
        self._view = view
        self._open: list[OrderView] | None = None

    def market(self, symbol: str) -> Any:
        return self._view.market(symbol)

    def rules(self, symbol: str) -> SymbolRules:
        return self._view.rules(symbol)

    def inventory(self, asset: str) -> Decimal:
        return self._view.inventory(asset)

    def free_balance(self, asset: str) -> Decimal | None:
        free_of = getattr(self._view, "free_balance", None)
        return free_of(asset) if free_of is not None else None

    def open_orders(self, symbol: str | None = None, side: Side | None = None) -> list[OrderView]:
        if self._open is None:
            self._open = self._view.open_orders()
        if symbol is None and side is None:
            return list(self._open)
        return [o for o in self._open
                if (symbol is None or o.symbol == symbol) and (side is None or o.side is side)]

    def __getattr__(self, name: str) -> Any:  # anything else a custom check may read
        return getattr(self._view, name)


class OrderManager:
    """Turns intents into orders: refusals recorded, record-before-send, unknowns resolved.

    ``view`` is what the risk checks read (the app's ``StrategyContext``); ``rules`` the
    traded symbols' filters; ``market`` gives the decision context. ``on_refused`` is told
    of every refusal (for the status display).
    """

    def __init__(self, *, gateway: Gateway, store: Any, reconciler: Any, tracker: OrderTracker,
                 risk: RiskChecker, view: RiskView, rules: Mapping[str, SymbolRules], ids: ClientIdFactory,
                 market: MarketState, timing: ResolveTiming | None = None,
                 clock: Callable[[], float] = time.monotonic, resp_type: str = "FULL") -> None:
        self.gateway = gateway
        self.store = store
        self.reconciler = reconciler
        self.tracker = tracker
        self.risk = risk
        self.view = view
        self.rules = rules
        self.ids = ids
        self.prefix = ids.prefix
        self.market = market
        self.timing = timing or ResolveTiming()
        self._clock = clock
        # Ledger times come from the store's clock (wall time, or exchange time in a replay).
        self._ledger_ms: Callable[[], int] = getattr(store, "clock", None) or _ms
        self._resp_type = resp_type
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resolving: set[str] = set()
        self.accepting = True
        # An operator's pause (executor.oversight.control): new orders are refused quietly (counted, not
        # logged or recorded per intent: the pause itself is in the ledger); cancels still go.
        self.paused = False
        self.counts: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        # When each unresolved order's outcome became unknown, or when it was first not
        # found (monotonic): the -2013 grace runs from there. Bounded: an entry forgotten for
        # age is far older than the grace (a missing one restarts it: never too early).
        self._unknown_at: BoundedDict[str, float] = BoundedDict(
            SENT_AT_MEMORY, max_age_s=max(SENT_AT_MIN_AGE_S, 10 * self.timing.grace_s), clock=clock)
        # Hooks for the user stream's silent-stall check: ``on_sending(id)`` just before a
        # placement or cancel leaves (an executionReport should follow), ``on_no_effect(id)``
        # once the exchange definitely did not act on it (none will).
        self.on_sending: Callable[[str], None] | None = None
        self.on_no_effect: Callable[[str], None] | None = None
        # Awaited when the reserved order ids are exhausted (``IdSupply.wait``); None: the
        # factory is not blocked (never exhausted).
        self.wait_for_ids: Callable[[], Awaitable[None]] | None = None

    # ------------------------------------------------------------------ intake

    def submit(self, intent: Intent) -> Decision:
        """Decide on one intent now (no awaits) and start its I/O in a task.

        Returns ``ALLOWED`` when the intent was taken (a Place is then tracked, PENDING_SEND)
        or ``Refused`` (logged, recorded in the ledger by a task, nothing sent).
        """
        if isinstance(intent, Place | Replace) and self.paused:
            self.counts["paused"] += 1
            return _PAUSED
        if isinstance(intent, Place):
            if not self.accepting:
                return self._refuse(intent, "the order manager is stopping", "stopping")
            try:
                decided = self._decide_place(intent)
            except IdsExhausted:
                # Rare (the next block is reserved when half of one is left): this decision
                # is made once an id is durably reserved, nothing is sent before.
                self._spawn(self._place_later(intent), f"place {intent.symbol} after ids")
                return ALLOWED
            if isinstance(decided, Refused):
                return decided
            self._spawn(self._send(decided, self._record(decided), join_send_group()),
                        f"send {decided.client_order_id}")
            return ALLOWED
        if isinstance(intent, Cancel):
            order = self.tracker.get(intent.client_order_id)
            if order is None or not order.working or order.cancel_requested:
                return ALLOWED  # nothing (more) to do: never cancel what is not ours
            self.tracker.set_cancel_requested(order.client_id)
            self._spawn(self.cancel(order.client_id, intent.reason), f"cancel {order.client_id}")
            return ALLOWED
        if isinstance(intent, Replace):
            if not self.accepting:
                return self._refuse(intent.place, "the order manager is stopping", "stopping")
            order = self.tracker.get(intent.client_order_id)
            if order is None or not order.working:
                return self._refuse(intent.place, f"no working order {intent.client_order_id} to replace",
                                    "order_sanity")
            self.tracker.set_cancel_requested(order.client_id)
            self._spawn(self._replace(intent), f"replace {order.client_id}")
            return ALLOWED
        raise TypeError(f"not an intent: {intent!r}")

    async def _place_later(self, place: Place) -> None:
        result = await self.place(place)
        if isinstance(result, Refused):
            log.info("order on %s decided after waiting for ids: %s", place.symbol, result)

    async def place(self, place: Place) -> TrackedOrder | Refused:
        """``submit`` for one Place, awaiting its whole send (tests, Replace)."""
        while True:
            try:
                decided = self._decide_place(place)
                break
            except IdsExhausted:
                if self.wait_for_ids is None:
                    raise
                self.counts["waited_for_ids"] += 1
                await self.wait_for_ids()
                if not self.accepting:
                    return self._refuse(place, "the order manager is stopping", "stopping")
        if isinstance(decided, Refused):
            return decided
        await self._send(decided, self._record(decided), join_send_group())
        order = self.tracker.get(decided.client_order_id)
        assert order is not None
        return order

    def _decide_place(self, place: Place) -> OrderRequest | Refused:
        rules = self.rules.get(place.symbol)
        if rules is None:
            return self._refuse(place, f"{place.symbol} is not a traded symbol", "order_sanity")
        st = self.market.get(place.symbol)
        mid = st.mid if st is not None else None
        client_id = self.ids.next_order_id()
        # One listing of our working orders serves the filters (MAX_NUM_ORDERS) and every
        # risk check; ``view`` is the app's context over this manager's tracker.
        view = _DecisionView(self.view)
        try:
            request = build_order_request(place, rules, client_id, ref_price=mid,
                                          open_orders=len(view.open_orders(place.symbol)))
        except OrderRejected as exc:
            names = ",".join(dict.fromkeys(v.filter for v in exc.violations))
            return self._refuse(place, "; ".join(map(str, exc.violations)), f"filters:{names}")
        decision = self.risk.check(request, view)
        if isinstance(decision, Refused):
            return self._refuse(request, decision.reason, decision.check)
        self.tracker.add(request, placed_at=self._clock())
        self.reconciler.remember_ours(client_id)
        self.counts["accepted_intents"] += 1
        return request

    def _refuse(self, what: Place | OrderRequest, reason: str, check: str) -> Refused:
        refused = Refused(reason, check)
        self.refusals[check] += 1
        price = what.price
        qty = what.quantity if isinstance(what, OrderRequest) else what.qty
        kind = what.type.value if isinstance(what, OrderRequest) else what.wire_type.value
        log.info("refused %s %s %s %s @ %s: %s", what.symbol, what.side.value, kind, qty, price, refused)
        details = {"reason_from_strategy": what.reason} if what.reason else None
        self._spawn(self.store.add_risk_refusal(
            what.symbol, kind, reason, rule=check, side=what.side.value, price=price, quantity=qty,
            details=details), f"refusal {what.symbol}")
        return refused

    # ------------------------------------------------------------------ sending

    def _context(self, symbol: str) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
        st = self.market.get(symbol)
        if st is None:
            return None, None, None
        return st.bid, st.ask, st.mark

    def _record(self, req: OrderRequest) -> asyncio.Future[Any]:
        """Start recording ``req`` (PENDING_SEND, with its decision context) now, in the
        decision's own loop iteration: the store commits the intents queued together."""
        bid, ask, mark = self._context(req.symbol)
        return asyncio.ensure_future(self.store.record_order_intent(
            req.client_order_id, req.symbol, req.side.value, req.type.value, quantity=req.quantity,
            price=req.price, time_in_force=req.time_in_force.value if req.time_in_force else None,
            decision_bid=bid, decision_ask=ask, decision_mark=mark, decision_ms=self._ledger_ms(),
            reason=req.reason or None))

    async def _send(self, req: OrderRequest, recorded: asyncio.Future[Any], leg: SendLeg) -> None:
        cid = req.client_order_id
        sent_ms: list[int] = []

        def leaving(fut: asyncio.Future[Any]) -> None:
            # Registered before the gateway waits on the record, so it runs first once the
            # record is durable: the hooks are armed before the held request is written.
            if fut.cancelled() or fut.exception() is not None:
                return
            st = self.market.get(req.symbol)
            if st is not None and st.book_recv_mono is not None:
                metrics.observe_tick_to_order(time.monotonic() - st.book_recv_mono)
            self.counts["sent"] += 1
            sent_ms.append(self._ledger_ms())
            self._hook(self.on_sending, cid)

        if recorded.done():
            # Committed in the decision's own iteration (SQLite's order path runs on this
            # thread): arm the hooks now, before the gateway writes the request below.
            leaving(recorded)
        else:
            recorded.add_done_callback(leaving)
        params = req.params()
        params["newOrderRespType"] = self._resp_type
        outcome: Any = None
        try:
            # Prepared while the record commits; written only once it is durable, right after
            # the other requests of its decision are prepared too (``SendLeg``).
            with send_leg(leg):
                outcome = await self.gateway.place_order(params, hold=recorded)
        except asyncio.CancelledError:
            # Torn down mid-send: the request may be on the wire. UNKNOWN is the honest
            # state; the next start's gap fill queries it (never re-sends).
            log.warning("order %s %s: send cancelled mid-flight; recording UNKNOWN", cid, req.symbol)
            try:
                await asyncio.shield(self.store.update_order_status(cid, "UNKNOWN", source="local"))
            except Exception:
                log.exception("order %s: could not record UNKNOWN after a cancelled send", cid)
            raise
        except NotSent:
            pass  # the record failed (below): nothing was written
        except Exception as exc:
            if recorded.done() and not recorded.cancelled() and recorded.exception() is None:
                log.exception("order %s %s: send failed unexpectedly; outcome unknown", cid, req.symbol)
                outcome = Unknown(f"{type(exc).__name__}")
            # else the record failed too, and the gateway wrote nothing before it (below)
        if not recorded.done():
            # Every outcome needs the request written, and the gateway writes only after the
            # record: an outcome before it means a gateway ignored the hold.
            if outcome is not None:
                log.error("order %s: the gateway answered before the record was committed", cid)
            await asyncio.wait([recorded])
        if recorded.cancelled() or recorded.exception() is not None:
            # Not recorded means not sent: an order the ledger cannot explain must not exist.
            exc = None if recorded.cancelled() else recorded.exception()
            log.error("order %s %s not sent: could not record it first (%r)", cid, req.symbol, exc,
                      exc_info=exc)
            self.counts["not_recorded"] += 1
            self.tracker.set_status(cid, OrderStatus.NOT_PLACED, note=f"not recorded: {exc}")
            return
        # SENT (with the time it left) is written once the request is out, not beside it:
        # a ledger write in flight during the send competes with it for this thread and
        # the GIL. PENDING_SEND and SENT are both "maybe on the wire" to recovery (a restart
        # queries either by client id).
        try:
            await self.store.mark_order_sent(cid, at_ms=sent_ms[0] if sent_ms else None)
        except Exception:
            log.exception("order %s: could not record it as SENT", cid)
        if outcome is None:  # the send raised before the request could leave: still unknown
            outcome = Unknown("send failed before an answer")
        await self._outcome(req, outcome)

    async def _outcome(self, req: OrderRequest, outcome: Any) -> None:
        cid = req.client_order_id
        if isinstance(outcome, Accepted):
            self.counts["accepted"] += 1
            order = self.tracker.get(cid)
            if order is not None:
                metrics.observe_decision_to_ack(self._clock() - order.placed_at)
            await self._apply_response(outcome.response, cid)
        elif isinstance(outcome, Rejected):
            self.counts["rejected"] += 1
            why = f"{outcome.code} {outcome.msg}".strip()
            log.warning("order %s %s rejected: %s", cid, req.symbol, why)
            self._hook(self.on_no_effect, cid)
            await self.store.update_order_status(cid, "REJECTED", source="order_response", reject_reason=why)
            self.tracker.set_status(cid, OrderStatus.REJECTED, note=why)
        elif isinstance(outcome, RateLimited):
            self.counts["rate_limited"] += 1
            why = (f"not sent: rate limited ({'418 banned' if outcome.banned else '429'}, "
                   f"code {outcome.code}, retry after {outcome.retry_after_s:g} s)")
            log.warning("order %s %s %s", cid, req.symbol, why)
            self._hook(self.on_no_effect, cid)
            await self.store.update_order_status(cid, NOT_PLACED, source="order_response", reject_reason=why)
            self.tracker.set_status(cid, OrderStatus.NOT_PLACED, note=why)
        else:
            reason = outcome.reason if isinstance(outcome, Unknown) else str(outcome)
            self.counts["unknown"] += 1
            log.warning("order %s %s outcome UNKNOWN (%s): resolving by query, never re-sending",
                        cid, req.symbol, reason)
            # The grace before a -2013 may mean "never placed" starts now, not at the send.
            self._unknown_at[cid] = self._clock()
            await self.store.update_order_status(cid, "UNKNOWN", source="local")
            self.tracker.set_status(cid, OrderStatus.UNKNOWN, note=reason)
            await self.resolve(req.symbol, cid)

    def _hook(self, hook: Callable[[str], None] | None, cid: str) -> None:
        if hook is not None:
            try:
                hook(cid)
            except Exception:
                log.exception("order manager hook failed for %s", cid)

    async def _apply_response(self, response: Any, cid: str) -> None:
        try:
            await self.reconciler.apply_order_response(response, source="order_response")
        except Exception:
            # The order exists; its facts will come from the stream or a query.
            log.exception("order %s: could not apply the exchange's answer; querying it", cid)
            order = self.tracker.get(cid)
            if order is not None:
                self.tracker.set_status(cid, OrderStatus.UNKNOWN)
                await self.resolve(order.symbol, cid)

    # ------------------------------------------------------------------ unknown outcomes

    async def resolve(self, symbol: str, client_id: str, *, unknown_since: float | None = None) -> str:
        """Query ``client_id`` until the exchange says what became of it; returns the status.

        Never sends the order again. Stops early if another path (stream, gap fill)
        resolves it first. ``unknown_since`` (monotonic) is when its outcome became unknown,
        if earlier than now (an order an earlier run left unresolved).
        """
        if client_id in self._resolving:
            return "RESOLVING"
        self._resolving.add(client_id)
        if unknown_since is not None:
            self._unknown_at[client_id] = unknown_since
        self._unknown_at.setdefault(client_id, self._clock())
        delay = self.timing.first_s
        grace = self.timing.grace_s
        try:
            while True:
                order = self.tracker.get(client_id)
                if order is not None and not order.unresolved:
                    return order.status.value
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.timing.max_s)
                try:
                    found = await self.gateway.get_order(symbol, client_id)
                except GatewayError as exc:
                    log.info("order %s still unresolved (%s); asking again in %.1f s", client_id, exc, delay)
                    continue
                if found is not None:
                    self.counts["resolved_found"] += 1
                    late = order is not None and order.status is OrderStatus.NOT_FOUND
                    found = self.reconciler.order_report(found)  # the adapter's reading of the answer
                    await self.reconciler.apply_order_response(found, source="rest_query")
                    status = found.status.value
                    log.log(logging.WARNING if late else logging.INFO, "order %s resolved by query: %s%s",
                            client_id, status, " (it appeared late: adopted)" if late else "")
                    # The reconciler's update reaches the tracker; make sure even if not ours by prefix.
                    self.tracker.set_status(client_id, status or OrderStatus.NEW, exchange_id=found.order_id)
                    self._unknown_at.pop(client_id, None)
                    return status
                waited = self._clock() - self._unknown_at[client_id]
                if waited < grace:
                    continue  # -2013 may mean "not arrived yet"
                if order is None or order.status is not OrderStatus.NOT_FOUND:
                    # Not yet "never placed": it keeps counting against the limits until a
                    # later query confirms the absence.
                    why = (f"-2013: the exchange does not know this client order id {waited:.1f} s after "
                           "its outcome became unknown; confirming later")
                    await self.store.update_order_status(client_id, NOT_FOUND, source="rest_query",
                                                         reject_reason=why)
                    self.tracker.set_status(client_id, OrderStatus.NOT_FOUND, note=why)
                    self._unknown_at[client_id] = self._clock()
                    log.warning("order %s not found (%s)", client_id, why)
                    continue
                self.counts["never_placed"] += 1
                why = "-2013 again a grace after it was first not found: never placed"
                change = await self.store.update_order_status(client_id, NOT_PLACED, source="rest_query",
                                                              reject_reason=why)
                log.warning("order %s resolved: never placed (%s)", client_id, why)
                self._hook(self.on_no_effect, client_id)
                self.tracker.set_status(client_id, OrderStatus.NOT_PLACED, note=why)
                self._unknown_at.pop(client_id, None)
                return change.status or NOT_PLACED
        finally:
            self._resolving.discard(client_id)

    def resume(self, symbol: str, client_id: str, unknown_for_s: float) -> None:
        """Resolve an order an earlier run left unresolved (tracked already), in a task;
        its outcome became unknown ``unknown_for_s`` ago (the grace counts from then)."""
        since = self._clock() - max(unknown_for_s, 0.0)
        self._spawn(self.resolve(symbol, client_id, unknown_since=since), f"resolve {client_id}")

    # ------------------------------------------------------------------ cancels

    async def cancel(self, client_id: str, reason: str = "") -> str:
        """Cancel one of our orders with its own cancel id; returns the cancel's outcome."""
        order = self.tracker.get(client_id)
        if order is None:
            return "NOT_OURS"  # only orders this run tracks (or adopted as ours) are cancelled
        symbol = order.symbol
        if order.unresolved:
            # Its own fate is unknown yet: find out first (cancelling a PENDING_SEND order
            # the exchange never saw would just answer -2011).
            if order.status in (OrderStatus.UNKNOWN, OrderStatus.NOT_FOUND):
                await self.resolve(symbol, client_id)
            order = self.tracker.get(client_id)
            if order is None or not order.working or order.unresolved:
                self.tracker.set_cancel_requested(client_id, False)
                return "NOT_WORKING"
        return await self._cancel_on_exchange(symbol, client_id, reason)

    async def _cancel_on_exchange(self, symbol: str, client_id: str, reason: str) -> str:
        cancel_id = self.ids.next_cancel_id()
        self.tracker.set_cancel_requested(client_id)
        await self.store.record_cancel(cancel_id, client_id, symbol)
        self.counts["cancels_sent"] += 1
        log.info("cancel %s %s (%s) as %s", symbol, client_id, reason or "no reason given", cancel_id)
        self._hook(self.on_sending, client_id)
        outcome = await self.gateway.cancel_order(symbol, client_id, cancel_id)
        if isinstance(outcome, Accepted):
            await self.store.resolve_cancel(cancel_id, "CANCELED")
            try:
                await self.reconciler.apply_order_response(outcome.response, source="order_response")
            except Exception:
                log.exception("cancel of %s: could not apply the exchange's answer", client_id)
            if client_id in self.tracker:
                self.tracker.set_status(client_id, OrderStatus.CANCELED)
            return "CANCELED"
        if isinstance(outcome, Rejected):
            detail = f"{outcome.code} {outcome.msg}".strip()
            self._hook(self.on_no_effect, client_id)
            await self.store.resolve_cancel(cancel_id, "REJECTED", detail=detail)
            self.counts["cancels_rejected"] += 1
            # -2011: it is already gone (filled or cancelled) -- ask what became of it.
            await self._refresh(symbol, client_id)
            return "REJECTED"
        if isinstance(outcome, RateLimited):
            self._hook(self.on_no_effect, client_id)
            await self.store.resolve_cancel(cancel_id, "NOT_SENT", detail="rate limited")
            self.tracker.set_cancel_requested(client_id, False)
            return "NOT_SENT"
        await self.store.resolve_cancel(cancel_id, "UNKNOWN", detail=getattr(outcome, "reason", str(outcome)))
        self.counts["cancels_unknown"] += 1
        await self._refresh(symbol, client_id)
        return "UNKNOWN"

    async def _refresh(self, symbol: str, client_id: str) -> None:
        """After a cancel that did not clearly work: query the order (with backoff on errors)."""
        delay = self.timing.first_s
        for _ in range(8):
            try:
                found = await self.gateway.get_order(symbol, client_id)
            except GatewayError as exc:
                log.info("order %s: query after its cancel failed (%s); asking again in %.1f s",
                         client_id, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.timing.max_s)
                continue
            if found is not None:
                found = self.reconciler.order_report(found)  # the adapter's reading of the answer
                await self.reconciler.apply_order_response(found, source="rest_query")
                if client_id in self.tracker:
                    self.tracker.set_status(client_id, found.status.value, exchange_id=found.order_id)
            break
        order = self.tracker.get(client_id)
        if order is not None and order.working:
            self.tracker.set_cancel_requested(client_id, False)  # still open: may be asked again

    async def _replace(self, intent: Replace) -> None:
        old = self.tracker.get(intent.client_order_id)
        if old is None:
            return
        await self.cancel(old.client_id, intent.reason or "replace")
        old = self.tracker.get(intent.client_order_id)
        if old is None or old.status is not OrderStatus.CANCELED:
            log.info("replace of %s: old order is %s, new order not placed", intent.client_order_id,
                     old.status.value if old else "gone")
            return
        if self.accepting and not self.paused:
            await self.place(intent.place)

    async def cancel_all_ours(self, reason: str, *, include_exchange: bool = True) -> int:
        """Cancel every working order of ours; never anyone else's. Returns cancels sent.

        ``include_exchange`` also asks the exchange for its open orders and cancels those
        with our client-id prefix that this run does not track (an earlier run's).
        """
        # Factories, not coroutines: a shutdown that times out while the open orders are
        # being listed must not leave created-but-never-awaited cancel coroutines behind.
        jobs: dict[str, Callable[[], Awaitable[str]]] = {}
        for order in self.tracker.working():
            if not order.cancel_requested or order.unresolved:
                jobs[order.client_id] = functools.partial(self.cancel, order.client_id, reason)
        problems: list[str] = []
        if include_exchange:
            try:
                open_rows = await self.gateway.open_orders()
            except GatewayError as exc:
                log.warning("cancel_all_ours: could not list open orders: %s", exc)
                problems.append(f"could not list open orders ({exc})")
                open_rows = []
            for row in map(self.reconciler.order_report, open_rows):  # the adapter's reading
                cid = row.client_order_id
                if cid in jobs or not is_ours(cid, self.prefix):
                    continue
                known = self.tracker.get(cid)
                if known is not None and known.cancel_requested:
                    continue  # its cancel is already in flight
                if cid not in self.tracker:
                    self.tracker.adopt(cid, row.ledger_symbol, Side(row.side), row.order_type or "LIMIT",
                                       row.price or Decimal(0), row.quantity or Decimal(0),
                                       row.status.value, row.executed_qty)
                jobs[cid] = functools.partial(self._cancel_on_exchange, row.ledger_symbol, cid, reason)
        results = await asyncio.gather(*(job() for job in jobs.values()), return_exceptions=True)
        for cid, res in zip(jobs, results, strict=True):
            if isinstance(res, BaseException):
                log.error("cancel of %s failed: %s", cid, res)
                problems.append(f"cancel of {cid} failed")
        if problems:
            # The caller (shutdown) must not report a clean stop when ours may be left open.
            raise CancelAllIncomplete("; ".join(problems))
        return sum(1 for r in results if r in ("CANCELED", "REJECTED", "UNKNOWN"))

    # ------------------------------------------------------------------ lifecycle

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.counts["task_errors"] += 1
            log.error("order manager task failed: %r", task.exception(), exc_info=task.exception())

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def in_flight_tasks(self) -> set[asyncio.Task[Any]]:
        """A snapshot of the sends, cancels and resolutions in flight (a replay waits on them)."""
        return set(self._tasks)

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait for every send, cancel and resolution started so far; True if all finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._tasks:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=left)
        return True

    async def stop(self, timeout: float = 10.0) -> bool:
        """Refuse new orders, let what is in flight finish; cancel stragglers after ``timeout``."""
        self.accepting = False
        done = await self.drain(timeout)
        if not done:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        return done
