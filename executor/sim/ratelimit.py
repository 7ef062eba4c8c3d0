"""REST rate limits: REQUEST_WEIGHT per minute per IP, ORDERS per 10 s and per day per account,
and the 429 → 418 escalation for clients that keep sending during a Retry-After.

Windows are fixed intervals of the sim clock (like Binance's, aligned to the interval),
so a faster ``time_scale`` empties them faster. ``RateLimits`` is mutable: tests lower
the limits on a live exchange (``sim.ratelimiter.limits.weight_per_minute = 50``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from executor.sim import errors
from executor.sim.clock import SimClock

MINUTE_MS = 60_000
TEN_S_MS = 10_000
DAY_MS = 86_400_000


@dataclass
class RateLimits:
    weight_per_minute: int = 6000
    orders_per_10s: int = 100
    orders_per_day: int = 200_000
    ban_first_s: int = 120            # Binance bans escalate from 2 minutes to 3 days
    burst_retry_after_s: int = 60     # the Retry-After of a fault's 429 burst (``faults.burst_429``)
    ban_max_s: int = 259_200


@dataclass
class _IpState:
    window: int = -1
    used: int = 0
    retry_until_ms: int = 0           # end of the last 429's Retry-After
    banned_until_ms: int = 0
    bans: int = 0


@dataclass
class _OrderState:
    window_10s: int = -1
    count_10s: int = 0
    window_day: int = -1
    count_day: int = 0


@dataclass
class RateLimiter:
    clock: SimClock
    limits: RateLimits = field(default_factory=RateLimits)
    _ips: dict[str, _IpState] = field(default_factory=dict)
    _orders: dict[str, _OrderState] = field(default_factory=dict)

    def _ip(self, ip: str) -> _IpState:
        st = self._ips.setdefault(ip, _IpState())
        window = self.clock.now_ms() // MINUTE_MS
        if st.window != window:
            st.window, st.used = window, 0
        return st

    def used_weight(self, ip: str) -> int:
        return self._ip(ip).used

    def bans(self, ip: str | None = None) -> int:
        """418 bans handed out (to ``ip``, or to every IP): ground truth for tests and chaos runs."""
        states = [self._ips[ip]] if ip is not None and ip in self._ips else (
            [] if ip is not None else list(self._ips.values()))
        return sum(st.bans for st in states)

    def blocked_left_ms(self) -> int:
        """Exchange ms until no IP is banned (418) or inside a 429's Retry-After (where a request
        earns a ban); 0 when none is."""
        now = self.clock.now_ms()
        ends = [max(st.banned_until_ms, st.retry_until_ms) for st in self._ips.values()]
        return max([0, *(end - now for end in ends)])

    def gate(self, ip: str) -> None:
        """Before a request: 418 while banned; a request inside a 429's Retry-After earns a ban."""
        now = self.clock.now_ms()
        st = self._ip(ip)
        if st.banned_until_ms > now:
            raise errors.ip_banned(st.banned_until_ms, _ceil_s(st.banned_until_ms - now))
        if st.retry_until_ms > now:
            st.bans += 1
            ban_s = min(self.limits.ban_first_s * (2 ** (st.bans - 1)), self.limits.ban_max_s)
            st.banned_until_ms = now + ban_s * 1000
            st.retry_until_ms = 0
            raise errors.ip_banned(st.banned_until_ms, ban_s)

    def charge(self, ip: str, weight: int) -> int:
        """Add ``weight``; raise 429 (-1003) when the minute's limit is exceeded. Returns used weight."""
        st = self._ip(ip)
        st.used += weight
        if st.used > self.limits.weight_per_minute:
            now = self.clock.now_ms()
            retry_ms = (st.window + 1) * MINUTE_MS - now
            st.retry_until_ms = now + retry_ms
            raise errors.too_much_weight(self.limits.weight_per_minute, _ceil_s(retry_ms))
        return st.used

    def note_429(self, ip: str, retry_after_s: int) -> None:
        """A 429 answered for another reason (fault burst) also opens a Retry-After period."""
        st = self._ip(ip)
        st.retry_until_ms = self.clock.now_ms() + retry_after_s * 1000

    def _order_state(self, account_id: str) -> _OrderState:
        st = self._orders.setdefault(account_id, _OrderState())
        now = self.clock.now_ms()
        if st.window_10s != now // TEN_S_MS:
            st.window_10s, st.count_10s = now // TEN_S_MS, 0
        if st.window_day != now // DAY_MS:
            st.window_day, st.count_day = now // DAY_MS, 0
        return st

    def check_order(self, account_id: str) -> None:
        """Before placing: -1015 (429, no Retry-After) when the account's ORDERS limits are used up."""
        st = self._order_state(account_id)
        if st.count_10s >= self.limits.orders_per_10s:
            raise errors.too_many_orders(self.limits.orders_per_10s, "10 SECOND")
        if st.count_day >= self.limits.orders_per_day:
            raise errors.too_many_orders(self.limits.orders_per_day, "1 DAY")

    def order_counts(self, account_id: str) -> tuple[int, int]:
        """The account's current (10 s, day) ORDERS counts."""
        st = self._order_state(account_id)
        return st.count_10s, st.count_day

    def count_order(self, account_id: str) -> dict[str, str]:
        """Count one placed order; returns the X-MBX-ORDER-COUNT-* headers."""
        st = self._order_state(account_id)
        st.count_10s += 1
        st.count_day += 1
        return {"X-MBX-ORDER-COUNT-10S": str(st.count_10s), "X-MBX-ORDER-COUNT-1D": str(st.count_day)}


def _ceil_s(ms: int) -> int:
    return max(1, -(-ms // 1000))
