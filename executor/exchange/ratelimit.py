"""Staying under Binance's limits: the weight/order budget and the global 429/418 gate.

``WeightBudget`` keeps one fixed window per limit (request weight per minute, orders per
10 s and per day), aligned to UTC interval boundaries as Binance's are. The exchange's own
count arrives in ``X-MBX-USED-WEIGHT-<n><unit>`` / ``X-MBX-ORDER-COUNT-<n><unit>`` headers
and replaces our estimate (never lowering a newer count: answers can arrive out of order);
requests still in flight are added on top so concurrent senders do not overshoot. Past
``soft_fraction`` of a limit the budget spreads what is left evenly over the rest of the
window (slow down); at ``hard_fraction`` it waits for the next window. So normal
operation never reaches a limit.

``BanGate`` is the one switch every sender passes: a 429 or 418 anywhere closes it until
``Retry-After`` has passed. Both take an injectable clock (and the gate an injectable
sleep) so tests control time instead of waiting on it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Now = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

WEIGHT = "REQUEST_WEIGHT"
ORDERS = "ORDERS"

_UNIT_S = {"S": 1, "M": 60, "H": 3600, "D": 86400}
_API_INTERVAL_S = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
_HEADER = re.compile(r"^x-mbx-(used-weight|order-count)-(\d+)([smhd])$", re.IGNORECASE)

# Binance's published spot limits (reference.md §7); exchangeInfo's rateLimits override.
DEFAULT_LIMITS: tuple[tuple[str, int, int], ...] = (
    (WEIGHT, 60, 6000),
    (ORDERS, 10, 100),
    (ORDERS, 86400, 200_000),
)


@dataclass(frozen=True)
class Cost:
    """What one request consumes: request weight, and order-count units."""

    weight: int
    orders: int = 0


def parse_limit_headers(headers: Mapping[str, str]) -> dict[tuple[str, int], int]:
    """``{(kind, interval_s): used}`` from a response's X-MBX-* usage headers."""
    out: dict[tuple[str, int], int] = {}
    for name, value in headers.items():
        match = _HEADER.match(name)
        if not match:
            continue
        kind = WEIGHT if match.group(1).lower() == "used-weight" else ORDERS
        interval = int(match.group(2)) * _UNIT_S[match.group(3).upper()]
        try:
            out[(kind, interval)] = int(value)
        except ValueError:
            continue
    return out


@dataclass
class _Window:
    kind: str
    interval_s: int
    limit: int
    index: int = -1          # which interval (epoch // interval_s) ``used`` belongs to
    used: int = 0            # last confirmed count (header) plus completed unconfirmed
    in_flight: int = 0       # reserved by requests not yet answered

    def roll(self, now_s: float) -> None:
        index = int(now_s // self.interval_s)
        if index != self.index:
            self.index = index
            self.used = 0

    def seconds_left(self, now_s: float) -> float:
        return (self.index + 1) * self.interval_s - now_s


@dataclass
class WeightBudget:
    """Request-weight and order-count budget fed by the exchange's usage headers."""

    now: Now = time.time
    soft_fraction: float = 0.7
    hard_fraction: float = 0.9
    limits: Iterable[tuple[str, int, int]] = DEFAULT_LIMITS
    _windows: dict[tuple[str, int], _Window] = field(default_factory=dict, init=False)
    _last_reserve: float = field(default=float("-inf"), init=False)

    def __post_init__(self) -> None:
        if not 0 < self.soft_fraction <= self.hard_fraction <= 1:
            raise ValueError("need 0 < soft_fraction <= hard_fraction <= 1")
        for kind, interval_s, limit in self.limits:
            self.set_limit(kind, interval_s, limit)

    def set_limit(self, kind: str, interval_s: int, limit: int) -> None:
        if kind not in (WEIGHT, ORDERS) or interval_s <= 0 or limit <= 0:
            raise ValueError(f"bad rate limit {kind} {interval_s}s {limit}")
        window = self._windows.get((kind, interval_s))
        if window:
            window.limit = limit
        else:
            self._windows[(kind, interval_s)] = _Window(kind, interval_s, limit)

    def configure(self, rate_limits: Iterable[Mapping[str, Any]]) -> None:
        """Adopt exchangeInfo's ``rateLimits`` (RAW_REQUESTS is left to the throttler)."""
        for item in rate_limits:
            kind = item.get("rateLimitType")
            if kind not in (WEIGHT, ORDERS):
                continue
            interval_s = _API_INTERVAL_S.get(str(item.get("interval")), 0) * int(item.get("intervalNum", 1))
            self.set_limit(kind, interval_s, int(item["limit"]))

    def _amount(self, window: _Window, cost: Cost) -> int:
        return cost.weight if window.kind == WEIGHT else cost.orders

    def used(self, kind: str, interval_s: int) -> int:
        """Confirmed plus in-flight usage of one window, as of now."""
        window = self._windows[(kind, interval_s)]
        window.roll(self.now())
        return window.used + window.in_flight

    def delay(self, cost: Cost) -> float:
        """Seconds to wait before sending a request of ``cost``; 0 means send now."""
        now = self.now()
        wait = 0.0
        for window in self._windows.values():
            amount = self._amount(window, cost)
            if amount <= 0:
                continue
            window.roll(now)
            projected = window.used + window.in_flight + amount
            hard = window.limit * self.hard_fraction
            soft = window.limit * self.soft_fraction
            left = window.seconds_left(now)
            if projected > hard and window.used + window.in_flight > 0:
                # (An empty window always admits one request, however heavy.)
                wait = max(wait, left)
            elif projected > soft:
                # Spread the remaining allowance evenly over what is left of the window:
                # space this request after the previous one by its share of the time left.
                room = max(hard - (window.used + window.in_flight), 1.0)
                spacing = min(left, left * amount / room)
                wait = max(wait, self._last_reserve + spacing - now)
        return max(0.0, wait)

    def reserve(self, cost: Cost) -> None:
        now = self.now()
        self._last_reserve = now
        for window in self._windows.values():
            window.roll(now)
            window.in_flight += self._amount(window, cost)

    def settle(self, cost: Cost, headers: Mapping[str, str] | None) -> None:
        """A reserved request was answered (or failed); adopt the exchange's counts."""
        now = self.now()
        reported = parse_limit_headers(headers or {})
        for key, window in self._windows.items():
            amount = self._amount(window, cost)
            window.in_flight = max(0, window.in_flight - amount)
            window.roll(now)
            if key in reported:
                # Counts only grow within a window; concurrent answers may arrive out of
                # order, so an older (smaller) count never lowers a newer one.
                window.used = max(window.used, reported[key])
            elif window.kind == WEIGHT:
                # No header (e.g. a dropped connection): assume it counted.
                window.used += amount
            # Order counts come only on successful orders; without a header the order
            # most likely did not count, and the next successful order corrects us.

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Usage per window, for status displays and logs."""
        now = self.now()
        out: dict[str, dict[str, int]] = {}
        for (kind, interval_s), window in self._windows.items():
            window.roll(now)
            out[f"{kind}/{interval_s}s"] = {
                "used": window.used, "in_flight": window.in_flight, "limit": window.limit,
            }
        return out


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class BanGate:
    """Closed from a 429/418 until its Retry-After has passed; every request waits here."""

    def __init__(self, now: Now = time.monotonic, sleep: Sleep = _sleep) -> None:
        self._now = now
        self._sleep = sleep
        self._until = float("-inf")
        self.banned = False
        self.trips = 0
        # Set by a trip, cleared by the first request answered without a 429 after the gate
        # reopened: until then senders go one at a time (``RestGateway._send``).
        self.recovering = False

    @property
    def is_open(self) -> bool:
        return self._now() >= self._until

    def remaining(self) -> float:
        return max(0.0, self._until - self._now())

    def trip(self, retry_after_s: float, *, banned: bool, source: str = "") -> None:
        """Close the gate for ``retry_after_s`` from now (never shortens a longer close)."""
        until = self._now() + max(0.0, retry_after_s)
        self.trips += 1
        self.recovering = True
        if until > self._until:
            self._until = until
        self.banned = banned or (self.banned and not self.is_open)
        if banned:
            log.critical("BINANCE IP BAN (418)%s: all REST sending stopped for %.1f s",
                         f" on {source}" if source else "", retry_after_s)
        else:
            log.warning("rate limited (429)%s: all REST sending paused for %.1f s",
                        f" on {source}" if source else "", retry_after_s)

    def recovered(self) -> None:
        """A request was answered without a 429 after the gate reopened: release the queue."""
        if self.recovering:
            self.recovering = False
            log.info("rate-limit gate: first request after reopening answered; resuming at the weight budget")

    async def wait(self) -> None:
        """Return once the gate is open; re-checks after each sleep in case it was extended."""
        while True:
            left = self._until - self._now()
            if left <= 0:
                if self.banned:
                    self.banned = False
                    log.warning("rate-limit gate reopened")
                return
            await self._sleep(left)
