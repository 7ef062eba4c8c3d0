"""The in-memory view of our own orders and inventory, for the strategy and the risk checks.

The ledger is the truth; this is its fast, synchronous mirror for one run. An order enters
when the order manager accepts an intent (status PENDING_SEND, before any I/O, so the
strategy sees it before its next handler call) and moves forward only on facts: the
reconciler's ``OrderUpdate`` after each commit, and the manager's local outcomes (sent,
rejected, unknown, never placed). Like the ledger, a status never moves backwards.

Inventory is the net of our own fills (buys add, sells subtract, per base asset), counted
once per (symbol, tradeId): the reconciler reports each fill in the commit that first
stored it, and the tracker also keeps the keys it has counted so a replay cannot count twice.

Final orders are kept for a while (the status display, late updates) and then pruned, so
memory does not grow with the run's length.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from executor.core.bounded import BoundedSet
from executor.core.events import Fill
from executor.core.intents import OrderRequest
from executor.core.money import ZERO
from executor.core.orders import FINAL, OrderStatus, Side
from executor.strategy.base import OrderView

__all__ = ["OrderTracker", "TrackedOrder", "core_status"]

# Ledger status text -> the core vocabulary the strategy sees. SENT (on the wire, no answer
# yet) is still "not known to be placed"; NOT_PLACED is the ledger's name for NEVER_PLACED.
_LEDGER_TO_CORE = {"SENT": OrderStatus.PENDING_SEND, "NOT_PLACED": OrderStatus.NEVER_PLACED,
                   "PENDING_NEW": OrderStatus.NEW}
_RANK = {OrderStatus.PENDING_SEND: 0, OrderStatus.UNKNOWN: 1, OrderStatus.NEVER_PLACED: 1,
         OrderStatus.NEW: 2, OrderStatus.PENDING_CANCEL: 3, OrderStatus.PARTIALLY_FILLED: 4}
_FINAL_RANK = 5
_EXCHANGE_FINAL = FINAL - {OrderStatus.NEVER_PLACED}


def core_status(status: str | OrderStatus) -> OrderStatus:
    """Map a ledger status (or a core one) to ``OrderStatus``."""
    if isinstance(status, OrderStatus):
        return status
    return _LEDGER_TO_CORE.get(status) or OrderStatus(status)


def _rank(status: OrderStatus) -> int:
    return _FINAL_RANK if status in _EXCHANGE_FINAL else _RANK[status]


@dataclass
class TrackedOrder:
    """One of our orders, as the bot currently believes it to be."""

    client_id: str
    symbol: str
    side: Side
    order_type: str
    price: Decimal
    qty: Decimal
    placed_at: float
    reason: str = ""
    status: OrderStatus = OrderStatus.PENDING_SEND
    filled: Decimal = ZERO
    cum_quote: Decimal = ZERO
    exchange_id: int | None = None
    cancel_requested: bool = False
    final_at: float | None = None
    note: str = ""  # last local outcome (reject reason, unknown reason), for status and logs

    @property
    def working(self) -> bool:
        return self.status not in FINAL

    @property
    def unresolved(self) -> bool:
        return self.status in (OrderStatus.PENDING_SEND, OrderStatus.UNKNOWN)

    def view(self) -> OrderView:
        return OrderView(client_id=self.client_id, symbol=self.symbol, side=self.side, price=self.price,
                         qty=self.qty, filled=self.filled, status=self.status, placed_at=self.placed_at,
                         order_type=self.order_type, cancel_requested=self.cancel_requested,
                         reason=self.reason)


COUNTED_MEMORY = 50_000  # fills remembered as counted into inventory


@dataclass
class TrackerStats:
    orders: int = 0
    fills: int = 0
    filled_quote: Decimal = ZERO
    by_final_status: dict[str, int] = field(default_factory=dict)


class OrderTracker:
    """Our orders of this run by client id, plus inventory per base asset.

    ``base_asset(symbol)`` maps a symbol to its base asset (from the trading rules).
    ``on_change(order)`` is called synchronously after every change of an order.
    """

    def __init__(self, base_asset: Callable[[str], str] | Mapping[str, str], *,
                 clock: Callable[[], float] = time.monotonic, keep_final_s: float = 120.0,
                 max_final: int = 2000) -> None:
        self._base = base_asset if callable(base_asset) else base_asset.__getitem__
        self._clock = clock
        self.keep_final_s = keep_final_s
        self.max_final = max_final
        self._orders: dict[str, TrackedOrder] = {}
        # Working orders only: every decision lists them, and walking the kept final orders
        # (up to ``max_final``) on each tick was the largest part of tick-to-order latency.
        self._working: dict[str, TrackedOrder] = {}
        self._final: OrderedDict[str, float] = OrderedDict()  # client id -> when it became final
        self._inventory: dict[str, Decimal] = {}
        # Fills reach the tracker only once the ledger stored them new (the ledger keys them
        # (symbol, tradeId)); this is a second guard for a short window, so the oldest go.
        self._counted: BoundedSet[tuple[str, int]] = BoundedSet(COUNTED_MEMORY)
        self.stats = TrackerStats()
        self.on_change: Callable[[TrackedOrder], None] | None = None

    # -- reading -------------------------------------------------------------------------

    def get(self, client_id: str) -> TrackedOrder | None:
        return self._orders.get(client_id)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._orders

    def __len__(self) -> int:
        return len(self._orders)

    def all(self) -> list[TrackedOrder]:
        return list(self._orders.values())

    def working(self, symbol: str | None = None) -> list[TrackedOrder]:
        if symbol is None:
            return list(self._working.values())
        return [o for o in self._working.values() if o.symbol == symbol]

    def views(self) -> list[OrderView]:
        """Every working order as an ``OrderView``."""
        return [o.view() for o in self._working.values()]

    def _index(self, order: TrackedOrder) -> None:
        if order.working:
            self._working[order.client_id] = order
        else:
            self._working.pop(order.client_id, None)

    def inventory(self, asset: str) -> Decimal:
        return self._inventory.get(asset, ZERO)

    def inventories(self) -> dict[str, Decimal]:
        return dict(self._inventory)

    # -- writing -------------------------------------------------------------------------

    def add(self, request: OrderRequest, placed_at: float | None = None) -> TrackedOrder:
        """A new order the manager accepted (PENDING_SEND). A repeated id is a bug: refused."""
        if request.client_order_id in self._orders:
            raise ValueError(f"order {request.client_order_id} is already tracked")
        order = TrackedOrder(
            client_id=request.client_order_id, symbol=request.symbol, side=request.side,
            order_type=request.type.value, price=request.price if request.price is not None else ZERO,
            qty=request.quantity, placed_at=self._clock() if placed_at is None else placed_at,
            reason=request.reason)
        self._orders[order.client_id] = order
        self._index(order)
        self.stats.orders += 1
        return order

    def adopt(self, client_id: str, symbol: str, side: Side | str, order_type: str, price: Decimal,
              qty: Decimal, status: str | OrderStatus, filled: Decimal = ZERO) -> TrackedOrder:
        """An order of ours this run did not place (an earlier run's, found open at start)."""
        order = self._orders.get(client_id)
        if order is None:
            order = TrackedOrder(client_id=client_id, symbol=symbol, side=Side(side), order_type=order_type,
                                 price=price, qty=qty, placed_at=self._clock(), reason="adopted at start")
            self._orders[client_id] = order
            self._index(order)
        self.set_status(client_id, status, filled=filled)
        return order

    def set_status(self, client_id: str, status: str | OrderStatus, *, filled: Decimal | None = None,
                   cum_quote: Decimal | None = None, exchange_id: int | None = None,
                   note: str | None = None) -> bool:
        """Move an order forward (never back); True if anything changed."""
        order = self._orders.get(client_id)
        if order is None:
            return False
        new = core_status(status)
        changed = False
        if exchange_id is not None and order.exchange_id is None:
            order.exchange_id = exchange_id
            changed = True
        if filled is not None and filled > order.filled:
            order.filled = filled
            changed = True
        if cum_quote is not None and cum_quote > order.cum_quote:
            order.cum_quote = cum_quote
            changed = True
        if new is not order.status and self._may_move(order.status, new):
            order.status = new
            changed = True
        if order.status is OrderStatus.NEW and order.filled > 0:
            order.status = OrderStatus.PARTIALLY_FILLED
        if note:
            order.note = note
        self._index(order)
        if changed:
            if not order.working and order.final_at is None:
                order.final_at = self._clock()
                self._final[client_id] = order.final_at
                name = order.status.value
                self.stats.by_final_status[name] = self.stats.by_final_status.get(name, 0) + 1
            if self.on_change is not None:
                self.on_change(order)
        return changed

    @staticmethod
    def _may_move(old: OrderStatus, new: OrderStatus) -> bool:
        if old in _EXCHANGE_FINAL:
            return False
        if old is OrderStatus.NEVER_PLACED:
            # Our inference; the exchange's word overrules it (never lose a live order).
            return _rank(new) >= _RANK[OrderStatus.NEW]
        if new is OrderStatus.NEVER_PLACED:
            return old in (OrderStatus.PENDING_SEND, OrderStatus.UNKNOWN)
        return _rank(new) > _rank(old)

    def apply_update(self, update: Any) -> None:
        """A reconciler ``OrderUpdate`` (one of our orders changed, maybe with new fills)."""
        self.add_fills(update.fills)
        if update.client_order_id in self._orders:
            self.set_status(update.client_order_id, update.status, filled=update.executed_qty,
                            cum_quote=update.cum_quote_qty, exchange_id=update.exchange_order_id)

    def set_cancel_requested(self, client_id: str, value: bool = True) -> None:
        order = self._orders.get(client_id)
        if order is not None and order.cancel_requested != value:
            order.cancel_requested = value

    def add_fills(self, fills: Iterable[Fill]) -> int:
        """Count our fills into inventory, once per (symbol, tradeId); returns how many were new."""
        n = 0
        for f in fills:
            key = (f.symbol, f.trade_id)
            if key in self._counted:
                continue
            self._counted.add(key)
            n += 1
            try:
                asset = self._base(f.symbol)
            except KeyError:
                continue
            delta = f.qty if f.side is Side.BUY else -f.qty
            self._inventory[asset] = self._inventory.get(asset, ZERO) + delta
            self.stats.fills += 1
            self.stats.filled_quote += f.quote_qty
        return n

    def seed_inventory(self, inventory: Mapping[str, Decimal],
                       counted: Iterable[tuple[str, int]] = ()) -> None:
        """Start from the position earlier runs built (their fills are already counted)."""
        for asset, qty in inventory.items():
            self._inventory[asset] = self._inventory.get(asset, ZERO) + qty
        self._counted.update(counted)

    def prune(self, now: float | None = None) -> int:
        """Forget final orders older than ``keep_final_s`` (and beyond ``max_final``)."""
        now = self._clock() if now is None else now
        dropped = 0
        while self._final:
            cid, at = next(iter(self._final.items()))
            if now - at < self.keep_final_s and len(self._final) <= self.max_final:
                break
            self._final.popitem(last=False)
            self._orders.pop(cid, None)
            self._working.pop(cid, None)
            dropped += 1
        return dropped

    def snapshot(self, client_id: str) -> TrackedOrder | None:
        order = self._orders.get(client_id)
        return None if order is None else replace(order)
