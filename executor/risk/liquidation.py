"""The perpetuals' liquidation prices, as the exchange last served them, for the
liquidation-distance check (``risk.futures``).

Binance computes a cross-margin liquidation price from the whole account (wallet, every
position, its bracket), so the bot takes the exchange's own figure: ``positionRisk``'s
``liquidationPrice`` ("0": none reachable), read at start, at every futures gap fill and
after each change of the bot's perpetual position (``run.futures_trading`` does the reads;
this holder does no I/O). A price is valid only for the position it was read with: ``get``
answers "unknown" once the bot's own position has moved since (a fill whose read has not
come back yet), and the check then refuses to add (fail closed), never to reduce.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from executor.core.money import ZERO, parse_decimal

__all__ = ["LiquidationPrices", "Reading"]


@dataclass(frozen=True)
class Reading:
    price: Decimal | None     # None: no liquidation price reachable (the exchange said "0")
    position: Decimal         # the bot's own position when it was read
    exchange_amount: Decimal  # positionAmt on the exchange
    at: float                 # monotonic time of the read


class LiquidationPrices:
    """Per wire symbol (BTCUSDT): the last ``positionRisk`` reading."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._readings: dict[str, Reading] = {}
        self.reads = 0

    def update(self, rows: Iterable[Mapping[str, Any]], position: Callable[[str], Decimal]) -> None:
        """Adopt ``positionRisk`` rows; ``position(symbol)`` is the bot's own position now."""
        now = self._clock()
        for row in rows:
            if str(row.get("positionSide", "BOTH")) != "BOTH":
                continue
            symbol = str(row["symbol"])
            price = parse_decimal(row.get("liquidationPrice", "0"), "liquidationPrice")
            amount = parse_decimal(row.get("positionAmt", "0"), "positionAmt")
            self._readings[symbol] = Reading(price if price > 0 else None, position(symbol), amount, now)
        self.reads += 1

    def get(self, symbol: str, position: Decimal) -> tuple[bool, Decimal | None]:
        """(known, price): known is False without a reading for this position of ours."""
        reading = self._readings.get(symbol)
        if reading is None:
            return (position == ZERO, None)
        if reading.position != position:
            return (False, None)
        return (True, reading.price)

    def reading(self, symbol: str) -> Reading | None:
        return self._readings.get(symbol)
