"""The embedded exchange's public trade tape: trades, aggregate trades, candles, statistics.

Every trade printed on a symbol goes on its tape, whoever traded: the spot engine's own
matches (``record_fill``, called by the engine for each fill, with the engine's trade id)
and the market's simulated trades (``on_book``: on a book update, with probability
``trades_per_update``, a market taker hits the bid or lifts the ask with one to three
fills at that price; a replay or a test may print one with ``print_trade``). So the tape
moves even when no account of ours trades. Trade ids come from the engine's per-symbol
counter, so ``GET /api/v3/trades`` and ``myTrades`` number trades the same way.

From the tape the exchange derives, all on the sim clock:

* **aggregate trades**: consecutive fills from the same taker order at the same price and
  time are one aggregate trade (rest-api.md "Compressed/Aggregate trades list");
* **candles**: one-minute candles are kept (``max_minutes``); any interval of a minute or
  more (1m … 1M, in any ``timeZone`` offset) is an aggregation of them, and 1s candles
  are built from the trades themselves;
* **rolling statistics** (``stats(start, end)``) over minute candles: ``/ticker`` and the
  24 h tickers open on a minute as Binance documents for the rolling window;
* the 5-minute **average price** (``avg_price``).

Memory is bounded: at most ``max_trades`` trades and aggregate trades and ``max_minutes``
minute candles per symbol are kept (the oldest are dropped), so history queries reach
back as far as those allow. Listeners (``subscribe``) see each trade at once and each
aggregate trade once it is complete (after the engine call that printed it returns).
"""

from __future__ import annotations

import asyncio
import bisect
import calendar
import datetime as dt
import hashlib
import math
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from executor.sim.clock import SimClock
from executor.sim.market import Book, Market

ZERO = Decimal(0)
SECOND_MS = 1000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
# Binance's weeks open on Monday 00:00; the epoch (1970-01-01) was a Thursday.
WEEK_SHIFT_MS = 4 * DAY_MS
INTERVALS: dict[str, int] = {
    "1s": SECOND_MS, "1m": MINUTE_MS, "3m": 3 * MINUTE_MS, "5m": 5 * MINUTE_MS, "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS, "1h": HOUR_MS, "2h": 2 * HOUR_MS, "4h": 4 * HOUR_MS, "6h": 6 * HOUR_MS,
    "8h": 8 * HOUR_MS, "12h": 12 * HOUR_MS, "1d": DAY_MS, "3d": 3 * DAY_MS, "1w": WEEK_MS, "1M": 0,
}
AVG_PRICE_MINS = 5
# Memory bounds per symbol: about 2 h of trades at the default pace (6 a second), and 8 days
# of minute candles (the 7 d rolling window plus a day).
MAX_TRADES = 50_000
MAX_MINUTES = 60 * 24 * 8


@dataclass(slots=True)
class TapeTrade:
    """One public trade (``GET /api/v3/trades`` row, ``@trade`` event)."""

    id: int
    price: Decimal
    qty: Decimal
    time: int
    buyer_maker: bool

    @property
    def quote_qty(self) -> Decimal:
        return self.price * self.qty


@dataclass(slots=True)
class AggTrade:
    """Fills of one taker order at one price and time (``aggTrades`` row, ``@aggTrade``)."""

    id: int
    price: Decimal
    qty: Decimal
    first_id: int
    last_id: int
    time: int
    buyer_maker: bool
    taker: Any = None


@dataclass(slots=True)
class Candle:
    """One kline: OHLC, volumes, trade count and first/last trade ids of its trades."""

    open_time: int
    close_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = ZERO
    quote_volume: Decimal = ZERO
    count: int = 0
    taker_buy_base: Decimal = ZERO
    taker_buy_quote: Decimal = ZERO
    first_id: int = -1
    last_id: int = -1

    @classmethod
    def of(cls, open_time: int, close_time: int, trade: TapeTrade) -> Candle:
        c = cls(open_time, close_time, trade.price, trade.price, trade.price, trade.price)
        c.first_id = trade.id
        c.add(trade, first=True)
        return c

    def add(self, trade: TapeTrade, *, first: bool = False) -> None:
        if not first:
            if trade.price > self.high:
                self.high = trade.price
            if trade.price < self.low:
                self.low = trade.price
            self.close = trade.price
        quote = trade.price * trade.qty
        self.volume += trade.qty
        self.quote_volume += quote
        self.count += 1
        if not trade.buyer_maker:          # the taker bought
            self.taker_buy_base += trade.qty
            self.taker_buy_quote += quote
        self.last_id = trade.id

    def merge(self, other: Candle) -> None:
        """Fold a later candle into this one (``other`` starts after this one's trades)."""
        self.high = max(self.high, other.high)
        self.low = min(self.low, other.low)
        self.close = other.close
        self.volume += other.volume
        self.quote_volume += other.quote_volume
        self.count += other.count
        self.taker_buy_base += other.taker_buy_base
        self.taker_buy_quote += other.taker_buy_quote
        self.last_id = other.last_id

    def copy(self, open_time: int, close_time: int) -> Candle:
        return Candle(open_time, close_time, self.open, self.high, self.low, self.close, self.volume,
                      self.quote_volume, self.count, self.taker_buy_base, self.taker_buy_quote, self.first_id,
                      self.last_id)


@dataclass
class Stats:
    """Statistics of a window: what the tickers report (``candle`` is None without trades)."""

    open_time: int
    close_time: int
    candle: Candle | None
    prev_close: Decimal | None
    last_qty: Decimal | None


# -- interval arithmetic (pure) -------------------------------------------------------------------

def parse_time_zone(raw: str | None) -> int:
    """``timeZone`` ("0", "8", "-1:00", "05:45", "+14:00") -> offset in ms; ValueError if invalid
    or outside Binance's accepted [-12:00, +14:00]."""
    if raw is None or raw == "":
        return 0
    text = raw.strip()
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    hours_s, _, minutes_s = body.partition(":")
    if not hours_s.isdigit() or (minutes_s and not minutes_s.isdigit()) or len(hours_s) > 2 or \
            (minutes_s and len(minutes_s) != 2):
        raise ValueError(f"bad timeZone {raw!r}")
    minutes = int(hours_s) * 60 + (int(minutes_s) if minutes_s else 0)
    if (minutes_s and int(minutes_s) >= 60) or (sign < 0 and minutes > 12 * 60) or \
            (sign > 0 and minutes > 14 * 60):
        raise ValueError(f"timeZone {raw!r} outside [-12:00, +14:00]")
    return sign * minutes * MINUTE_MS


def bucket_open(interval: str, t: int, offset_ms: int = 0) -> int:
    """Open time (UTC ms) of the ``interval`` candle holding ``t``, in a zone ``offset_ms`` from UTC."""
    local = t + offset_ms
    if interval == "1M":
        day = dt.datetime.fromtimestamp(local // 1000, dt.UTC)
        start = dt.datetime(day.year, day.month, 1, tzinfo=dt.UTC)
        return int(start.timestamp()) * 1000 - offset_ms
    size = INTERVALS[interval]
    if interval == "1w":
        return (local - WEEK_SHIFT_MS) // size * size + WEEK_SHIFT_MS - offset_ms
    return local // size * size - offset_ms


def bucket_close(interval: str, open_ms: int, offset_ms: int = 0) -> int:
    """Close time (inclusive, ms) of the candle opening at ``open_ms``."""
    if interval == "1M":
        local = dt.datetime.fromtimestamp((open_ms + offset_ms) // 1000, dt.UTC)
        days = calendar.monthrange(local.year, local.month)[1]
        return open_ms + days * DAY_MS - 1
    return open_ms + INTERVALS[interval] - 1


def candles_from_trades(trades: Iterable[TapeTrade], interval: str, offset_ms: int = 0) -> list[Candle]:
    """Candles of ``interval`` from trades in time order (only intervals that had trades)."""
    out: list[Candle] = []
    for tr in trades:
        start = bucket_open(interval, tr.time, offset_ms)
        if out and out[-1].open_time == start:
            out[-1].add(tr)
        else:
            out.append(Candle.of(start, bucket_close(interval, start, offset_ms), tr))
    return out


def _fmt(value: Decimal) -> str:
    return f"{value:.8f}"


def kline_row(c: Candle) -> list[Any]:
    """A ``GET /api/v3/klines`` row."""
    return [c.open_time, _fmt(c.open), _fmt(c.high), _fmt(c.low), _fmt(c.close), _fmt(c.volume),
            c.close_time, _fmt(c.quote_volume), c.count, _fmt(c.taker_buy_base), _fmt(c.taker_buy_quote), "0"]


# -- the tape ----------------------------------------------------------------------------------------

TradeListener = Callable[[str, TapeTrade], None]
AggListener = Callable[[str, AggTrade], None]


@dataclass
class SymbolTape:
    trades: deque[TapeTrade]
    aggs: deque[AggTrade]
    minutes: deque[Candle]
    last_time: int = 0
    open_agg: AggTrade | None = None
    next_agg_id: int = 0
    pending_aggs: list[AggTrade] = field(default_factory=list)


def _seed_for(seed: int, symbol: str) -> int:
    return int.from_bytes(hashlib.sha256(f"tape:{seed}:{symbol}".encode()).digest()[:8], "big")


class Tape:
    """Per-symbol trade tape of the embedded exchange (see the module docstring)."""

    def __init__(self, clock: SimClock, market: Market, next_trade_id: Callable[[str], int], *,
                 seed: int = 7, trades_per_update: float = 0.3, max_trades: int = MAX_TRADES,
                 max_minutes: int = MAX_MINUTES) -> None:
        self.clock = clock
        self.market = market
        self._next_trade_id = next_trade_id
        self.trades_per_update = trades_per_update
        self.symbols: dict[str, SymbolTape] = {
            s: SymbolTape(deque(maxlen=max_trades), deque(maxlen=max_trades), deque(maxlen=max_minutes),
                          next_agg_id=100 + (seed % 1000) * 10)
            for s in market.specs}
        self._rngs = {s: random.Random(_seed_for(seed, s)) for s in market.specs}
        self._trade_listeners: list[TradeListener] = []
        self._agg_listeners: list[AggListener] = []
        self._flush_scheduled = False

    # -- listeners ------------------------------------------------------------------------------
    def subscribe(self, on_trade: TradeListener | None = None, on_agg: AggListener | None = None
                  ) -> Callable[[], None]:
        if on_trade is not None:
            self._trade_listeners.append(on_trade)
        if on_agg is not None:
            self._agg_listeners.append(on_agg)

        def unsubscribe() -> None:
            if on_trade in self._trade_listeners:
                self._trade_listeners.remove(on_trade)   # type: ignore[arg-type]
            if on_agg in self._agg_listeners:
                self._agg_listeners.remove(on_agg)       # type: ignore[arg-type]
        return unsubscribe

    # -- recording ------------------------------------------------------------------------------
    def record_fill(self, symbol: str, trade_id: int, price: Decimal, qty: Decimal, time_ms: int,
                    buyer_maker: bool, taker: Any) -> TapeTrade:
        """Put one fill on the tape; ``taker`` identifies the taker order (for aggregation)."""
        st = self.symbols[symbol]
        # The clock can be skewed backwards by a fault; the tape's times never go back.
        t = max(time_ms, st.last_time)
        st.last_time = t
        trade = TapeTrade(trade_id, price, qty, t, buyer_maker)
        st.trades.append(trade)
        self._add_minute(st, trade)
        agg = st.open_agg
        if agg is not None and agg.taker == taker and agg.price == price and agg.time == t \
                and agg.last_id == trade_id - 1:
            agg.qty += qty
            agg.last_id = trade_id
        else:
            if agg is not None:
                st.pending_aggs.append(agg)
            st.open_agg = AggTrade(st.next_agg_id, price, qty, trade_id, trade_id, t, buyer_maker, taker)
            st.next_agg_id += 1
            st.aggs.append(st.open_agg)
        for listener in list(self._trade_listeners):
            listener(symbol, trade)
        self._schedule_flush()
        return trade

    def print_trade(self, symbol: str, price: Decimal, qty: Decimal, buyer_maker: bool, *,
                    fills: int = 1, taker: Any = None) -> list[TapeTrade]:
        """A market trade not involving our accounts (simulated or replayed): ``fills`` fills of
        ``qty`` split as evenly as the step allows, one taker, one price."""
        step = self.market.specs[symbol].step
        now = self.clock.now_ms()
        taker = taker if taker is not None else ("market", symbol, now, self._rngs[symbol].random())
        parts = _split(qty, fills, step)
        return [self.record_fill(symbol, self._next_trade_id(symbol), price, q, now, buyer_maker, taker)
                for q in parts]

    def on_book(self, book: Book) -> None:
        """Book update: maybe a simulated market trade at the touch (not for forced books)."""
        if book.symbol in self.market.frozen_symbols or self.trades_per_update <= 0:
            return
        rng = self._rngs[book.symbol]
        if rng.random() >= self.trades_per_update:
            return
        spec = self.market.specs[book.symbol]
        buy = rng.random() < 0.5
        price = book.ask if buy else book.bid
        if price <= 0:
            return
        notional = math.exp(rng.gauss(math.log(2000.0), 1.0))
        units = (Decimal(repr(notional)) / price / spec.step).to_integral_value(rounding=ROUND_FLOOR)
        qty = units * spec.step
        if qty < spec.step:
            qty = spec.step
        fills = rng.choice((1, 1, 1, 2, 3))
        # A buying taker: the seller was the maker (buyer_maker False).
        self.print_trade(book.symbol, price, qty, buyer_maker=not buy, fills=fills)

    def _add_minute(self, st: SymbolTape, trade: TapeTrade) -> None:
        start = trade.time // MINUTE_MS * MINUTE_MS
        if st.minutes and st.minutes[-1].open_time == start:
            st.minutes[-1].add(trade)
        else:
            st.minutes.append(Candle.of(start, start + MINUTE_MS - 1, trade))

    def _schedule_flush(self) -> None:
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return        # no loop (a plain test): listeners get aggregates on flush_aggs()
        self._flush_scheduled = True
        loop.call_soon(self.flush_aggs)

    def flush_aggs(self) -> None:
        """Publish every aggregate trade completed so far (the open one counts as complete:
        an engine call's fills are all recorded before this runs)."""
        self._flush_scheduled = False
        for symbol, st in self.symbols.items():
            done = st.pending_aggs
            if st.open_agg is not None:
                done.append(st.open_agg)
                st.open_agg = None
            st.pending_aggs = []
            for agg in done:
                for listener in list(self._agg_listeners):
                    listener(symbol, agg)

    # -- queries --------------------------------------------------------------------------------
    def recent(self, symbol: str, limit: int) -> list[TapeTrade]:
        trades = self.symbols[symbol].trades
        return list(trades)[-limit:] if limit < len(trades) else list(trades)

    def historical(self, symbol: str, from_id: int | None, limit: int) -> list[TapeTrade]:
        if from_id is None:
            return self.recent(symbol, limit)
        trades = list(self.symbols[symbol].trades)
        i = bisect.bisect_left([t.id for t in trades], from_id)
        return trades[i:i + limit]

    def last_trade(self, symbol: str) -> TapeTrade | None:
        trades = self.symbols[symbol].trades
        return trades[-1] if trades else None

    def agg_trades(self, symbol: str, *, from_id: int | None = None, start: int | None = None,
                   end: int | None = None, limit: int = 500) -> list[AggTrade]:
        aggs = list(self.symbols[symbol].aggs)
        if from_id is not None:
            i = bisect.bisect_left([a.id for a in aggs], from_id)
            rows = aggs[i:]
            if start is not None:
                rows = [a for a in rows if a.time >= start]
            if end is not None:
                rows = [a for a in rows if a.time <= end]
            return rows[:limit]
        if start is None and end is None:
            return aggs[-limit:]
        rows = [a for a in aggs if (start is None or a.time >= start) and (end is None or a.time <= end)]
        return rows[:limit] if start is not None else rows[-limit:]

    def _minutes_between(self, symbol: str, start: int, end: int) -> tuple[Candle | None, list[Candle]]:
        """(the last minute candle before ``start``, the minute candles opening in [start, end])."""
        minutes = list(self.symbols[symbol].minutes)
        opens = [c.open_time for c in minutes]
        lo = bisect.bisect_left(opens, start // MINUTE_MS * MINUTE_MS)
        hi = bisect.bisect_right(opens, end)
        return (minutes[lo - 1] if lo > 0 else None), minutes[lo:hi]

    def candles(self, symbol: str, interval: str, offset_ms: int = 0, *, start: int | None = None,
                end: int | None = None, limit: int = 500) -> list[Candle]:
        """Klines of ``interval`` (only intervals with trades), selected as ``/api/v3/klines`` does:
        open time within [start, end]; neither: the most recent ``limit``."""
        if interval not in INTERVALS:
            raise ValueError(f"unknown interval {interval!r}")
        # ``end`` bounds candle open times: the candle opening at ``end`` is taken whole.
        hi = None if end is None else bucket_close(interval, bucket_open(interval, end, offset_ms), offset_ms)
        if interval == "1s":
            lo = bucket_open("1s", start) if start is not None else None
            out = candles_from_trades(self._trades_between(symbol, lo, hi, limit if start is None else None),
                                      "1s", offset_ms)
        else:
            minutes = self.symbols[symbol].minutes
            lo = bucket_open(interval, start, offset_ms) if start is not None else None
            rows = [m for m in minutes
                    if (lo is None or m.open_time >= lo) and (hi is None or m.open_time <= hi)]
            out = []
            for m in rows:
                b = bucket_open(interval, m.open_time, offset_ms)
                if out and out[-1].open_time == b:
                    out[-1].merge(m)
                else:
                    out.append(m.copy(b, bucket_close(interval, b, offset_ms)))
        out = [c for c in out
               if (start is None or c.open_time >= start) and (end is None or c.open_time <= end)]
        if start is None:
            return out[-limit:]
        return out[:limit]

    def _trades_between(self, symbol: str, lo: int | None, hi: int | None,
                        newest_seconds: int | None) -> list[TapeTrade]:
        """Trades with time in [lo, hi], scanned from the newest back (recent queries stay
        cheap however long the tape); ``newest_seconds`` stops after that many distinct
        seconds (the most recent 1s candles)."""
        out: list[TapeTrade] = []
        seconds = 0
        last_second = None
        for t in reversed(self.symbols[symbol].trades):
            if hi is not None and t.time > hi:
                continue
            if lo is not None and t.time < lo:
                break
            second = t.time // SECOND_MS
            if second != last_second:
                if newest_seconds is not None and seconds >= newest_seconds:
                    break
                seconds += 1
                last_second = second
            out.append(t)
        out.reverse()
        return out

    def current_candle(self, symbol: str, interval: str, offset_ms: int = 0,
                       now: int | None = None) -> Candle | None:
        """The candle of ``interval`` open at ``now`` (None if it has no trades yet)."""
        now = self.clock.now_ms() if now is None else now
        start = bucket_open(interval, now, offset_ms)
        rows = self.candles(symbol, interval, offset_ms, start=start, end=now, limit=1)
        return rows[0] if rows and rows[0].open_time == start else None

    def stats(self, symbol: str, start: int, end: int) -> Stats:
        """Statistics of trades in minute candles opening in [start, end] (start on a minute)."""
        before, rows = self._minutes_between(symbol, start, end)
        candle: Candle | None = None
        for m in rows:
            if candle is None:
                candle = m.copy(start, end)
            else:
                candle.merge(m)
        prev = before.close if before is not None else None
        last = self.last_trade(symbol)
        return Stats(start, end, candle, prev, last.qty if last is not None and candle is not None else None)

    def avg_price(self, symbol: str, now: int | None = None) -> tuple[Decimal, int]:
        """(weighted average price of the last 5 minutes' trades, last trade time); with no
        trade in that window the last trade's price, or the mid when the tape is empty."""
        now = self.clock.now_ms() if now is None else now
        window = self.stats(symbol, (now - AVG_PRICE_MINS * MINUTE_MS) // MINUTE_MS * MINUTE_MS, now)
        last = self.last_trade(symbol)
        last_time = last.time if last is not None else 0
        c = window.candle
        if c is not None and c.volume > 0:
            return (c.quote_volume / c.volume).quantize(Decimal("0.00000001")), last_time
        if last is not None:
            return last.price, last_time
        book = self.market.book(symbol)
        return (book.bid + book.ask) / 2, last_time


def _split(qty: Decimal, parts: int, step: Decimal) -> list[Decimal]:
    """``qty`` in ``parts`` positive multiples of ``step`` (fewer parts when it is too small)."""
    units = int(qty / step)
    parts = max(1, min(parts, units))
    base, extra = divmod(units, parts)
    return [step * (base + (1 if i < extra else 0)) for i in range(parts)]
