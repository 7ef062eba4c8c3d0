"""What strategies return, and the fully checked order request built from it.

Strategies do no I/O: they return intents.

* ``Place``: put a new order; ``qty``/``price`` as the strategy wants them (unrounded is fine).
  ``post_only`` makes a LIMIT order a LIMIT_MAKER (rejected rather than taking liquidity).
  ``venue="futures"`` sends it to the symbol's USD-M perpetual instead of spot.
* ``Cancel``: cancel one of our orders by its client order id.
* ``Replace``: cancel ``client_order_id`` and place ``place`` instead. The order manager
  cancels first and places only once the cancel is confirmed, so both are never live at
  once; if the old order filled meanwhile, the new one is not placed.

``build_order_request(place, rules, client_order_id, ...)`` rounds (price toward the
passive side, quantity down), checks every symbol filter and returns an ``OrderRequest``
whose ``params()`` are the exact wire parameters — or raises ``OrderRejected`` listing the
violations. Nothing is sent from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from executor.core.filters import SymbolRules, Violation
from executor.core.ids import BINANCE_CLIENT_ID_RE
from executor.core.money import format_decimal, require_decimal
from executor.core.orders import Side

__all__ = [
    "Cancel",
    "Intent",
    "OrderRejected",
    "OrderRequest",
    "OrderType",
    "Place",
    "Replace",
    "TimeInForce",
    "build_order_request",
]


VENUES = ("spot", "futures")


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    LIMIT_MAKER = "LIMIT_MAKER"
    MARKET = "MARKET"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


@dataclass(frozen=True)
class Place:
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None = None
    tif: TimeInForce | None = None  # LIMIT only; default GTC
    post_only: bool = False  # LIMIT only; sent as LIMIT_MAKER
    reason: str = ""  # the strategy's explanation, recorded with the order
    venue: str = "spot"  # "spot", or "futures": the USD-M perpetual of ``symbol`` (post_only = GTX)

    def __post_init__(self) -> None:
        if self.venue not in VENUES:
            raise ValueError(f"venue: must be one of {', '.join(VENUES)}, got {self.venue!r}")
        object.__setattr__(self, "side", Side(self.side))
        object.__setattr__(self, "type", OrderType(self.type))
        if self.tif is not None:
            object.__setattr__(self, "tif", TimeInForce(self.tif))
        require_decimal(self.qty, "qty")
        if self.qty <= 0:
            raise ValueError(f"qty: must be positive, got {self.qty}")
        if self.type is OrderType.MARKET:
            if self.price is not None or self.tif is not None or self.post_only:
                raise ValueError("MARKET order takes no price, tif or post_only")
            return
        if require_decimal(self.price, "price") <= 0:
            raise ValueError(f"price: must be positive, got {self.price}")
        if self.type is OrderType.LIMIT_MAKER and self.tif is not None:
            raise ValueError("LIMIT_MAKER takes no tif")
        if self.post_only and self.tif not in (None, TimeInForce.GTC):
            raise ValueError(f"post_only cannot be combined with tif {self.tif}")

    @property
    def wire_type(self) -> OrderType:
        return OrderType.LIMIT_MAKER if self.post_only else self.type


@dataclass(frozen=True)
class Cancel:
    client_order_id: str
    reason: str = ""


@dataclass(frozen=True)
class Replace:
    client_order_id: str  # the order to cancel
    place: Place  # what to put in its place
    reason: str = ""


Intent = Place | Cancel | Replace


class OrderRejected(ValueError):
    """A Place that cannot become a valid order; ``violations`` says why (Binance filter names)."""

    def __init__(self, place: Place, violations: list[Violation]) -> None:
        self.place = place
        self.violations = violations
        super().__init__(f"{place.symbol} {place.side} {place.type}: " + "; ".join(map(str, violations)))


@dataclass(frozen=True)
class OrderRequest:
    """A rounded, validated order with our client id; ``params()`` is what goes on the wire."""

    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None
    time_in_force: TimeInForce | None
    reason: str = ""
    requested_qty: Decimal | None = None  # before rounding, for the record
    requested_price: Decimal | None = None

    def params(self) -> dict[str, str]:
        """Keyword arguments for ``POST /api/v3/order`` (python-binance ``create_order``)."""
        out = {"symbol": self.symbol, "side": self.side.value, "type": self.type.value,
               "quantity": format_decimal(self.quantity), "newClientOrderId": self.client_order_id}
        if self.price is not None:
            out["price"] = format_decimal(self.price)
        if self.time_in_force is not None:
            out["timeInForce"] = self.time_in_force.value
        return out


def build_order_request(place: Place, rules: SymbolRules, client_order_id: str,
                        ref_price: Decimal | None = None, open_orders: int | None = None) -> OrderRequest:
    """Round ``place`` to ``rules`` and validate it; ``OrderRejected`` lists every violation.

    ``ref_price`` (e.g. the mid) lets MARKET notional and PERCENT_PRICE_BY_SIDE be checked;
    ``open_orders`` (ours on this symbol) checks MAX_NUM_ORDERS.
    """
    if place.symbol != rules.symbol:
        raise ValueError(f"rules are for {rules.symbol}, order is for {place.symbol}")
    if not isinstance(client_order_id, str) or not BINANCE_CLIENT_ID_RE.fullmatch(client_order_id):
        raise ValueError(f"client order id {client_order_id!r} breaks Binance's ^[a-zA-Z0-9-_]{{1,36}}$")
    wire_type = place.wire_type
    market = wire_type is OrderType.MARKET
    price = None if place.price is None else rules.round_price(place.price, place.side)
    qty = rules.round_qty(place.qty, market=market)
    violations = rules.check(place.side, wire_type.value, price, qty, ref_price=ref_price,
                             open_orders=open_orders)
    if violations:
        raise OrderRejected(place, violations)
    tif = None if wire_type is not OrderType.LIMIT else place.tif or TimeInForce.GTC
    return OrderRequest(client_order_id, place.symbol, place.side, wire_type, qty, price, tif,
                        place.reason, requested_qty=place.qty, requested_price=place.price)
