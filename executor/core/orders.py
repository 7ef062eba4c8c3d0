"""The order vocabulary (side, status) and the order state machine.

``apply(state, observation) -> state`` is a pure, monotonic transition function. The
exchange can deliver the same fact twice or out of order (a stream event and a REST query
racing, a reconnect replaying), so the machine never goes backwards:

* statuses are ranked PENDING_SEND < UNKNOWN < NEW < PENDING_CANCEL < PARTIALLY_FILLED < final;
  a lower-ranked observation never lowers the status (a late NEW after FILLED is ignored);
* cumulative executed quantity and quote quantity only ever take the maximum seen;
* the first exchange-final status (FILLED, CANCELED, REJECTED, EXPIRED, EXPIRED_IN_MATCH)
  is final; later different statuses are ignored (only its cumulative figures can still grow);
* NEW with a non-zero executed quantity is shown as PARTIALLY_FILLED, so the result does not
  depend on which of the two facts arrived first.

Hence for any valid event sequence of one order, every permutation and duplication ends in
the same state as the ordered sequence.

Local observations, which come from our own send attempt rather than the exchange:

* ``SendUnknown`` (5xx, -1007, timeout, reset): PENDING_SEND -> UNKNOWN. Ignored once the
  exchange has told us anything (the stream event can beat the HTTP response).
* ``SendRejected`` (a definitive 4xx such as -2010/-1013): PENDING_SEND/UNKNOWN -> REJECTED,
  final like the exchange's own REJECTED (a definitive refusal means nothing was placed).
* ``NotFound`` (-2013 when querying our client id): PENDING_SEND/UNKNOWN -> NEVER_PLACED.
  NEVER_PLACED is our inference, not the exchange's word: if the exchange later shows the
  order after all, that exchange observation wins (we must never lose a live order or fill).
  A NotFound after the order was seen on the exchange is ignored.

Deciding *when* a -2013 is trustworthy (the order may still be in flight) is the order
manager's policy, not this module's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from decimal import Decimal
from enum import StrEnum

from executor.core.money import ZERO

__all__ = [
    "EXCHANGE_FINAL",
    "FINAL",
    "NotFound",
    "Observation",
    "OrderState",
    "OrderStatus",
    "SendRejected",
    "SendUnknown",
    "Side",
    "apply",
    "observe",
    "parse_side",
    "parse_status",
]


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderStatus(StrEnum):
    PENDING_SEND = "PENDING_SEND"  # recorded locally, not yet (known to be) sent
    UNKNOWN = "UNKNOWN"  # sent, outcome unknown (5xx, -1007, timeout, reset)
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"  # documented by Binance as unused; ranked as open
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"
    NEVER_PLACED = "NEVER_PLACED"  # local: the exchange does not know our client id (-2013)


EXCHANGE_FINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED,
     OrderStatus.EXPIRED_IN_MATCH}
)
FINAL = EXCHANGE_FINAL | {OrderStatus.NEVER_PLACED}
OPEN = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_CANCEL})
_LOCAL_UNRESOLVED = frozenset({OrderStatus.PENDING_SEND, OrderStatus.UNKNOWN})
# What an Observation may carry: the exchange's statuses, not our local ones.
_OBSERVABLE = frozenset(OrderStatus) - _LOCAL_UNRESOLVED - {OrderStatus.NEVER_PLACED}

_RANK = {
    OrderStatus.PENDING_SEND: 0,
    OrderStatus.UNKNOWN: 1,
    OrderStatus.NEVER_PLACED: 1,  # below anything the exchange says: exchange facts win
    OrderStatus.NEW: 2,
    OrderStatus.PENDING_CANCEL: 3,
    OrderStatus.PARTIALLY_FILLED: 4,
}
_FINAL_RANK = 5

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


def parse_status(value: object, field: str = "status") -> OrderStatus:
    """Map an exchange status string to ``OrderStatus``; ``ValueError`` naming the field otherwise."""
    if isinstance(value, str) and value in _EXCHANGE_STATUS:
        return _EXCHANGE_STATUS[value]
    raise ValueError(f"{field}: unknown order status {value!r}")


def parse_side(value: object, field: str = "side") -> Side:
    if value == "BUY":
        return Side.BUY
    if value == "SELL":
        return Side.SELL
    raise ValueError(f"{field}: expected BUY or SELL, got {value!r}")


def _rank(status: OrderStatus) -> int:
    return _FINAL_RANK if status in EXCHANGE_FINAL else _RANK[status]


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
        if status in _LOCAL_UNRESOLVED or status is OrderStatus.NEVER_PLACED:
            raise ValueError(f"status: {status} is local, not an exchange status")


@dataclass(frozen=True)
class SendUnknown:
    """Our send's outcome is unknown (5xx, -1007, timeout, connection reset)."""

    reason: str = ""


@dataclass(frozen=True)
class SendRejected:
    """The exchange definitively refused our send (e.g. -2010, -1013)."""

    reason: str = ""


@dataclass(frozen=True)
class NotFound:
    """A query by our client order id answered -2013 (no such order)."""


Event = Observation | SendUnknown | SendRejected | NotFound


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
            object.__setattr__(self, "status", OrderStatus(self.status))

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    @property
    def is_open(self) -> bool:
        """Working on the exchange (may still fill)."""
        return self.status in OPEN

    @property
    def is_unresolved(self) -> bool:
        """PENDING_SEND or UNKNOWN: must be resolved by querying the client order id."""
        return self.status in _LOCAL_UNRESOLVED

    @property
    def avg_price(self) -> Decimal | None:
        return self.cum_quote / self.executed_qty if self.executed_qty > 0 else None


def apply(state: OrderState, event: Event) -> OrderState:
    """Return the state after ``event``; never goes backwards (see module docstring)."""
    if isinstance(event, Observation):
        return _observe(state, event)
    if isinstance(event, SendUnknown):
        if state.status is OrderStatus.PENDING_SEND:
            return replace(state, status=OrderStatus.UNKNOWN)
        return state
    if isinstance(event, SendRejected):
        if state.status in _LOCAL_UNRESOLVED:
            return replace(state, status=OrderStatus.REJECTED)
        return state
    if isinstance(event, NotFound):
        if state.status in _LOCAL_UNRESOLVED:
            return replace(state, status=OrderStatus.NEVER_PLACED)
        return state
    raise TypeError(f"not an order event: {event!r}")


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
    status = cur if cur in EXCHANGE_FINAL or _rank(obs_status) <= _rank(cur) else obs_status
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
