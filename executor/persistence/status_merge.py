"""The forward-only order status merge: ``_OrderState`` (an order's mutable columns) and
``merge_status``, which decides what one status observation changes. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from executor.core.orders import FINAL_STATUSES, OrderStatus, is_exchange_status, may_move
from executor.persistence.store_records import StatusChange, StatusUpdateIn, _check_status, _dec


@dataclass
class _OrderState:
    id: int
    client_order_id: str
    symbol: str
    side: str
    exchange_order_id: int | None
    status: str
    status_source: str
    executed_qty: Decimal
    cum_quote_qty: Decimal
    acked_ms: int | None
    exchange_update_ms: int | None
    resolved_from_unknown: bool
    reject_reason: str | None
    updated_ms: int
    dirty: bool = False


def merge_status(cur: _OrderState, upd: StatusUpdateIn, at_ms: int) -> StatusChange:
    """Apply ``upd`` to ``cur`` in place, never moving backwards; return what happened.

    Rules: the cumulative executed quantity is the maximum ever seen, and the quote
    quantity follows it; the status moves only as the core state machine's ``may_move``
    allows (its rank never decreases; an exchange-final status is kept; NOT_FOUND and
    NOT_PLACED, our own inferences, rank below the exchange's statuses so the exchange may
    overrule them); a differing exchange order id is a conflict and is not written.
    """
    _check_status(upd.status)
    prev_status = cur.status
    conflict = None
    stale = False
    changed = False

    if upd.exchange_order_id is not None:
        if cur.exchange_order_id is None:
            cur.exchange_order_id = upd.exchange_order_id
            changed = True
        elif cur.exchange_order_id != upd.exchange_order_id:
            conflict = (
                f"exchange order id {upd.exchange_order_id} from {upd.source} differs from "
                f"stored {cur.exchange_order_id}"
            )
            return StatusChange(
                cur.client_order_id,
                True,
                False,
                prev_status,
                cur.status,
                cur.executed_qty,
                cur.cum_quote_qty,
                False,
                False,
                conflict,
            )

    new_qty = _dec(upd.executed_qty)
    new_quote = _dec(upd.cum_quote_qty)
    if new_qty is not None:
        if new_qty > cur.executed_qty:
            cur.executed_qty = new_qty
            if new_quote is not None:
                cur.cum_quote_qty = new_quote
            changed = True
        elif new_qty < cur.executed_qty:
            stale = True
        elif new_quote is not None and new_quote > cur.cum_quote_qty:
            cur.cum_quote_qty = new_quote
            changed = True

    exchange_status = is_exchange_status(upd.status)
    if upd.status != cur.status:
        if may_move(cur.status, upd.status):
            cur.status = upd.status
            changed = True
        elif cur.status in FINAL_STATUSES and upd.status in FINAL_STATUSES:
            conflict = f"final status {cur.status} kept; {upd.source} reported {upd.status}"
        else:
            stale = True

    resolved = False
    if prev_status == OrderStatus.UNKNOWN and cur.status != OrderStatus.UNKNOWN:
        cur.resolved_from_unknown = True
        resolved = True
    if exchange_status and cur.acked_ms is None:
        cur.acked_ms = at_ms
        changed = True
    if upd.event_ms is not None and (cur.exchange_update_ms is None or upd.event_ms > cur.exchange_update_ms):
        cur.exchange_update_ms = upd.event_ms
        changed = True
    if upd.reject_reason and upd.reject_reason != cur.reject_reason and cur.status == upd.status:
        cur.reject_reason = upd.reject_reason
        changed = True
    if changed:
        cur.status_source = upd.source
        cur.updated_ms = at_ms
        cur.dirty = True
    return StatusChange(
        cur.client_order_id,
        True,
        changed,
        prev_status,
        cur.status,
        cur.executed_qty,
        cur.cum_quote_qty,
        stale and not changed,
        resolved,
        conflict,
    )
