"""The embedded exchange driven by a recording: the replay clock and the replay driver.

``ReplayClock`` is the exchange's clock during a replay. It starts at the recording's first
line and only the replay moves it: at ``speed=N`` it runs N times wall time once the
driver starts; at ``speed=None`` ("max") it stands still and the driver sets it to each
line's time before applying the line, so exchange time is exactly recording time however
fast the machine is. ``time_scale`` reports the speed (a very large number at max): the
sim widens recvWindow by it, because a replay's timeline is not this machine's wall clock.

``ReplaySource`` applies the recording to a ``SimExchange`` line by line:

* ``spot_book``: the symbol's top of book becomes the recorded touch, with the recorded
  sizes and **no deeper levels** (``Market.apply_recorded``); the spot stream publishes it
  (``u`` renumbered to rise by 1) and the matching engine fills resting orders the new
  touch reaches.
* ``mark``: the recorded ``markPriceUpdate`` becomes the symbol's mark, index and funding
  (``FuturesMarket.source`` reads ``mark_state``), pushed at once to every markPrice
  subscriber of that symbol (``listen``), with its recorded ``E`` — both ``@markPrice`` and
  ``@markPrice@1s`` carry every recorded mark.
* ``trade`` (imported aggTrades of the spot market): resting orders at or through the
  trade price fill at their own price, up to the trade's quantity. No queue position is
  modelled: a trade at our price fills us.
* ``fut_book``: kept as the latest futures touch (``futures_books``); the sim has no futures
  order book to put it in.
* ``gap``: counted and logged. Nothing was recorded during it, so the exchange publishes
  nothing and fills nothing for that stream; the bot, whose clock follows the exchange's,
  sees its data age and stops trading after ``[risk] stale_after_s`` exactly as it would
  live.

Matching, as stated for replays: a marketable order fills against the recorded touch up to
its recorded size, at the touch price (the taker fee of the account's tier applies); what
is left rests (GTC) until a later recorded touch reaches it, or expires (IOC/FOK/MARKET).
A resting order fills at its own price (maker fee) when a recorded touch on the other side
reaches or crosses it, up to that touch's size. Liquidity an order took is gone from the
touch until the next recorded update of that symbol.

Latency (``[replay] latency_ms``) is the runner's: it holds an order request on its way in
(``SimExchange.before_order``) and hands it over when the recording reaches its due time.

Pacing: ``barrier`` (awaited after every line) is how a replay at max speed waits for the
bot to finish reacting before the next line; ``on_time(t)`` is awaited before each line
with its time, before the clock moves to it (the runner fires the bot's timer from it and
hands delayed requests to the exchange at their own times). Both are given by the caller;
the exchange itself does not know the bot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from executor.core.money import parse_decimal
from executor.replay.format import Line, load_manifest, read_lines
from executor.sim.clock import SimClock
from executor.sim.futures_market import MarkState
from executor.sim.market import Book

log = logging.getLogger(__name__)

MAX_SPEED_SCALE = 1_000_000.0
MarkListener = Callable[[str, dict[str, Any]], None]


class ReplayClock(SimClock):
    """Exchange time taken from the recording (see the module docstring)."""

    def __init__(self, start_ms: int, speed: float | None) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive")
        super().__init__(time_scale=speed or 1.0, start_ms=start_ms)
        self.speed = speed
        self._virtual = float(start_ms)
        self._running_since: float | None = None  # wall monotonic when speed-N pacing began

    @property
    def time_scale(self) -> float:
        return self.speed if self.speed is not None else MAX_SPEED_SCALE

    def _now_float(self) -> float:
        if self._running_since is None:
            return self._virtual
        return self._virtual + (time.monotonic() - self._running_since) * 1000.0 * self._scale

    def now_ms(self) -> int:
        # The bot and the exchange read the clock many times a line (receipt times, the
        # strategy's now, order ages): at max speed it is a stored number, so skip the float
        # arithmetic of the paced clock. Same value as SimClock.now_ms.
        if self._running_since is None:
            return int(self._virtual) + self.skew_ms
        return int(self._now_float()) + self.skew_ms

    def begin(self) -> None:
        """Start speed-N pacing from the current time (no effect at max speed)."""
        if self.speed is not None and self._running_since is None:
            self._running_since = time.monotonic()

    def set_ms(self, ms: int) -> None:
        """Max speed: move to ``ms`` (never backwards)."""
        if self._running_since is None and ms > self._virtual:
            self._virtual = float(ms)

    def advance(self, ms: int) -> None:
        self._virtual += ms


def _d(value: Any, what: str) -> Decimal:
    return parse_decimal(value, what)


@dataclass
class ReplayStats:
    lines: int = 0
    books: int = 0
    marks: int = 0
    trades: int = 0
    futures_books: int = 0
    gaps: int = 0
    skipped: int = 0
    first_ms: int = 0
    last_ms: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0   # process CPU time during run() (exchange, bot and SQLite's thread)


def first_values(
    folder: Path | str, symbols: list[str], max_lines: int = 200_000
) -> tuple[int, dict[str, Line], dict[str, Line]]:
    """(first time, first spot book per symbol, first mark per symbol) from the start of a recording."""
    books: dict[str, Line] = {}
    marks: dict[str, Line] = {}
    first = None
    wanted = set(symbols)
    for n, line in enumerate(read_lines(folder, symbols=wanted)):
        if first is None:
            first = line.t
        if line.kind == "spot_book" and line.symbol not in books:
            books[line.symbol] = line
        elif line.kind == "mark" and line.symbol not in marks:
            marks[line.symbol] = line
        if (len(books) == len(wanted) and len(marks) == len(wanted)) or n >= max_lines:
            break
    if first is None:
        raise ValueError(f"{folder}: the recording has no lines for {', '.join(symbols)}")
    return first, books, marks


class ReplaySource:
    """Feeds one recording into one ``SimExchange`` (whose clock must be a ``ReplayClock``)."""

    def __init__(
        self,
        sim: Any,
        folder: Path | str,
        *,
        speed: float | None,
        barrier: Callable[[], Awaitable[None]] | None = None,
        on_time: Callable[[int], Awaitable[None]] | None = None,
        on_progress: Callable[[ReplayStats], None] | None = None,
    ) -> None:
        if not isinstance(sim.clock, ReplayClock):
            raise TypeError("a replay needs the exchange built with a ReplayClock")
        self.sim = sim
        self.folder = Path(folder)
        self.manifest = load_manifest(self.folder)
        self.speed = speed
        self.barrier = barrier
        self.on_time = on_time
        self.on_progress = on_progress
        self.clock: ReplayClock = sim.clock
        self.symbols = list(sim.specs)
        self.stats = ReplayStats()
        self.marks: dict[str, dict[str, Any]] = {}
        self.futures_books: dict[str, dict[str, Any]] = {}
        self.last_mark_ms: dict[str, int] = {}
        self.finished = asyncio.Event()
        self._listeners: list[MarkListener] = []
        self._primed: set[tuple[int, str, str]] = set()   # applied by prime(): not again in run()
        # FuturesMarket asks us for marks from now on (see futures_market.FuturesMarket.source).
        sim.futures.market.source = self

    # -- what the exchange reads -----------------------------------------------------------
    def mark_state(self, symbol: str) -> MarkState | None:
        d = self.marks.get(symbol)
        if d is None:
            return None
        mark = _d(d["p"], "p")
        index = _d(d.get("i", d["p"]), "i")
        return MarkState(
            symbol=symbol,
            time_ms=int(d["E"]),
            mark=mark,
            index=index,
            settle=_d(d.get("P", d["p"]), "P"),
            funding_rate=_d(d.get("r", "0"), "r"),
            next_funding_ms=int(d.get("T", 0)),
        )

    def listen(self, listener: MarkListener) -> Callable[[], None]:
        """``listener(symbol, payload)`` on every recorded mark; returns the unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # -- applying lines --------------------------------------------------------------------
    def apply(self, line: Line) -> bool:
        """Apply one line to the exchange; False if it concerns nothing the exchange lists."""
        kind, sym, d = line.kind, line.symbol, line.data
        st = self.stats
        if kind == "gap":
            st.gaps += 1
            log.info(
                "recording gap in %s: %d ms (%s)",
                d.get("stream"),
                int(d.get("to", 0)) - int(d.get("from", 0)),
                d.get("reason", ""),
            )
            return True
        if sym not in self.sim.specs:
            return False
        if kind == "spot_book":
            self.sim.market.apply_recorded(
                sym, _d(d["b"], "b"), _d(d["B"], "B"), _d(d["a"], "a"), _d(d["A"], "A")
            )
            st.books += 1
        elif kind == "mark":
            self.marks[sym] = d
            self.last_mark_ms[sym] = int(d["E"])
            for listener in list(self._listeners):
                listener(sym, d)
            st.marks += 1
        elif kind == "trade":
            if d.get("market", "spot") != "spot":
                return False
            price, qty = _d(d["p"], "p"), _d(d["q"], "q")
            # A one-level book at the trade price on both sides: engine.on_book fills resting
            # buys at or above it and sells at or below it, sharing the trade's quantity.
            spec = self.sim.specs[sym]
            tape = Book(symbol=sym, bid=price, bid_qty=qty, ask=price, ask_qty=qty, u=0, gap=spec.tick)
            self.sim.engine.on_book(tape)
            st.trades += 1
        elif kind == "fut_book":
            self.futures_books[sym] = d
            st.futures_books += 1
        else:
            return False
        return True

    def prime(self, books: dict[str, Line], marks: dict[str, Line]) -> None:
        """Put the first recorded book and mark of each symbol in place before the bot connects
        (the clock stands at the recording's first line; ``run`` does not apply them again)."""
        for line in (*books.values(), *marks.values()):
            self.apply(line)
            self._primed.add((line.t, line.kind, line.symbol))

    def republish(self) -> None:
        """Send the current books and marks again (the bot connecting needs a first update)."""
        for sym in self.symbols:
            self.sim.market.touch(sym)
            d = self.marks.get(sym)
            if d is not None:
                for listener in list(self._listeners):
                    listener(sym, d)

    # -- the run ----------------------------------------------------------------------------
    async def run(self) -> ReplayStats:
        st = self.stats
        start = time.monotonic()
        cpu = time.process_time()
        self.clock.begin()
        speed = self.speed
        barrier, on_time, progress = self.barrier, self.on_time, self.on_progress
        try:
            for line in read_lines(self.folder, symbols=set(self.symbols)):
                t = line.t
                if not st.first_ms:
                    st.first_ms = t
                st.last_ms = t
                if speed is None:
                    if on_time is not None:
                        await on_time(t)   # may first play out earlier exchange times (latency)
                    self.clock.set_ms(t)
                else:
                    ahead_ms = t - self.clock.now_ms()
                    if ahead_ms > 0:
                        await asyncio.sleep(ahead_ms / 1000.0 / speed)
                key = (t, line.kind, line.symbol)
                if key in self._primed:
                    self._primed.discard(key)
                    applied = True
                else:
                    applied = self.apply(line)
                st.lines += 1
                if not applied:
                    st.skipped += 1
                elif barrier is not None:
                    await barrier()
                if progress is not None and not st.lines & 0x3FF:
                    st.wall_s = time.monotonic() - start
                    progress(st)
        finally:
            st.wall_s = time.monotonic() - start
            st.cpu_s = time.process_time() - cpu
            self.finished.set()
        return st
