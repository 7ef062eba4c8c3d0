"""Public market-data streams of the embedded exchange, beyond bookTicker.

Owns what the spot stream host pushes for ``<symbol>@trade``, ``@aggTrade`` (real time,
from the tape's listeners), ``@kline_<interval>[@+HH:MM]`` (every 1000 ms for 1s, 2000 ms
for the other intervals, plus the closing update with ``x`` true when a candle ends),
``@miniTicker``, ``@ticker``, ``@avgPrice`` (every 1000 ms), ``@depth<5|10|20>[@100ms]``
(partial book) and ``@depth[@100ms]`` (diff depth), with the payloads of Binance's
web-socket-streams.md. All periods are sim time (``time_scale``); at high time scales
the loop wakes at most every 10 ms of wall time and a push then covers the whole span.

Diff depth follows the exchange's book exactly: the feed listens to book updates after
the matching engine (so liquidity an order took is already out), diffs each update's
levels against the previous ones (a level that disappears is sent with quantity 0), and
each event carries ``U`` = first and ``u`` = last book update id it covers, ``U`` being the
previous event's ``u`` + 1. ``GET /api/v3/depth``'s ``lastUpdateId`` is the same book ``u``,
so a client that keeps a local book the documented way ends up equal to the exchange's.

Connections (``market_ws.MarketConnection``) register with ``attach`` and receive
``deliver(stream_name, payload)`` for the streams they subscribed to; payloads are
computed once per push for all subscribers.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from executor.sim.market import DEPTH_LEVELS, Book, Market, fmt8
from executor.sim.tape import (
    AVG_PRICE_MINS,
    DAY_MS,
    INTERVALS,
    MINUTE_MS,
    AggTrade,
    Candle,
    Stats,
    Tape,
    TapeTrade,
    bucket_close,
    bucket_open,
    parse_time_zone,
)

log = logging.getLogger(__name__)
PARTIAL_LEVELS = (5, 10, 20)
STREAM_RE = re.compile(
    r"^(?P<sym>[a-z0-9]+)@(?P<kind>trade|aggTrade|miniTicker|ticker|avgPrice|bookTicker"
    r"|kline_(?P<iv>1s|1m|3m|5m|15m|30m|1h|2h|4h|6h|8h|12h|1d|3d|1w|1M)(?:@(?P<tz>[+-]\d{2}:\d{2}))?"
    r"|depth(?P<levels>5|10|20)?(?:@(?P<speed>100ms|1000ms))?)$")
MIN_WALL_S = 0.01
MAX_PENDING_LEVELS = 20_000


class Subscriber(Protocol):
    subs: list[str]

    def deliver(self, stream: str, payload: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class StreamSpec:
    """A parsed stream name."""

    name: str
    symbol: str
    # trade, aggTrade, kline, miniTicker, ticker, avgPrice, depth, partial or bookTicker
    kind: str
    interval: str = ""
    offset_ms: int = 0
    levels: int = 0
    fast: bool = False        # @100ms


def parse_stream(name: str, symbols: set[str]) -> StreamSpec | None:
    """``name`` as a stream the feed serves; None for other (silent) names or unknown symbols."""
    m = STREAM_RE.match(name)
    if m is None:
        return None
    sym = m["sym"].upper()
    if sym not in symbols:
        return None
    kind = m["kind"]
    if kind.startswith("kline_"):
        try:
            offset = parse_time_zone(m["tz"]) if m["tz"] else 0
        except ValueError:
            return None
        return StreamSpec(name, sym, "kline", interval=m["iv"], offset_ms=offset)
    if kind.startswith("depth"):
        fast = m["speed"] == "100ms"
        if m["levels"]:
            return StreamSpec(name, sym, "partial", levels=int(m["levels"]), fast=fast)
        return StreamSpec(name, sym, "depth", fast=fast)
    return StreamSpec(name, sym, kind)


def _levels(book: Book, side: str) -> dict[Decimal, Decimal]:
    return dict(book.levels(side, DEPTH_LEVELS))


@dataclass
class _DepthDiff:
    first: int = -1
    last: int = -1
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)


class DepthTracker:
    """Per symbol with a diff-depth subscriber (``active``): the book's levels as of its last
    update and the diffs not yet pushed (one accumulator per push speed). Symbols nobody
    follows cost nothing; a symbol becoming active starts from its book at that moment."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.levels: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal], int]] = {}
        self.pending: dict[tuple[str, bool], _DepthDiff] = {}
        self.active: set[str] = set()

    def set_active(self, symbols: set[str]) -> None:
        for sym in symbols - self.active:
            book = self.market.book(sym)
            self.levels[sym] = (_levels(book, "bid"), _levels(book, "ask"), book.u)
        for sym in self.active - symbols:
            self.levels.pop(sym, None)
            self.pending.pop((sym, True), None)
            self.pending.pop((sym, False), None)
        self.active = set(symbols)

    def on_book(self, book: Book) -> None:
        if book.symbol not in self.active:
            return
        old_bids, old_asks, _ = self.levels.get(book.symbol, ({}, {}, book.u - 1))
        for fast in (False, True):
            acc = self.pending.get((book.symbol, fast))
            if acc is not None and len(acc.bids) + len(acc.asks) > MAX_PENDING_LEVELS:
                # Nobody has taken these diffs for long (the pusher is not running): drop them.
                # A subscriber then sees U jump past its book and resyncs, as documented.
                del self.pending[(book.symbol, fast)]
        bids, asks = _levels(book, "bid"), _levels(book, "ask")
        self.levels[book.symbol] = (bids, asks, book.u)
        for fast in (False, True):
            acc = self.pending.setdefault((book.symbol, fast), _DepthDiff())
            if acc.first < 0:
                acc.first = book.u
            acc.last = book.u
            for old, new, out in ((old_bids, bids, acc.bids), (old_asks, asks, acc.asks)):
                for price in old:
                    if price not in new:
                        out[price] = Decimal(0)
                for price, qty in new.items():
                    if old.get(price) != qty:
                        out[price] = qty

    def take(self, symbol: str, fast: bool) -> _DepthDiff | None:
        acc = self.pending.pop((symbol, fast), None)
        return acc if acc is not None and acc.first >= 0 else None


def _pairs(levels: dict[Decimal, Decimal], reverse: bool, n: int | None = None) -> list[list[str]]:
    items = sorted(levels.items(), reverse=reverse)
    if n is not None:
        items = items[:n]
    return [[fmt8(p), fmt8(q)] for p, q in items]


def _pct(change: Decimal, base: Decimal) -> str:
    return f"{(change / base * 100):.3f}" if base else "0.000"


def kline_payload(spec: StreamSpec, c: Candle, closed: bool, now: int) -> dict[str, Any]:
    return {"e": "kline", "E": now, "s": spec.symbol, "k": {
        "t": c.open_time, "T": c.close_time, "s": spec.symbol, "i": spec.interval, "f": c.first_id,
        "L": c.last_id, "o": fmt8(c.open), "c": fmt8(c.close), "h": fmt8(c.high), "l": fmt8(c.low),
        "v": fmt8(c.volume), "n": c.count, "x": closed, "q": fmt8(c.quote_volume),
        "V": fmt8(c.taker_buy_base), "Q": fmt8(c.taker_buy_quote), "B": "0"}}


def trade_payload(symbol: str, t: TapeTrade, now: int) -> dict[str, Any]:
    return {"e": "trade", "E": now, "s": symbol, "t": t.id, "p": fmt8(t.price), "q": fmt8(t.qty), "T": t.time,
            "m": t.buyer_maker, "M": True}


def agg_payload(symbol: str, a: AggTrade, now: int) -> dict[str, Any]:
    return {"e": "aggTrade", "E": now, "s": symbol, "a": a.id, "p": fmt8(a.price), "q": fmt8(a.qty),
            "f": a.first_id, "l": a.last_id, "T": a.time, "m": a.buyer_maker, "M": True}


def day_stats(tape: Tape, symbol: str, now: int) -> Stats:
    """The 24 h rolling statistics: reported over exactly [now - 24 h, now] as Binance does;
    the trades counted are those of the minute candles from the one holding now - 24 h
    (the tape keeps minutes, not every trade of a day; up to 59.999 s more, as the
    rolling-window ticker documents for itself)."""
    st = tape.stats(symbol, (now - DAY_MS) // MINUTE_MS * MINUTE_MS, now)
    st.open_time = now - DAY_MS
    return st


def ticker_payload(tape: Tape, market: Market, symbol: str, now: int, mini: bool) -> dict[str, Any]:
    st = day_stats(tape, symbol, now)
    c = st.candle
    zero = Decimal(0)
    o, h, lo, cl = (c.open, c.high, c.low, c.close) if c else (zero, zero, zero, zero)
    v, q = (c.volume, c.quote_volume) if c else (zero, zero)
    if mini:
        return {"e": "24hrMiniTicker", "E": now, "s": symbol, "c": fmt8(cl), "o": fmt8(o), "h": fmt8(h),
                "l": fmt8(lo), "v": fmt8(v), "q": fmt8(q)}
    t = market.book(symbol).ticker()
    return {"e": "24hrTicker", "E": now, "s": symbol, "p": fmt8(cl - o), "P": _pct(cl - o, o),
            "w": fmt8(q / v if v else zero), "x": fmt8(st.prev_close if st.prev_close is not None else zero),
            "c": fmt8(cl), "Q": fmt8(st.last_qty or zero), "b": t["b"], "B": t["B"], "a": t["a"], "A": t["A"],
            "o": fmt8(o), "h": fmt8(h), "l": fmt8(lo), "v": fmt8(v), "q": fmt8(q), "O": st.open_time,
            "C": st.close_time, "F": c.first_id if c else -1, "L": c.last_id if c else -1,
            "n": c.count if c else 0}


class MarketFeed:
    """Computes and pushes the streams above to every attached subscriber."""

    def __init__(self, clock: Any, market: Market, tape: Tape) -> None:
        self.clock = clock
        self.market = market
        self.tape = tape
        self.depth = DepthTracker(market)
        self._subscribers: list[Subscriber] = []
        self._symbols = set(market.specs)
        self._kline_open: dict[str, Candle | None] = {}     # stream -> last candle pushed
        self._last_push: dict[int, int] = {}
        market.subscribe(self.depth.on_book)
        tape.subscribe(self._on_trade, self._on_agg)

    # -- subscribers ----------------------------------------------------------------------------
    def attach(self, sub: Subscriber) -> Callable[[], None]:
        """Register a connection; call ``refresh`` after its subscriptions change (``push``
        also does, every 100 ms)."""
        self._subscribers.append(sub)
        self.refresh()

        def detach() -> None:
            if sub in self._subscribers:
                self._subscribers.remove(sub)
            self.refresh()
        return detach

    def refresh(self) -> dict[str, StreamSpec]:
        """Re-read every connection's subscriptions; start or stop following diff depth."""
        wanted = self._wanted() if self._subscribers else {}
        self.depth.set_active({s.symbol for s in wanted.values() if s.kind == "depth"})
        return wanted

    @property
    def subscriber_count(self) -> int:
        """Connections attached now (tests wait for theirs before trading)."""
        return len(self._subscribers)

    def is_subscribed(self, stream: str) -> bool:
        """Some attached connection listens to ``stream``."""
        return any(stream in sub.subs for sub in self._subscribers)

    def _wanted(self) -> dict[str, StreamSpec]:
        out: dict[str, StreamSpec] = {}
        for sub in self._subscribers:
            for name in sub.subs:
                if name not in out:
                    spec = parse_stream(name, self._symbols)
                    if spec is not None:
                        out[name] = spec
        return out

    def _deliver(self, name: str, payload: dict[str, Any]) -> None:
        for sub in list(self._subscribers):
            if name in sub.subs:
                sub.deliver(name, payload)

    # -- real-time streams ----------------------------------------------------------------------
    def _on_trade(self, symbol: str, trade: TapeTrade) -> None:
        if self._subscribers:
            self._deliver(f"{symbol.lower()}@trade", trade_payload(symbol, trade, self.clock.now_ms()))

    def _on_agg(self, symbol: str, agg: AggTrade) -> None:
        if self._subscribers:
            self._deliver(f"{symbol.lower()}@aggTrade", agg_payload(symbol, agg, self.clock.now_ms()))

    # -- periodic streams -----------------------------------------------------------------------
    def _due(self, period_ms: int, now: int) -> bool:
        last = self._last_push.get(period_ms)
        if last is None or now // period_ms != last // period_ms:
            self._last_push[period_ms] = now
            return True
        return False

    def push(self, now: int | None = None) -> None:
        """One round: push every periodic stream whose period has come round."""
        now = self.clock.now_ms() if now is None else now
        fast, second, two = self._due(100, now), self._due(1000, now), self._due(2000, now)
        wanted = self.refresh()
        depth_symbols = self.depth.active
        for sym in self._symbols:
            # Diffs accumulate whether or not anyone listens; an unheard push is dropped.
            for speed, due in ((True, fast), (False, second)):
                if due:
                    diff = self.depth.take(sym, speed)
                    if diff is not None and sym in depth_symbols:
                        name = f"{sym.lower()}@depth" + ("@100ms" if speed else "")
                        self._deliver(name, {"e": "depthUpdate", "E": now, "s": sym, "U": diff.first,
                                             "u": diff.last, "b": _pairs(diff.bids, True),
                                             "a": _pairs(diff.asks, False)})
        for name, spec in wanted.items():
            if spec.kind == "depth" or spec.kind in ("trade", "aggTrade", "bookTicker"):
                continue
            if spec.kind == "partial":
                if (spec.fast and fast) or (not spec.fast and second):
                    book = self.market.book(spec.symbol)
                    self._deliver(name, {"lastUpdateId": book.u,
                                         "bids": _pairs(_levels(book, "bid"), True, spec.levels),
                                         "asks": _pairs(_levels(book, "ask"), False, spec.levels)})
            elif spec.kind == "kline":
                self._push_kline(spec, now, second if spec.interval == "1s" else two)
            elif second and spec.kind in ("miniTicker", "ticker"):
                self._deliver(name, ticker_payload(self.tape, self.market, spec.symbol, now,
                                                   spec.kind == "miniTicker"))
            elif second and spec.kind == "avgPrice":
                price, last_time = self.tape.avg_price(spec.symbol, now)
                self._deliver(name, {"e": "avgPrice", "E": now, "s": spec.symbol, "i": f"{AVG_PRICE_MINS}m",
                                     "w": fmt8(price), "T": last_time})
        for name in [n for n in self._kline_open if n not in wanted]:
            del self._kline_open[name]

    def _push_kline(self, spec: StreamSpec, now: int, due: bool) -> None:
        last = self._kline_open.get(spec.name)
        current_open = bucket_open(spec.interval, now, spec.offset_ms)
        if last is not None and last.open_time != current_open:
            # The candle we last pushed has ended: its final state, with x true, at once.
            final = self.tape.candles(spec.symbol, spec.interval, spec.offset_ms, start=last.open_time,
                                      end=last.open_time, limit=1)
            if final:
                self._deliver(spec.name, kline_payload(spec, final[0], True, now))
            self._kline_open[spec.name] = None
            due = True
        if not due:
            return
        candle = self.tape.current_candle(spec.symbol, spec.interval, spec.offset_ms, now)
        if candle is None:
            # No trade yet in this interval: Binance shows it flat at the last price, empty.
            prev = self.tape.last_trade(spec.symbol)
            if prev is not None:
                p = prev.price
            else:
                book = self.market.book(spec.symbol)
                p = (book.bid + book.ask) / 2
            start = current_open
            candle = Candle(start, bucket_close(spec.interval, start, spec.offset_ms), p, p, p, p)
        self._kline_open[spec.name] = candle
        self._deliver(spec.name, kline_payload(spec, candle, False, now))

    async def run(self) -> None:
        """Background pusher: every 100 ms of sim time (at least 10 ms of wall time)."""
        while True:
            await asyncio.sleep(max(self.clock.wall_seconds(0.1), MIN_WALL_S))
            try:
                self.push()
            except Exception:
                # A bug in one payload must not silence every stream for the rest of the run.
                log.exception("market feed: push failed; carrying on")


__all__ = ["INTERVALS", "MarketFeed", "StreamSpec", "parse_stream"]
