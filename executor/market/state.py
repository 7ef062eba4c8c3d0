"""Market state: the latest book ticker and mark price per symbol, and change notification.

Owns the per-symbol slots the stream readers write and the strategy loop reads, the
sequence rules that make two overlapping connections safe (an update whose updateId ``u``
(bookTicker) or event time ``E`` (markPrice) is not newer than what is held is dropped),
and the "something changed" signal. Both feeds are latest-value: when the strategy is
slower than the feed, a newer update overwrites one it has not looked at yet and is counted
as conflated; nothing is ever queued, so memory does not grow with the feed rate.

No I/O: readers pass already-parsed Decimals, and the only asyncio object is one Event.
Timestamps are what the caller passes (monotonic seconds and wall seconds at receipt).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

# Results of MarketState.apply_book / apply_mark.
DROPPED = 0  # not newer than what is held (overlap duplicate or late frame): nothing changed
APPLIED = 1  # stored; the strategy had already seen the previous value
CONFLATED = 2  # stored over a value the strategy never saw


class SymbolState:
    """Latest market data for one symbol. Fields are None until the first update."""

    __slots__ = (
        "_book_resync",
        "_mark_resync",
        "ask",
        "ask_qty",
        "bid",
        "bid_qty",
        "book_recv_mono",
        "book_recv_wall",
        "estimated_settle",
        "funding_rate",
        "index",
        "mark",
        "mark_event_ms",
        "mark_recv_mono",
        "mark_recv_wall",
        "next_funding_ms",
        "symbol",
        "update_id",
    )

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bid: Decimal | None = None
        self.bid_qty: Decimal | None = None
        self.ask: Decimal | None = None
        self.ask_qty: Decimal | None = None
        self.update_id: int = -1
        self.book_recv_mono: float | None = None
        self.book_recv_wall: float | None = None
        self.mark: Decimal | None = None
        self.index: Decimal | None = None
        self.estimated_settle: Decimal | None = None
        self.funding_rate: Decimal | None = None
        self.next_funding_ms: int | None = None
        self.mark_event_ms: int = -1
        self.mark_recv_mono: float | None = None
        self.mark_recv_wall: float | None = None
        # After a hard reconnect the next update is taken whatever its sequence, so an
        # exchange whose counters restarted cannot freeze a symbol forever.
        self._book_resync = False
        self._mark_resync = False

    @property
    def has_book(self) -> bool:
        return self.book_recv_mono is not None

    @property
    def has_mark(self) -> bool:
        return self.mark_recv_mono is not None

    @property
    def mid(self) -> Decimal | None:
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2

    def __repr__(self) -> str:
        return (f"SymbolState({self.symbol} bid={self.bid}x{self.bid_qty} ask={self.ask}x{self.ask_qty} "
                f"u={self.update_id} mark={self.mark} index={self.index} r={self.funding_rate})")


@dataclass(frozen=True)
class Changes:
    """Symbols whose book and/or mark changed since the strategy last took changes."""

    books: frozenset[str] = field(default_factory=frozenset)
    marks: frozenset[str] = field(default_factory=frozenset)

    @property
    def symbols(self) -> frozenset[str]:
        return self.books | self.marks

    def __bool__(self) -> bool:
        return bool(self.books or self.marks)


class MarketState:
    """Per-symbol latest values plus the dirty sets the strategy loop drains.

    Single event loop only: readers and the strategy run as tasks on the same loop, so a
    symbol's fields are never seen half-written (no await inside an update).
    """

    def __init__(self, symbols: Iterable[str] = ()) -> None:
        self._symbols: dict[str, SymbolState] = {s: SymbolState(s) for s in symbols}
        self._dirty_books: set[str] = set()
        self._dirty_marks: set[str] = set()
        self._changed = asyncio.Event()
        self.book_updates = 0
        self.mark_updates = 0
        self.dropped = 0
        self.conflated = 0
        self.takes = 0

    # -- reading -----------------------------------------------------------------------

    def get(self, symbol: str) -> SymbolState | None:
        return self._symbols.get(symbol)

    def __getitem__(self, symbol: str) -> SymbolState:
        return self._symbols[symbol]

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._symbols

    def symbols(self) -> list[str]:
        return list(self._symbols)

    def is_stale(self, symbol: str, now: float, max_age: float, *, book: bool = True,
                 mark: bool = True) -> bool:
        """True if a required part (book and/or mark) is missing or older than ``max_age``.

        ``now`` is ``time.monotonic()`` seconds, the clock receipt times are taken on.
        """
        st = self._symbols.get(symbol)
        if st is None:
            return True
        if book and (st.book_recv_mono is None or now - st.book_recv_mono > max_age):
            return True
        return bool(mark and (st.mark_recv_mono is None or now - st.mark_recv_mono > max_age))

    # -- change notification -----------------------------------------------------------

    def pending(self) -> bool:
        return bool(self._dirty_books or self._dirty_marks)

    def take_changes(self) -> Changes:
        """Take (and clear) the set of changed symbols without waiting."""
        books, marks = self._dirty_books, self._dirty_marks
        self._changed.clear()
        if not books and not marks:
            return Changes()
        self._dirty_books = set()
        self._dirty_marks = set()
        self.takes += 1
        return Changes(frozenset(books), frozenset(marks))

    async def wait_changes(self, timeout: float | None = None) -> Changes:
        """Wait until something changed, then take the changes (empty on timeout)."""
        if not (self._dirty_books or self._dirty_marks):
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except TimeoutError:
                return Changes()
        return self.take_changes()

    # -- writing (stream readers) --------------------------------------------------------

    def _slot(self, symbol: str) -> SymbolState:
        st = self._symbols.get(symbol)
        if st is None:
            st = self._symbols[symbol] = SymbolState(symbol)
        return st

    def apply_book(self, symbol: str, update_id: int, bid: Decimal, bid_qty: Decimal, ask: Decimal,
                   ask_qty: Decimal, recv_mono: float, recv_wall: float) -> int:
        """Store a bookTicker update unless its ``u`` is not newer; returns DROPPED/APPLIED/CONFLATED."""
        st = self._symbols.get(symbol) or self._slot(symbol)
        if update_id <= st.update_id and not st._book_resync:
            self.dropped += 1
            return DROPPED
        st._book_resync = False
        st.update_id = update_id
        st.bid = bid
        st.bid_qty = bid_qty
        st.ask = ask
        st.ask_qty = ask_qty
        st.book_recv_mono = recv_mono
        st.book_recv_wall = recv_wall
        self.book_updates += 1
        dirty = self._dirty_books
        if symbol in dirty:
            self.conflated += 1
            return CONFLATED
        if not dirty and not self._dirty_marks:
            self._changed.set()
        dirty.add(symbol)
        return APPLIED

    def apply_mark(self, symbol: str, event_ms: int, mark: Decimal, index: Decimal | None,
                   estimated_settle: Decimal | None, funding_rate: Decimal | None,
                   next_funding_ms: int | None, recv_mono: float, recv_wall: float) -> int:
        """Store a markPrice update unless its ``E`` is not newer; returns DROPPED/APPLIED/CONFLATED."""
        st = self._symbols.get(symbol) or self._slot(symbol)
        if event_ms <= st.mark_event_ms and not st._mark_resync:
            self.dropped += 1
            return DROPPED
        st._mark_resync = False
        st.mark_event_ms = event_ms
        st.mark = mark
        st.index = index
        st.estimated_settle = estimated_settle
        st.funding_rate = funding_rate
        st.next_funding_ms = next_funding_ms
        st.mark_recv_mono = recv_mono
        st.mark_recv_wall = recv_wall
        self.mark_updates += 1
        dirty = self._dirty_marks
        if symbol in dirty:
            self.conflated += 1
            return CONFLATED
        if not dirty and not self._dirty_books:
            self._changed.set()
        dirty.add(symbol)
        return APPLIED

    def resync(self, symbols: Iterable[str], *, book: bool = False, mark: bool = False) -> None:
        """Accept the next update per symbol whatever its sequence (after a hard reconnect)."""
        for symbol in symbols:
            st = self._slot(symbol)
            if book:
                st._book_resync = True
            if mark:
                st._mark_resync = True
