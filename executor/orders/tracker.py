"""The in-memory view of our own orders and position, for the strategy and the risk checks.

The ledger is the truth; this is its fast, synchronous mirror for one run. An order enters
when the order manager accepts an intent (status PENDING_SEND, before any I/O, so the
strategy sees it before its next handler call) and moves forward only on facts: the
reconciler's ``OrderUpdate`` after each commit, and the manager's local outcomes (sent,
rejected, unknown, not found, not placed). Statuses and the one transition rule are the
core state machine's (``executor.core.orders``); a status never moves backwards.

The position per base asset is derived from the ledger (``executor.core.positions``: the
fills of our own orders, net of commissions charged in the base asset). ``load`` reads it
from the ledger at start and after every gap fill (the reconciler runs it under its apply
lock, so no commit interleaves); between loads each new fill the reconciler reports moves
it by the same ``fill_delta``, counted once per (symbol, tradeId). ``load`` also takes the
free balance per asset the exchange last reported (the ledger's ``balances``), which the
reconciler then keeps current (``set_balances``), for the sell checks.

Final orders are kept for a while (the status display, late updates) and then pruned, so
memory does not grow with the run's length.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from executor.core.bounded import BoundedSet
from executor.core.intents import OrderRequest
from executor.core.money import ZERO
from executor.core.orders import FINAL, UNRESOLVED, OrderStatus, Side, may_move, stored_status
from executor.core.positions import PositionFill, fill_delta, positions
from executor.core.reports import Fill, ledger_symbol
from executor.strategy.base import OrderView

if TYPE_CHECKING:
    from executor.persistence.records import PositionRow

__all__ = ["OrderTracker", "TrackedOrder"]

log = logging.getLogger(__name__)

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
        """Maybe on the exchange, maybe not (PENDING_SEND, SENT, UNKNOWN, NOT_FOUND)."""
        return self.status in UNRESOLVED

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
        self._free: dict[str, Decimal] = {}  # free balance per asset, as the exchange last reported it
        self.positions_loaded = False
        self._fill_watermark = 0  # the highest fills row id a load has read
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

    def free_balance(self, asset: str) -> Decimal | None:
        """The free balance of ``asset`` the exchange last reported (None: never reported)."""
        return self._free.get(asset)

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
        new = stored_status(status)
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
        if new is not order.status and may_move(order.status, new):
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

    def _base_or_none(self, symbol: str) -> str | None:
        try:
            return self._base(symbol)
        except KeyError:
            return None  # not a traded symbol: its fills are not part of a tracked position

    def add_fills(self, fills: Iterable[Fill]) -> int:
        """Count our fills into the position, once per (symbol, tradeId); returns how many were new."""
        n = 0
        for f in fills:
            # Keyed as the ledger keys it (a USD-M stream fill names the wire symbol): a
            # ledger reload then knows it is counted.
            key = (ledger_symbol(f.symbol, f.venue), f.trade_id)
            if key in self._counted:
                continue
            self._counted.add(key)
            n += 1
            asset = self._base_or_none(f.symbol)
            if asset is None:
                continue
            delta = fill_delta(f.side, f.qty, f.commission, f.commission_asset, asset)
            self._inventory[asset] = self._inventory.get(asset, ZERO) + delta
            self.stats.fills += 1
            self.stats.filled_quote += f.quote_qty
        return n

    def replace_positions(self, fills: Iterable[PositionFill], keys: Iterable[tuple[str, int]]) -> None:
        """The position as the ledger derives it from every fill of our orders (``keys``
        are those fills' (symbol, tradeId): counted, so a late report of one adds nothing)."""
        self._inventory = positions(fills, self._base_or_none)
        self._counted.update(keys)
        self.positions_loaded = True

    def set_balances(self, free: Mapping[str, Decimal]) -> None:
        """Free balances the exchange reported (an account update or a REST snapshot)."""
        self._free.update(free)

    async def load(self, store: Any, *, symbol_prefix: str | None = None,
                   exchange_closes: tuple[str, ...] = ()) -> list[PositionRow]:
        """Position and free balances from the ledger (``store.own_fills``,
        ``store.get_balances``). The first load derives the position from every fill of our
        orders; later ones add only the fills stored since (by fills row id) that were not
        counted yet -- e.g. those a gap fill stored from myTrades, which no order update
        carries -- so a long ledger is not re-read every gap fill. Run it where no commit
        can interleave (the reconciler's apply lock), or a fill committed meanwhile could be
        counted twice or not at all. ``symbol_prefix`` and ``exchange_closes`` are handed
        to ``own_fills`` (the futures tracker: ``UM:`` rows, with the exchange's closing
        orders' fills). Returns the rows a later load newly counted (none on the first)."""
        first = not self.positions_loaded
        rows = await store.own_fills(after_id=None if first else self._fill_watermark,
                                     symbol_prefix=symbol_prefix, exchange_closes=exchange_closes)
        balances = await store.get_balances()
        before = dict(self._inventory)
        fresh: list[PositionRow] = []
        if first:
            self.replace_positions(rows, [r.key for r in rows])
        else:
            fresh = [r for r in rows if r.key not in self._counted]
            for asset, delta in positions(fresh, self._base_or_none).items():
                self._inventory[asset] = self._inventory.get(asset, ZERO) + delta
            self._counted.update(r.key for r in fresh)
        self._fill_watermark = max((r.fill_id for r in rows), default=self._fill_watermark)
        self._free = {asset: b.free for asset, b in balances.items()}
        moved = {a: q for a, q in self._inventory.items() if before.get(a, ZERO) != q}
        if moved:
            log.info("position from the ledger (%d fills of our orders %s): %s", len(rows),
                     "in all" if first else "stored since the last load",
                     ", ".join(f"{a} {q}" for a, q in sorted(moved.items())))
        return fresh

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
