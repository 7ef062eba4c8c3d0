"""The strategy loop: market state -> strategy -> risk -> order manager.

One task waits on ``MarketState`` changes (latest value per symbol: a slow strategy sees
conflated updates, never a queue) and calls the strategy's ``on_book_ticker`` /
``on_mark_price``; a timer task calls ``on_timer`` about once a second and, while the kill
switch is engaged, cancels our working orders. Order updates arrive from the tracker
(``on_order``), synchronously, and go to ``on_order_update``.

Every intent a handler returns goes straight to ``OrderManager.submit``, without an await in
between, so handlers never interleave and an accepted order is in ``ctx.open_orders()``
before the next handler runs. A handler that raises is logged (rate-limited) and counted;
the loop carries on. ``stop()`` ends the loop: no handler runs after it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from executor.core.intents import Intent
from executor.market.state import MarketState
from executor.orders.manager import OrderManager
from executor.orders.tracker import TrackedOrder
from executor.risk.checks import RiskChecker
from executor.strategy.base import Strategy, StrategyContext

__all__ = ["StrategyLoop"]

log = logging.getLogger(__name__)


class StrategyLoop:
    """Drives one strategy from market changes, order updates and a timer."""

    def __init__(self, market: MarketState, strategy: Strategy, ctx: StrategyContext, manager: OrderManager,
                 risk: RiskChecker, *, timer_s: float = 1.0,
                 on_timer_extra: Callable[[], None] | None = None) -> None:
        self.market = market
        self.strategy = strategy
        self.ctx = ctx
        self.manager = manager
        self.risk = risk
        self.timer_s = timer_s
        self.on_timer_extra = on_timer_extra
        self.running = False
        self.counts: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_error_log = 0.0
        self._kill_logged = False

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            return
        self.strategy.bind(self.ctx)
        self.running = True
        self._tasks = [asyncio.create_task(self._market_loop(), name="strategy-market"),
                       asyncio.create_task(self._timer_loop(), name="strategy-timer")]

    async def stop(self) -> None:
        self.running = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # -- inputs --------------------------------------------------------------------------

    def on_order(self, order: TrackedOrder) -> None:
        """Tracker callback: one of our orders changed."""
        if not self.running:
            return
        self.counts["order_updates"] += 1
        self._run("on_order_update", self.strategy.on_order_update, order.view())

    async def _market_loop(self) -> None:
        market, strategy, ctx = self.market, self.strategy, self.ctx
        while self.running:
            changes = await market.wait_changes()
            if not self.running:
                return
            for symbol in changes.books:
                self.counts["book"] += 1
                self._run("on_book_ticker", strategy.on_book_ticker, symbol, ctx)
            for symbol in changes.marks:
                self.counts["mark"] += 1
                self._run("on_mark_price", strategy.on_mark_price, symbol, ctx)

    async def _timer_loop(self) -> None:
        while self.running:
            await asyncio.sleep(self.timer_s)
            if not self.running:
                return
            self.timer_tick()

    def timer_tick(self) -> None:
        """One timer round (a replay at max speed calls this on exchange-time seconds)."""
        if self.running:
            self.counts["timer"] += 1
            self._kill_switch()
            self._run("on_timer", self.strategy.on_timer, self.ctx.now)
            if self.on_timer_extra is not None:
                try:
                    self.on_timer_extra()
                except Exception:
                    log.exception("timer hook failed")

    def _kill_switch(self) -> None:
        cancels = self.risk.kill_switch_cancels(self.ctx)
        engaged = bool(cancels) or self.risk.kill_switch.is_engaged()
        if engaged and not self._kill_logged:
            log.warning("kill switch engaged (%s): new orders refused, cancelling ours",
                        self.risk.kill_switch.path)
        self._kill_logged = engaged
        for cancel in cancels:
            self.manager.submit(cancel)

    # -- dispatch ------------------------------------------------------------------------

    def _run(self, name: str, handler: Callable[..., list[Intent]], *args: Any) -> None:
        try:
            intents = handler(*args)
        except Exception:
            self.counts["strategy_errors"] += 1
            now = time.monotonic()
            if now - self._last_error_log > 10:
                self._last_error_log = now
                log.exception("strategy %s raised (counted; the loop carries on)", name)
            return
        if not intents:
            return
        for intent in intents:
            self.counts["intents"] += 1
            try:
                decision = self.manager.submit(intent)
            except Exception:
                # A malformed intent must not end the loop (it would stop trading silently).
                self.counts["submit_errors"] += 1
                log.exception("intent %r from %s could not be submitted", intent, name)
                continue
            if not decision:
                self.counts["refused"] += 1
