"""Synthetic USDⓈ-M perpetual prices: index, mark, funding rate and next funding time.

The index is the spot mid of the same symbol; the mark adds a basis that follows a
seeded Ornstein-Uhlenbeck process (mean-reverting around a small contango) stepped on a
1-second grid of exchange time, so a basis strategy sees something real and a rerun with
the same seed sees the same basis path. Funding follows Binance's formula: premium plus
clamp(interest - premium, ±0.05%), settled every 8 hours at 00:00, 08:00 and 16:00 UTC.
Pure computation: the spot mid comes in through a callable.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

FUNDING_INTERVAL_MS = 8 * 3600 * 1000
INTEREST_RATE = Decimal("0.00010000")
FUNDING_CLAMP = Decimal("0.0005")
_Q8 = Decimal("0.00000001")
_STEP_MS = 1000
_MAX_GRID_STEPS = 100  # beyond this one exact OU transition replaces the loop


def next_funding_time(now_ms: int) -> int:
    """The first 8-hour boundary strictly after ``now_ms``."""
    return (now_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS


def funding_rate(premium: Decimal) -> Decimal:
    clamp = max(-FUNDING_CLAMP, min(FUNDING_CLAMP, INTEREST_RATE - premium))
    return (premium + clamp).quantize(_Q8, ROUND_HALF_EVEN)


@dataclass(frozen=True)
class MarkState:
    symbol: str
    time_ms: int
    mark: Decimal
    index: Decimal
    settle: Decimal
    funding_rate: Decimal
    next_funding_ms: int

    def payload(self) -> dict[str, object]:
        """The ``markPriceUpdate`` stream payload, keys exactly as Binance sends them."""
        return {"e": "markPriceUpdate", "E": self.time_ms, "s": self.symbol,
                "p": f"{self.mark:.8f}", "i": f"{self.index:.8f}", "P": f"{self.settle:.8f}",
                "r": f"{self.funding_rate:.8f}", "T": self.next_funding_ms}

    def premium_index(self) -> dict[str, object]:
        """One row of ``GET /fapi/v1/premiumIndex``."""
        return {"symbol": self.symbol, "markPrice": f"{self.mark:.8f}", "indexPrice": f"{self.index:.8f}",
                "estimatedSettlePrice": f"{self.settle:.8f}", "lastFundingRate": f"{self.funding_rate:.8f}",
                "interestRate": f"{INTEREST_RATE:.8f}", "nextFundingTime": self.next_funding_ms,
                "time": self.time_ms}


@dataclass(frozen=True)
class BookTouch:
    symbol: str
    time_ms: int
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal

    def key(self) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        return self.bid, self.bid_qty, self.ask, self.ask_qty

    def payload(self, update_id: int) -> dict[str, object]:
        """The USDⓈ-M ``bookTicker`` stream payload, keys exactly as Binance sends them."""
        return {"e": "bookTicker", "u": update_id, "E": self.time_ms, "T": self.time_ms, "s": self.symbol,
                "b": f"{self.bid:.8f}", "B": f"{self.bid_qty:.8f}", "a": f"{self.ask:.8f}",
                "A": f"{self.ask_qty:.8f}"}


class _Basis:
    """OU basis (as a fraction of index) for one symbol on a fixed 1-second grid."""

    def __init__(self, seed: int, symbol: str, mean: float, std: float, half_life_s: float,
                 start_ms: int) -> None:
        self._rng = random.Random(seed * 1_000_003 + zlib.crc32(symbol.encode()))
        self._mean, self._std = mean, std
        self._decay = math.exp(-math.log(2) / half_life_s)
        self._noise = std * math.sqrt(1 - self._decay ** 2)
        self.value = mean + self._rng.gauss(0.0, std)
        self._t = start_ms - start_ms % _STEP_MS

    def at(self, now_ms: int) -> float:
        steps = (now_ms - self._t) // _STEP_MS
        if steps <= 0:
            return self.value
        if steps > _MAX_GRID_STEPS:
            # A long jump (clock.advance): one exact transition over the whole gap.
            decay = self._decay ** steps
            self.value = self._mean + (self.value - self._mean) * decay + \
                self._std * math.sqrt(1 - decay ** 2) * self._rng.gauss(0.0, 1.0)
        else:
            for _ in range(steps):
                self.value = self._mean + (self.value - self._mean) * self._decay + \
                    self._noise * self._rng.gauss(0.0, 1.0)
        self._t += steps * _STEP_MS
        return self.value


class FuturesMarket:
    """Mark/index/funding per symbol, read at the exchange's current time."""

    def __init__(self, now_ms: Callable[[], int], spot_mid: Callable[[str], Decimal | None],
                 symbols: list[str], seed: int = 0, *, basis_mean: float = 0.0005,
                 basis_std: float = 0.001, half_life_s: float = 600.0,
                 tick: dict[str, Decimal] | None = None) -> None:
        self._now_ms = now_ms
        self._spot_mid = spot_mid
        self.symbols = list(symbols)
        self._ticks = tick or {}
        start = now_ms()
        self._basis = {s: _Basis(seed, s, basis_mean, basis_std, half_life_s, start) for s in self.symbols}
        self._override: dict[str, Decimal] = {}
        # A replay (sim/replay_source.py) sets this: marks then come from the recording.
        self.source: Any = None
        # The last state and touch per symbol, and the touch sizes of the current second.
        self._states: dict[str, tuple[tuple[Any, ...], MarkState]] = {}
        self._touches: dict[str, tuple[MarkState, BookTouch]] = {}
        self._sizes: dict[str, tuple[int, Decimal, Decimal]] = {}

    def set_basis(self, symbol: str, basis: Decimal | None) -> None:
        """Pin the basis (fraction of index) for tests; None returns to the random walk."""
        if basis is None:
            self._override.pop(symbol, None)
        else:
            self._override[symbol] = Decimal(basis)

    def basis(self, symbol: str, now_ms: int | None = None) -> Decimal:
        if symbol in self._override:
            return self._override[symbol]
        now = self._now_ms() if now_ms is None else now_ms
        return Decimal(repr(round(self._basis[symbol].at(now), 8)))

    def touch(self, symbol: str, now_ms: int | None = None) -> BookTouch | None:
        """The perpetual's best bid and ask: one tick either side of the mark (the perpetual
        trades around its mark), with a seeded, slowly changing size; None without a mark."""
        state = self.state(symbol, now_ms)
        if state is None:
            return None
        last = self._touches.get(symbol)
        if last is not None and last[0] is state:
            return last[1]  # the same mark state (an order reads the touch several times)
        tick = self._ticks.get(symbol, Decimal("0.01"))
        # Sizes change once a second, deterministically per (symbol, second).
        second = state.time_ms // 1000
        sizes = self._sizes.get(symbol)
        if sizes is None or sizes[0] != second:
            rng = random.Random(zlib.crc32(f"{symbol}:{second}".encode()))
            size = Decimal(rng.randint(1_000, 40_000)) / Decimal(1000)
            sizes = (second, size, size + Decimal(rng.randint(0, 5_000)) / Decimal(1000))
            self._sizes[symbol] = sizes
        touch = BookTouch(symbol, state.time_ms, state.mark - tick, sizes[1], state.mark + tick, sizes[2])
        self._touches[symbol] = (state, touch)
        return touch

    def state(self, symbol: str, now_ms: int | None = None) -> MarkState | None:
        """Current prices for ``symbol``; None if unknown or the spot side has no mid yet."""
        if symbol not in self._basis:
            return None
        if self.source is not None:
            return self.source.mark_state(symbol)
        now = self._now_ms() if now_ms is None else now_ms
        index = self._spot_mid(symbol)
        if index is None:
            return None
        override = self._override.get(symbol)
        raw = self._basis[symbol].at(now) if override is None else None
        # A pure function of these: the same inputs (an order reads the mark several times
        # within one exchange millisecond) give the state computed last time.
        key = (now, index, override, raw)
        last = self._states.get(symbol)
        if last is not None and last[0] == key:
            return last[1]
        index_q = index.quantize(_Q8, ROUND_HALF_EVEN)
        premium = override if override is not None else Decimal(repr(round(raw, 8)))
        tick = self._ticks.get(symbol, Decimal("0.01"))
        mark = (index_q * (1 + premium)).quantize(tick, ROUND_HALF_EVEN)
        state = MarkState(symbol=symbol, time_ms=now, mark=mark, index=index_q, settle=index_q,
                          funding_rate=funding_rate(premium), next_funding_ms=next_funding_time(now))
        self._states[symbol] = (key, state)
        return state
