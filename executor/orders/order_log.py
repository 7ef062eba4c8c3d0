"""The order journal in the log: one INFO line per order sent, acknowledged, filled or ended.

``OrderLog`` sees every order of ours twice over: ``sent(order)`` when the request leaves
(the order manager's sending hook) and ``changed(order)`` after every change the tracker
applies (status, filled quantity). It remembers, per working order, what it already
logged, so a line is written once per event whichever path (order response, user stream,
gap fill) brought it. Every line names the client id and carries the strategy's reason,
so ``grep <client id>`` over a log tells an order's whole story. Nothing here changes
state or sends anything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from executor.core.money import ZERO, format_decimal
from executor.core.orders import FINAL, OrderStatus

__all__ = ["OrderLog"]

log = logging.getLogger("executor.orders")

# Not (yet) accepted by the exchange: no "acknowledged" line for these.
_NOT_ACKNOWLEDGED = (OrderStatus.PENDING_SEND, OrderStatus.UNKNOWN, OrderStatus.REJECTED,
                     OrderStatus.NOT_PLACED)
_ENDINGS = {OrderStatus.CANCELED: "cancelled", OrderStatus.EXPIRED: "expired",
            OrderStatus.EXPIRED_IN_MATCH: "expired in match", OrderStatus.REJECTED: "rejected",
            OrderStatus.NOT_PLACED: "never placed"}


@dataclass
class _Seen:
    acknowledged: bool = False
    filled: Decimal = ZERO


def _num(value: Decimal | None) -> str:
    return "-" if value is None else format_decimal(value)


def _why(order: Any) -> str:
    reason = getattr(order, "reason", "") or ""
    return f" -- {reason}" if reason else ""


class OrderLog:
    """Writes the order lines; ``seen`` is bounded by our working orders (dropped when final)."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self.log = logger
        self._seen: dict[str, _Seen] = {}

    def sent(self, order: Any) -> None:
        """The request for ``order`` (a ``TrackedOrder``) is leaving for the exchange: its
        placement the first time, a cancel of it after that (the same hook arms both)."""
        if order.client_id in self._seen:
            self.log.info("order %s: cancel sent (%s %s)", order.client_id, order.symbol, order.status.value)
            return
        self._seen[order.client_id] = _Seen()
        # This runs on the order's send path, before the request is written: the line's
        # arguments (two decimals formatted) are built only if the line will be written.
        if self.log.isEnabledFor(logging.INFO):
            self.log.info("order %s sent: %s %s %s %s @ %s%s", order.client_id, order.side.value,
                          _num(order.qty), order.symbol, order.order_type, _num(order.price), _why(order))

    def changed(self, order: Any) -> None:
        """After the tracker changed ``order``: log what is new since the last line
        (acknowledged on the book, filled more, ended)."""
        seen = self._seen.setdefault(order.client_id, _Seen())
        status: OrderStatus = order.status
        if not seen.acknowledged and status not in _NOT_ACKNOWLEDGED:
            seen.acknowledged = True
            # An order that is filled or ended in its first answer (an IOC) gets that line
            # only: it says the exchange took it.
            if status in (OrderStatus.NEW, OrderStatus.PENDING_CANCEL) and order.filled <= seen.filled:
                exchange_id = getattr(order, "exchange_id", None)
                ids = f" (exchange id {exchange_id})" if exchange_id is not None else ""
                self.log.info("order %s acknowledged: %s %s on the book%s%s", order.client_id, order.symbol,
                              status.value, ids, _why(order))
        if order.filled > seen.filled:
            delta = order.filled - seen.filled
            seen.filled = order.filled
            avg = order.cum_quote / order.filled if order.filled > 0 and order.cum_quote > 0 else None
            self.log.info("order %s filled %s %s %s (%s of %s, average price %s, %s)%s", order.client_id,
                          order.side.value, _num(delta), order.symbol, _num(order.filled), _num(order.qty),
                          _num(avg.quantize(Decimal("0.00000001")) if avg is not None else None),
                          status.value, _why(order))
        if status in FINAL:
            self._seen.pop(order.client_id, None)
            ending = _ENDINGS.get(status)
            if ending is not None:
                note = getattr(order, "note", "") or ""
                self.log.info("order %s %s: %s, filled %s of %s%s%s", order.client_id, ending, order.symbol,
                              _num(order.filled), _num(order.qty), f" ({note})" if note else "", _why(order))
