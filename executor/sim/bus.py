"""Delivery of user-data events from the exchange core to whoever listens for an account.

The matching engine publishes Binance-shaped event dicts (executionReport,
outboundAccountPosition, balanceUpdate, ORDER_TRADE_UPDATE, ACCOUNT_UPDATE) per account;
the WS API subscriptions and futures listenKey sockets subscribe here. Fault injection
(drop, duplicate, reorder, delay, silent stall) hooks in at ``publish`` so every
transport sees the same misbehaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Listener = Callable[[dict[str, Any]], None]


class UserEventBus:
    """Per-account, per-channel fan-out. Channels: "spot" and "futures"."""

    def __init__(self) -> None:
        self._listeners: dict[tuple[str, str], list[Listener]] = {}
        # Set by the fault injector: given (account, channel, event) returns the list of
        # events to actually deliver now (empty to drop/hold, two to duplicate...).
        self.filter: Callable[[str, str, dict[str, Any]], list[dict[str, Any]]] | None = None

    def subscribe(self, account_id: str, channel: str, listener: Listener) -> Callable[[], None]:
        key = (account_id, channel)
        self._listeners.setdefault(key, []).append(listener)

        def unsubscribe() -> None:
            listeners = self._listeners.get(key, [])
            if listener in listeners:
                listeners.remove(listener)

        return unsubscribe

    def publish(self, account_id: str, channel: str, event: dict[str, Any]) -> None:
        events = [event] if self.filter is None else self.filter(account_id, channel, event)
        for ev in events:
            self.deliver(account_id, channel, ev)

    def deliver(self, account_id: str, channel: str, event: dict[str, Any]) -> None:
        """Hand ``event`` to current listeners, bypassing the fault filter."""
        for listener in list(self._listeners.get((account_id, channel), ())):
            listener(event)
