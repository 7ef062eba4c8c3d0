"""The fault switchboard: misbehaviour the embedded exchange performs on demand.

The exchange's transports consult this object at fixed points (order placement, every
REST response, event publication, open connections) so a test can make the next order
answer 503 after it was placed, hold a response past the client's timeout, answer a
burst of 429s, or cut every WebSocket of one kind. Everything here is plain state: the
admin routes and tests flip it, the transports obey it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OrderFailure:
    """How the next order request fails. ``placed``: the order still reaches the book."""

    http_status: int = 503          # 503 (or any 5xx), or 400 with code -1007
    code: int | None = None         # e.g. -1007 TIMEOUT; None means a bare 5xx body
    placed: bool = True


@dataclass
class ConnectionRegistry:
    """Every open WebSocket, by kind ("market", "ws_api", "futures_market", "private")."""

    _closers: dict[str, dict[int, Callable[[], Awaitable[None]]]] = field(default_factory=dict)

    def add(self, kind: str, conn_id: int, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.setdefault(kind, {})[conn_id] = closer

    def remove(self, kind: str, conn_id: int) -> None:
        self._closers.get(kind, {}).pop(conn_id, None)

    def count(self, kind: str) -> int:
        return len(self._closers.get(kind, {}))

    async def drop(self, kind: str | None = None) -> int:
        """Close every connection of ``kind`` (all kinds if None); returns how many."""
        kinds = [kind] if kind else list(self._closers)
        closed = 0
        for k in kinds:
            for closer in list(self._closers.get(k, {}).values()):
                await closer()
                closed += 1
        return closed


@dataclass
class Faults:
    order_failures: deque[OrderFailure] = field(default_factory=deque)
    hold_responses: int = 0          # how many REST responses to hold
    hold_seconds: float = 0.0        # wall seconds to hold each one
    rate_limit_burst: int = 0        # answer this many REST requests with 429
    connections: ConnectionRegistry = field(default_factory=ConnectionRegistry)

    def take_order_failure(self) -> OrderFailure | None:
        return self.order_failures.popleft() if self.order_failures else None

    def take_hold(self) -> float | None:
        if self.hold_responses > 0:
            self.hold_responses -= 1
            return self.hold_seconds
        return None

    def take_429(self) -> bool:
        if self.rate_limit_burst > 0:
            self.rate_limit_burst -= 1
            return True
        return False
