"""Market state: the latest book ticker and mark price per symbol, and change notification.

Owns the per-symbol slots the stream readers write and the strategy loop reads, the
sequence rules that make two overlapping connections safe (an update whose updateId ``u``
(bookTicker) or event time ``E`` (markPrice) is not newer than what is held is dropped),
and the "something changed" signal. Both feeds are latest-value: when the strategy is
slower than the feed, a newer update overwrites one it has not looked at yet and is counted
as conflated; nothing is ever queued, so memory does not grow with the feed rate.

Candles (``apply_kline``, from ``<symbol>@kline_<interval>`` streams) are kept per symbol
and interval, the newest ``CANDLES_KEPT``, for strategies that ask for them
(``StrategyContext.candles``); they do not wake the strategy loop.

No I/O: the only asyncio object is one Event. Timestamps are what the caller passes
(monotonic seconds and wall seconds at receipt). Book prices and sizes may be stored as
the exchange's decimal strings and are turned into Decimal on first read: most book
updates are overwritten before the strategy looks, so parsing them eagerly would waste
most of the reader's time. Readers of a SymbolState only ever see Decimal (or None).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

log = logging.getLogger(__name__)

CANDLES_KEPT = 1000  # per symbol and interval


@dataclass(frozen=True, slots=True)
class Candle:
    """One kline as the stream reported it; ``closed`` once its interval has ended (``x``)."""

    open_time: int
    close_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trades: int
    closed: bool


# Results of MarketState.apply_book / apply_mark / apply_kline.
DROPPED = 0  # not newer than what is held (overlap duplicate or late frame): nothing changed
APPLIED = 1  # stored; the strategy had already seen the previous value
CONFLATED = 2  # stored over a value the strategy never saw


class SymbolState:
    """Latest market data for one symbol. Fields are None until the first update."""

    __slots__ = (
        "_ask",
        "_ask_qty",
        "_bid",
        "_bid_qty",
        "book_recv_mono",
        "book_recv_wall",
        "book_resync",
        "estimated_settle",
        "funding_rate",
        "index",
        "invalid_books",
        "mark",
        "mark_event_ms",
        "mark_recv_mono",
        "mark_recv_wall",
        "mark_resync",
        "next_funding_ms",
        "symbol",
        "update_id",
    )

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        # str (as received, not yet parsed), Decimal, or None (none yet / unparseable).
        self._bid: Decimal | str | None = None
        self._bid_qty: Decimal | str | None = None
        self._ask: Decimal | str | None = None
        self._ask_qty: Decimal | str | None = None
        self.invalid_books = 0  # updates whose numbers turned out unparseable or non-finite
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
        self.book_resync = False
        self.mark_resync = False

    def set_book(self, bid: Decimal | str, bid_qty: Decimal | str, ask: Decimal | str,
                 ask_qty: Decimal | str) -> None:
        """The latest book: Decimals or the exchange's strings (parsed on first read)."""
        self._bid = bid
        self._bid_qty = bid_qty
        self._ask = ask
        self._ask_qty = ask_qty

    def _parse_book(self) -> None:
        try:
            values = [Decimal(v) if v.__class__ is str else v
                      for v in (self._bid, self._bid_qty, self._ask, self._ask_qty)]
            if not all(v is not None and v.is_finite() for v in values):
                raise InvalidOperation
        except (InvalidOperation, TypeError, ValueError):
            log.warning("%s: unusable book ticker numbers %r; treating the book as missing", self.symbol,
                        (self._bid, self._bid_qty, self._ask, self._ask_qty))
            self.invalid_books += 1
            self._bid = self._bid_qty = self._ask = self._ask_qty = None
            return
        self._bid, self._bid_qty, self._ask, self._ask_qty = values

    @property
    def bid(self) -> Decimal | None:
        if self._bid.__class__ is str:
            self._parse_book()
        return self._bid  # type: ignore[return-value]

    @property
    def bid_qty(self) -> Decimal | None:
        if self._bid_qty.__class__ is str:
            self._parse_book()
        return self._bid_qty  # type: ignore[return-value]

    @property
    def ask(self) -> Decimal | None:
        if self._ask.__class__ is str:
            self._parse_book()
        return self._ask  # type: ignore[return-value]

    @property
    def ask_qty(self) -> Decimal | None:
        if self._ask_qty.__class__ is str:
            self._parse_book()
        return self._ask_qty  # type: ignore[return-value]

    @property
    def has_book(self) -> bool:
        """A usable book has been received (parsing it if still raw)."""
        return self.book_recv_mono is not None and self.bid is not None

    @property
    def has_mark(self) -> bool:
        return self.mark_recv_mono is not None

    @property
    def mid(self) -> Decimal | None:
        bid, ask = self.bid, self.ask
        if bid is None or ask is None:
            return None
        return (bid + ask) / 2

    def __repr__(self) -> str:
        return (f"SymbolState({self.symbol} bid={self.bid}x{self.bid_qty} ask={self.ask}x{self.ask_qty} "
                f"u={self.update_id} mark={self.mark} index={self.index} r={self.funding_rate})")


@dataclass(frozen=True)
class Changes:
    """Symbols whose book and/or mark changed since the strategy last took changes.

    The sets are handed over, not copied: the state starts new ones, so these never change.
    """

    books: Set[str] = field(default_factory=frozenset)
    marks: Set[str] = field(default_factory=frozenset)

    @property
    def symbols(self) -> Set[str]:
        return self.books | self.marks

    def __bool__(self) -> bool:
        return bool(self.books or self.marks)


class MarketState:
    """Per-symbol latest values plus the dirty sets the strategy loop drains.

    Single event loop only: readers and the strategy run as tasks on the same loop, so a
    symbol's fields are never seen half-written (no await inside an update).
    """

    def __init__(self, symbols: Iterable[str] = (), *, clock: Callable[[], float] | None = None) -> None:
        self._symbols: dict[str, SymbolState] = {s: SymbolState(s) for s in symbols}
        # ``clock``: receipt times come from it instead of the caller's (a replay's bot
        # clock follows the exchange's, executor/replay/runner.py).
        self.clock = clock
        self._dirty_books: set[str] = set()
        self._dirty_marks: set[str] = set()
        self._changed = asyncio.Event()
        self.book_updates = 0
        self.mark_updates = 0
        self.dropped = 0
        self.conflated = 0
        self.takes = 0
        self.candle_intervals: set[str] = set()
        self._candles: dict[tuple[str, str], deque[Candle]] = {}
        self._kline_event_ms: dict[str, int] = {}
        self.kline_updates = 0

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
        if book and (st.book_recv_mono is None or now - st.book_recv_mono > max_age or st.bid is None):
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
        return Changes(books, marks)

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

    def apply_book(self, symbol: str, update_id: int, bid: Decimal | str, bid_qty: Decimal | str,
                   ask: Decimal | str, ask_qty: Decimal | str, recv_mono: float, recv_wall: float) -> int:
        """Store a bookTicker update unless its ``u`` is not newer; returns DROPPED/APPLIED/CONFLATED.

        Prices and sizes are Decimals or the exchange's decimal strings (parsed on first read).
        """
        st = self._symbols.get(symbol) or self._slot(symbol)
        if self.clock is not None:
            recv_mono = self.clock()
        if update_id <= st.update_id and not st.book_resync:
            self.dropped += 1
            return DROPPED
        st.book_resync = False
        st.update_id = update_id
        st.set_book(bid, bid_qty, ask, ask_qty)
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
        if self.clock is not None:
            recv_mono = self.clock()
        if event_ms <= st.mark_event_ms and not st.mark_resync:
            self.dropped += 1
            return DROPPED
        st.mark_resync = False
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

    # -- candles -------------------------------------------------------------------------

    def track_candles(self, intervals: Iterable[str]) -> None:
        """Declare the kline intervals streamed into this state (``candles`` of others raise)."""
        self.candle_intervals.update(intervals)

    def apply_kline(self, symbol: str, event_ms: int, interval: str, candle: Candle, recv_mono: float,
                    recv_wall: float) -> int:
        """Store a kline update: it replaces the held candle with the same open time, or
        follows it; an older candle is DROPPED. Returns DROPPED or APPLIED."""
        rows = self._candles.get((symbol, interval))
        if rows is None:
            rows = self._candles[(symbol, interval)] = deque(maxlen=CANDLES_KEPT)
        if rows and candle.open_time < rows[-1].open_time:
            self.dropped += 1
            return DROPPED
        if rows and candle.open_time == rows[-1].open_time:
            last = rows[-1]
            # A closed candle is final; an update never takes back trades already counted.
            if last.closed or candle.trades < last.trades:
                self.dropped += 1
                return DROPPED
            rows[-1] = candle
        else:
            rows.append(candle)
        if event_ms > self._kline_event_ms.get(symbol, -1):
            self._kline_event_ms[symbol] = event_ms
        self.kline_updates += 1
        return APPLIED

    def kline_event_ms(self, symbol: str) -> int:
        """Event time of the newest kline update applied for ``symbol`` (-1: none)."""
        return self._kline_event_ms.get(symbol, -1)

    def candles(self, symbol: str, interval: str, n: int) -> list[Candle]:
        """The newest ``n`` candles, oldest first (the last may still be open)."""
        rows = self._candles.get((symbol, interval))
        if not rows or n <= 0:
            return []
        return list(rows)[-n:]

    def resync(self, symbols: Iterable[str], *, book: bool = False, mark: bool = False) -> None:
        """Accept the next update per symbol whatever its sequence (after a hard reconnect)."""
        for symbol in symbols:
            st = self._slot(symbol)
            if book:
                st.book_resync = True
            if mark:
                st.mark_resync = True
