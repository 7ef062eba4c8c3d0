"""The order vocabulary (side, status) and the one order state machine.

Every order status the bot knows is defined here once, with its rank; the tracker, the
reconciler, the ledger's merge (``persistence/status_merge.py``) and the audit use these
names and ranks, and the ledger stores exactly these names (each means one thing):

=================  =====  ==================================================================
status             rank   meaning
=================  =====  ==================================================================
PENDING_SEND       0      recorded before the send; not (known to be) on the wire yet
SENT               1      on the wire, no answer yet
UNKNOWN            2      sent, outcome unknown (5xx, -1007, timeout, reset): resolve by query
NOT_FOUND          3      a query by client id answered -2013 after the grace; absence not yet
                          confirmed, so it still counts against every limit
NOT_PLACED         4      confirmed never placed (refused before it left, or absent again at a
                          later reconciliation); final, but the exchange's word overrules it
NEW                5      on the book (the exchange's PENDING_NEW reads NEW)
PENDING_CANCEL     6      documented by Binance as unused; open
PARTIALLY_FILLED   7      on the book, partly filled
FILLED, CANCELED,  8      the exchange's final statuses (REJECTED also for a definitive
REJECTED, EXPIRED,        refusal of our send)
EXPIRED_IN_MATCH
=================  =====  ==================================================================

``may_move(old, new)`` is the one transition rule: nothing leaves an exchange-final status;
otherwise a status only moves to a higher rank. Local inferences (NOT_FOUND, NOT_PLACED)
rank below every exchange status, so if the order shows up after all, the exchange's word
wins (we must never lose a live order or its fills) and the rank still only rises.

``apply(state, observation) -> state`` is a pure, monotonic transition function. The
exchange can deliver the same fact twice or out of order (a stream event and a REST query
racing, a reconnect replaying), so the machine never goes backwards:

* a lower-ranked observation never lowers the status (a late NEW after FILLED is ignored);
* cumulative executed quantity and quote quantity only ever take the maximum seen;
* the first exchange-final status is final; later different statuses are ignored (only its
  cumulative figures can still grow);
* NEW with a non-zero executed quantity is shown as PARTIALLY_FILLED, so the result does not
  depend on which of the two facts arrived first.

Hence for any valid event sequence of one order, every permutation and duplication ends in
the same state as the ordered sequence.

Local observations, which come from our own send attempt rather than the exchange:

* ``Sent``: PENDING_SEND -> SENT (the request left).
* ``SendUnknown`` (5xx, -1007, timeout, reset): PENDING_SEND/SENT -> UNKNOWN. Ignored once
  the exchange has told us anything (the stream event can beat the HTTP response).
* ``SendRejected`` (a definitive 4xx such as -2010/-1013): unresolved -> REJECTED, final
  like the exchange's own REJECTED (a definitive refusal means nothing was placed).
* ``NotSent`` (refused before it left: rate-limit gate, not recorded): unresolved ->
  NOT_PLACED.
* ``NotFound`` (-2013 when querying our client id, after the grace): PENDING_SEND/SENT/
  UNKNOWN -> NOT_FOUND. Ignored after the exchange has shown the order.
* ``AbsenceConfirmed`` (-2013 again at a later reconciliation): NOT_FOUND -> NOT_PLACED.

Deciding *when* a -2013 is trustworthy (the order may still be in flight) is the order
manager's and the reconciliation's policy, not this module's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from decimal import Decimal
from enum import StrEnum

from executor.core.money import ZERO

__all__ = [
    "EXCHANGE_FINAL",
    "FINAL",
    "FINAL_STATUSES",
    "OPEN",
    "STATUS_RANK",
    "UNRESOLVED",
    "AbsenceConfirmed",
    "NotFound",
    "NotSent",
    "Observation",
    "OrderState",
    "OrderStatus",
    "SendRejected",
    "SendUnknown",
    "Sent",
    "Side",
    "apply",
    "is_exchange_status",
    "may_move",
    "observe",
    "parse_side",
    "parse_status",
    "rank",
    "stored_status",
]


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderStatus(StrEnum):
    PENDING_SEND = "PENDING_SEND"
    SENT = "SENT"
    UNKNOWN = "UNKNOWN"
    NOT_FOUND = "NOT_FOUND"
    NOT_PLACED = "NOT_PLACED"
    NEW = "NEW"
    PENDING_CANCEL = "PENDING_CANCEL"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"


EXCHANGE_FINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED,
     OrderStatus.EXPIRED_IN_MATCH}
)
FINAL = EXCHANGE_FINAL | {OrderStatus.NOT_PLACED}
FINAL_STATUSES = FINAL  # the ledger's name for the same set (members compare equal to their text)
OPEN = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_CANCEL})
# Maybe on the exchange, maybe not: resolved only by querying our client id.
UNRESOLVED = frozenset({OrderStatus.PENDING_SEND, OrderStatus.SENT, OrderStatus.UNKNOWN,
                        OrderStatus.NOT_FOUND})
_LOCAL = UNRESOLVED | {OrderStatus.NOT_PLACED}
# What an Observation may carry: the exchange's statuses, not our local ones.
_OBSERVABLE = frozenset(OrderStatus) - _LOCAL

_FINAL_RANK = 8
STATUS_RANK: dict[str, int] = {
    OrderStatus.PENDING_SEND: 0,
    OrderStatus.SENT: 1,
    OrderStatus.UNKNOWN: 2,
    OrderStatus.NOT_FOUND: 3,
    OrderStatus.NOT_PLACED: 4,  # below anything the exchange says: exchange facts win
    OrderStatus.NEW: 5,
    OrderStatus.PENDING_CANCEL: 6,
    OrderStatus.PARTIALLY_FILLED: 7,
    **dict.fromkeys(EXCHANGE_FINAL, _FINAL_RANK),
}
_RANK: dict[OrderStatus, int] = dict(STATUS_RANK)  # type: ignore[arg-type]

# Exchange status strings (spot X, futures X, REST status) -> our status.
# PENDING_NEW (order lists waiting on a working order) is an open, unfilled order to us.
_EXCHANGE_STATUS = {
    "NEW": OrderStatus.NEW,
    "PENDING_NEW": OrderStatus.NEW,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "PENDING_CANCEL": OrderStatus.PENDING_CANCEL,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED_IN_MATCH,
}
# Stored names an older ledger may hold, read as today's status.
_LEGACY = {"PENDING_NEW": OrderStatus.NEW, "NEVER_PLACED": OrderStatus.NOT_PLACED}


def parse_status(value: object, field: str = "status") -> OrderStatus:
    """Map an exchange status string to ``OrderStatus``; ``ValueError`` naming the field otherwise."""
    if isinstance(value, str) and value in _EXCHANGE_STATUS:
        return _EXCHANGE_STATUS[value]
    raise ValueError(f"{field}: unknown order status {value!r}")


def stored_status(value: str | OrderStatus) -> OrderStatus:
    """A status as the ledger (or a caller) spells it -> ``OrderStatus``; ValueError if unknown."""
    if type(value) is OrderStatus:
        return value
    legacy = _LEGACY.get(value)
    return legacy if legacy is not None else OrderStatus(value)


def parse_side(value: object, field: str = "side") -> Side:
    if value == "BUY":
        return Side.BUY
    if value == "SELL":
        return Side.SELL
    raise ValueError(f"{field}: expected BUY or SELL, got {value!r}")


def rank(status: str | OrderStatus) -> int:
    """The status's rank (see the table in the module docstring)."""
    return _RANK[stored_status(status)]


def is_exchange_status(status: str | OrderStatus) -> bool:
    """A status only the exchange's word can set (open or exchange-final)."""
    return stored_status(status) in _OBSERVABLE


def may_move(old: str | OrderStatus, new: str | OrderStatus) -> bool:
    """The one transition rule: never out of an exchange-final status, else only upwards."""
    o, n = stored_status(old), stored_status(new)
    return o not in EXCHANGE_FINAL and _RANK[n] > _RANK[o]


@dataclass(frozen=True)
class Observation:
    """What the exchange says about an order at some moment: a stream event or a REST query.

    ``executed_qty``/``cum_quote`` are cumulative (spot z/Z, REST executedQty and
    cummulativeQuoteQty). ``status`` must be an exchange status (not a local one).
    """

    status: OrderStatus
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    order_id: int | None = None

    def __post_init__(self) -> None:
        status = self.status
        if type(status) is not OrderStatus:  # already the member: no enum lookup (hot path)
            status = OrderStatus(status)
            object.__setattr__(self, "status", status)
        if status in _LOCAL:
            raise ValueError(f"status: {status} is local, not an exchange status")


@dataclass(frozen=True)
class Sent:
    """The request left (PENDING_SEND -> SENT)."""


@dataclass(frozen=True)
class SendUnknown:
    """Our send's outcome is unknown (5xx, -1007, timeout, connection reset)."""

    reason: str = ""


@dataclass(frozen=True)
class SendRejected:
    """The exchange definitively refused our send (e.g. -2010, -1013)."""

    reason: str = ""


@dataclass(frozen=True)
class NotSent:
    """The order never left (rate-limit gate closed, could not be recorded first)."""

    reason: str = ""


@dataclass(frozen=True)
class NotFound:
    """A query by our client order id answered -2013 (no such order), after the grace."""


@dataclass(frozen=True)
class AbsenceConfirmed:
    """A later reconciliation found a NOT_FOUND order absent again: it was never placed."""


Event = Observation | Sent | SendUnknown | SendRejected | NotSent | NotFound | AbsenceConfirmed

# Local event -> (the status it sets, the statuses it may set it from).
_LOCAL_MOVES: dict[type, tuple[OrderStatus, frozenset[OrderStatus]]] = {
    Sent: (OrderStatus.SENT, frozenset({OrderStatus.PENDING_SEND})),
    SendUnknown: (OrderStatus.UNKNOWN, frozenset({OrderStatus.PENDING_SEND, OrderStatus.SENT})),
    SendRejected: (OrderStatus.REJECTED, UNRESOLVED),
    NotSent: (OrderStatus.NOT_PLACED, UNRESOLVED),
    NotFound: (OrderStatus.NOT_FOUND, frozenset({OrderStatus.PENDING_SEND, OrderStatus.SENT,
                                                 OrderStatus.UNKNOWN})),
    AbsenceConfirmed: (OrderStatus.NOT_PLACED, frozenset({OrderStatus.NOT_FOUND})),
}


@dataclass(frozen=True)
class OrderState:
    """The bot's belief about one order. Start with ``OrderState()`` (PENDING_SEND).

    Reasons (why a send was unknown or refused) are the caller's to record: the state holds
    only facts whose merge is order-independent.
    """

    status: OrderStatus = OrderStatus.PENDING_SEND
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    order_id: int | None = None

    def __post_init__(self) -> None:
        # Rebuilt from the database a status may arrive as a plain string; identity checks
        # (``is OrderStatus.X``) below need the enum member.
        if type(self.status) is not OrderStatus:
            object.__setattr__(self, "status", stored_status(self.status))

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    @property
    def is_open(self) -> bool:
        """Working on the exchange (may still fill)."""
        return self.status in OPEN

    @property
    def is_unresolved(self) -> bool:
        """PENDING_SEND, SENT, UNKNOWN or NOT_FOUND: resolved only by querying the client id."""
        return self.status in UNRESOLVED

    @property
    def avg_price(self) -> Decimal | None:
        return self.cum_quote / self.executed_qty if self.executed_qty > 0 else None


def apply(state: OrderState, event: Event) -> OrderState:
    """Return the state after ``event``; never goes backwards (see module docstring)."""
    if isinstance(event, Observation):
        return _observe(state, event)
    move = _LOCAL_MOVES.get(type(event))
    if move is None:
        raise TypeError(f"not an order event: {event!r}")
    target, sources = move
    if state.status in sources and may_move(state.status, target):
        return replace(state, status=target)
    return state


_new_state = object.__new__
_set_state = object.__setattr__
if tuple(f.name for f in fields(OrderState)) != ("status", "executed_qty", "cum_quote", "order_id"):
    raise RuntimeError("OrderState changed: update _observe")  # pragma: no cover - a guard for editors


def observe(state: OrderState, status: OrderStatus, executed_qty: Decimal, cum_quote: Decimal,
            order_id: int | None) -> OrderState:
    """``apply(state, Observation(status, executed_qty, cum_quote, order_id))`` without
    building the Observation (the reconciler folds every executionReport through this).
    A status that is not an exchange status member is refused as ``Observation`` refuses it."""
    if type(status) is not OrderStatus or status not in _OBSERVABLE:
        return apply(state, Observation(status, executed_qty, cum_quote, order_id))
    return _merge(state, status, executed_qty, cum_quote, order_id)


def _observe(state: OrderState, obs: Observation) -> OrderState:
    return _merge(state, obs.status, obs.executed_qty, obs.cum_quote, obs.order_id)


def _merge(state: OrderState, obs_status: OrderStatus, obs_executed: Decimal, obs_quote: Decimal,
           obs_order_id: int | None) -> OrderState:
    executed = max(state.executed_qty, obs_executed)
    quote = max(state.cum_quote, obs_quote)
    order_id = state.order_id if state.order_id is not None else obs_order_id
    cur = state.status
    status = obs_status if cur not in EXCHANGE_FINAL and _RANK[obs_status] > _RANK[cur] else cur
    if status is OrderStatus.NEW and executed > 0:
        status = OrderStatus.PARTIALLY_FILLED
    if (status is cur and executed is state.executed_qty and quote is state.cum_quote
            and order_id is state.order_id):
        return state  # nothing moved (a replay, or a late lower status): frozen, so shareable
    # What OrderState(...) builds; both statuses are members already, so __post_init__ has
    # nothing to do (this runs once per executionReport).
    new = _new_state(OrderState)
    _set_state(new, "__dict__", {"status": status, "executed_qty": executed, "cum_quote": quote,
                                 "order_id": order_id})
    return new
