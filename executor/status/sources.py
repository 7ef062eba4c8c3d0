"""``StatusSources``: what the live status reads, as plain callables filled by the run wiring.

Every callable is called at render time, so the status always shows the latest values and
never holds state of its own. Figures (PnL, positions, balances, open orders) are the ones
``executor.figures`` computes for the web API too; the wiring hands them over as they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from executor.market.state import MarketState

__all__ = ["StatusSources"]


def _none(_period: str) -> Any:
    return None


@dataclass
class StatusSources:
    """Where the status reads from; every field is read at render time."""

    title: str
    symbols: Sequence[str]
    market: MarketState
    tracker: Any  # OrderTracker: order and fill counts
    manager: Any  # OrderManager: counts, refusals, ``paused``
    started: float = field(default_factory=time.monotonic)
    # ``figures.balances``: BalanceFigure-like (asset, free, locked), or a mapping asset -> row.
    balances: Callable[[], Sequence[Any] | Mapping[str, Any]] = list
    # ``figures.pnl`` of a period (``run``, ``day``) as a PnlFigures, None until known.
    pnl: Callable[[str], Any] = _none
    # ``figures.positions``: base asset -> net position.
    positions: Callable[[], Mapping[str, Decimal]] = dict
    # ``figures.open_orders``: OrderRecord-like rows (symbol, side, price, quantity,
    # executed_qty, created_ms, reason, status), newest first.
    open_orders: Callable[[], Sequence[Any]] = list
    streams: Callable[[], Sequence[Any]] = list  # market StreamHealth-like
    user_streams: Callable[[], Sequence[Any]] = list  # UserStreamHealth-like
    jobs: Callable[[], Mapping[str, int]] = dict  # scheduler job name -> runs
    reconcile: Callable[[], str] = str  # one short text on what the ledger took in
    flags: Callable[[], Sequence[str]] = list  # loud conditions, e.g. "KILL SWITCH engaged"
    # Process health (RSS, fds, tasks, loop lag) as one short text; empty hides the row.
    health: Callable[[], str] = str
    stale_after_s: float = 5.0  # market data older than this shows as STALE
    wall: Callable[[], float] = time.time  # the clock shown (UTC)
