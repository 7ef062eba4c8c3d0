"""The live figures of a running bot, kept current from its ledger.

``LedgerWatch`` reads what the reconciler wrote: every fill once (paging by row id), the
finished reconciliation runs, the balances. It keeps a ``figures.PnlFold`` per period
(``run``, ``day``, ``all``), the positions per base asset, the last fills and a bounded series
of equity at mark, and tells listeners of each new fill and reconciliation (the alerts).
Memory stays bounded: the folds keep only their books, not the fills, and folding afresh
reads the ledger a page at a time per symbol.

A fill that arrives out of (time, trade id) order for its symbol, or a new UTC day, makes
the affected fold start again from the ledger, so the figures always equal ``figures.pnl``
over the same fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from decimal import Decimal
from typing import Any

from executor.core.money import ZERO
from executor.figures import PnlFigures, PnlFold, balances, equity_at_mark, period_start_ms, positions
from executor.figures.balances import BalanceFigure
from executor.persistence.records import FillRow

__all__ = ["LedgerWatch"]

log = logging.getLogger(__name__)

PAGE = 5000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class LedgerWatch:
    """Polls the ledger every ``interval_s``; ``start()``, then ``stop()``."""

    def __init__(self, store: Any, pairs: Mapping[str, tuple[str, str]], run_id: int | None,
                 marks: Callable[[], Mapping[str, Decimal]], *, interval_s: float = 0.5,
                 keep_fills: int = 200, equity_points: int = 720, equity_every_s: float = 2.0,
                 clock_ms: Callable[[], int] = _now_ms) -> None:
        self.store = store
        self.pairs = dict(pairs)
        self.run_id = run_id
        self.marks = marks
        self.interval_s = interval_s
        self.equity_every_s = equity_every_s
        self.clock_ms = clock_ms
        quotes = [q for _, q in self.pairs.values()]
        self.quote = max(set(quotes), key=quotes.count) if quotes else "USDT"
        self.last_fill_id = 0
        self.last_recon_id = 0
        self.recent: deque[FillRow] = deque(maxlen=keep_fills)
        self.equity: deque[tuple[int, Decimal]] = deque(maxlen=equity_points)
        self.balances: list[BalanceFigure] = []
        self.positions: dict[str, Decimal] = {}
        self.folds: dict[str, PnlFold] = {}
        self.on_fill: list[Callable[[FillRow], None]] = []
        self.on_reconciliation: list[Callable[[dict[str, Any]], None]] = []
        self.polls = 0
        self._task: asyncio.Task[None] | None = None
        self._last_equity = 0.0
        self._stale = False
        self._lock = asyncio.Lock()

    # -- lifecycle

    async def start(self) -> None:
        """Fold the ledger as it stands (no listener is told of what is already there)."""
        async with self._lock:
            await self._rebuild_all()
            runs = await self.store.recent_reconciliations(1)
            self.last_recon_id = runs[0]["id"] if runs else 0
            await self._refresh_balances(force=True)
        self._task = asyncio.create_task(self._loop(), name="ledger-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.poll()
            except Exception as exc:  # noqa: BLE001 - the ledger may be busy or closing; next poll tries again
                log.info("ledger watch: poll failed (%s); retrying", type(exc).__name__)

    # -- reading the ledger

    def _new_folds(self) -> dict[str, PnlFold]:
        now = self.clock_ms()
        return {"run": PnlFold(self.pairs, period="run", run_id=self.run_id),
                "day": PnlFold(self.pairs, period="day", since_ms=period_start_ms("day", now)),
                "all": PnlFold(self.pairs, period="all")}

    async def _timed_pages(self, symbol: str) -> AsyncIterator[list[FillRow]]:
        after: tuple[int, int] | None = None
        while True:
            page = await self.store.fills_in_time_order(symbol, after, limit=PAGE)
            if page:
                yield page
            if len(page) < PAGE:
                return
            last = page[-1]
            after = (last.time_ms, last.trade_id)

    async def _rebuild_all(self) -> None:
        """Fold every fill again, one symbol at a time, a page at a time (memory stays bounded
        by the page size whatever the ledger's size)."""
        marks = self.marks()
        watermark = await self.store.max_fill_id()
        folds = self._new_folds()
        held: dict[str, Decimal] = {}
        untimed: dict[str, list[FillRow]] = {}
        for f in await self.store.untimed_fills():
            untimed.setdefault(f.symbol, []).append(f)
        for symbol in self.pairs:
            extra = sorted(untimed.get(symbol, []), key=lambda f: (f.time_ms, f.trade_id))
            pages = self._timed_pages(symbol)
            async for page in pages:
                # Fills without a trade time are ordered by arrival among the timed ones.
                merged = page
                if extra:
                    cut = (page[-1].time_ms, page[-1].trade_id)
                    early = [f for f in extra if (f.time_ms, f.trade_id) <= cut]
                    extra = extra[len(early):]
                    merged = sorted([*page, *early], key=lambda f: (f.time_ms, f.trade_id))
                self._fold_page(folds, held, merged, marks, watermark)
            self._fold_page(folds, held, extra, marks, watermark)
        self.folds = folds
        self.positions = held
        self.recent.clear()
        latest = [f for f in await self.store.recent_fills(self.recent.maxlen or 0) if f.id <= watermark]
        self.recent.extend(sorted(latest, key=lambda f: (f.time_ms, f.id)))
        self.last_fill_id = max(watermark, self.last_fill_id)

    def _fold_page(self, folds: dict[str, PnlFold], held: dict[str, Decimal], page: list[FillRow],
                   marks: Mapping[str, Decimal], watermark: int) -> None:
        # Rows stored after the watermark are left to the next poll (it reads by id).
        rows = [f for f in page if f.id <= watermark]
        for fold in folds.values():
            fold.add_many(rows, marks)
        for asset, change in positions(rows, self.pairs).items():
            held[asset] = held.get(asset, ZERO) + change

    async def poll(self) -> None:
        """One round: new fills, finished reconciliations, balances and the equity series."""
        async with self._lock:
            self.polls += 1
            if self.folds["day"].since_ms != period_start_ms("day", self.clock_ms()):
                await self._rebuild_all()  # a new UTC day
            new: list[FillRow] = []
            while True:
                page = await self.store.fills_after(self.last_fill_id, limit=PAGE)
                new.extend(page)
                if page:
                    self.last_fill_id = page[-1].id
                if len(page) < PAGE:
                    break
            if new:
                self._take(new)
            recons = await self.store.reconciliations_after(self.last_recon_id)
            if recons:
                # Finished in id order; one still running holds the watermark back.
                self.last_recon_id = recons[-1]["id"]
            await self._refresh_balances()
        for fill in new:
            self._tell(self.on_fill, fill)
        for row in recons:
            self._tell(self.on_reconciliation, row)

    def _take(self, new: list[FillRow]) -> None:
        marks = self.marks()
        ordered = sorted(new, key=lambda f: (f.time_ms, f.trade_id))
        stale = False
        for fold in self.folds.values():
            stale = (not fold.add_many(ordered, marks)) or stale
        for asset, change in positions(new, self.pairs).items():
            self.positions[asset] = self.positions.get(asset, ZERO) + change
        self.recent.extend(sorted(new, key=lambda f: (f.time_ms, f.id)))
        if stale:
            self._stale = True  # an older fill arrived late: fold afresh after this round

    async def _refresh_balances(self, force: bool = False) -> None:
        if self._stale:
            self._stale = False
            await self._rebuild_all()
        now = time.monotonic()
        if not force and now - self._last_equity < self.equity_every_s:
            return
        self._last_equity = now
        self.balances = balances(await self.store.get_balances())
        value, _ = equity_at_mark(self.balances, self.marks(), self.quote)
        if self.balances:
            self.equity.append((self.clock_ms(), value))

    def _tell(self, listeners: list[Callable[[Any], None]], item: Any) -> None:
        for fn in listeners:
            try:
                fn(item)
            except Exception:
                log.exception("ledger watch listener failed")

    # -- figures

    def pnl(self, period: str) -> PnlFigures:
        return self.folds[period].figures(self.marks())

    def last_fills(self, limit: int = 50, since_ms: int | None = None) -> list[FillRow]:
        from executor.figures import last_fills

        return last_fills(self.recent, limit, since_ms)
