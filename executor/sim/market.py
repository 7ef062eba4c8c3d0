"""The embedded exchange's market: symbol rules and a top-of-book per symbol.

Two sources drive the books:

* **Synthetic** (default): a seeded random walk of the mid price per symbol, a spread of one
  to a few ticks, random top-of-book sizes, and four deeper levels on each side (the
  liquidity a marketable order walks and ``/api/v3/depth`` shows). Each update bumps the
  symbol's ``u`` by exactly 1, so a client can check stream continuity.
* **Replay**: a JSONL file of recorded bookTicker messages (``sim.market_file``).

Replay file format (one JSON object per line; blank lines and lines starting with ``#``
are skipped)::

    {"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}
    {"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"60000.00","B":"1.5","a":"60000.01","A":"2"}}
    {"t":1785571200123,"u":7,"s":"ETHUSDT","b":"3000.00","B":"10","a":"3000.01","A":"8"}

A line is either a raw ``<symbol>@bookTicker`` payload or its combined-stream wrapper.
An optional integer ``t`` (recording time in ms, on the line's top level) paces the replay:
the gap between consecutive ``t`` values is waited in sim time; lines without ``t`` are
played at ``book_update_hz``. The recorded ``u`` is not reused: the sim renumbers updates
so ``u`` rises by 1 per update per symbol. Lines for symbols the sim does not list are
ignored. At the end of the file the replay starts again from the first line.

Matching reads ``levels()``: quantity taken by orders is subtracted from the current
levels until the next book update, so two quick orders cannot both take the whole top.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

from executor.sim.clock import SimClock

QUOTES = ("USDT", "USDC", "FDUSD", "TUSD", "BTC", "ETH", "BNB", "EUR")
DEPTH_LEVELS = 5
# The synthetic spot book of this one venue strays from the fair price (what the futures
# index tracks: an average over venues) and arbitrage pulls it back: an Ornstein-Uhlenbeck
# dislocation on top of the fair random walk. Without it spot and mark would move
# independently and no spot strategy could have an edge to find on the sim.
DISLOCATION_STD = 0.002           # stationary standard deviation, as a fraction of the price
DISLOCATION_HALF_LIFE_S = 10.0    # seconds of exchange time for half of it to close


@dataclass(frozen=True)
class SymbolSpec:
    """One symbol's trading rules, as exchangeInfo publishes them."""

    symbol: str
    base: str
    quote: str
    tick: Decimal
    step: Decimal
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000")
    min_qty: Decimal = Decimal("0.00001")
    max_qty: Decimal = Decimal("9000")
    market_max_qty: Decimal = Decimal("80")
    min_notional: Decimal = Decimal("5")
    max_notional: Decimal = Decimal("9000000")
    max_num_orders: int = 200
    # exchangeInfo "status": TRADING, or BREAK / HALT / END_OF_DAY / CANCEL_ONLY where new orders
    # are refused (SimExchange.set_symbol_status changes it on a live exchange).
    status: str = "TRADING"

    @classmethod
    def for_symbol(cls, symbol: str, price: Decimal) -> SymbolSpec:
        quote = next((q for q in QUOTES if symbol.endswith(q) and len(symbol) > len(q)), None)
        if quote is None:
            raise ValueError(f"cannot tell the quote asset of {symbol!r}")
        base = symbol[: -len(quote)]
        if price >= 1000:
            tick, step = Decimal("0.01"), Decimal("0.00001")
        elif price >= 10:
            tick, step = Decimal("0.01"), Decimal("0.0001")
        else:
            tick, step = Decimal("0.0001"), Decimal("0.1")
        return cls(symbol=symbol, base=base, quote=quote, tick=tick, step=step,
                   min_price=tick, min_qty=step, max_qty=Decimal("9000") if step < 1 else Decimal("9000000"),
                   market_max_qty=Decimal("80") if price >= 1000 else Decimal("100000"))


def fmt8(value: Decimal) -> str:
    return f"{value:.8f}"


@dataclass
class Book:
    """Top of book plus the deeper synthetic levels of one symbol."""

    symbol: str
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    u: int
    gap: Decimal                                   # price distance between levels
    depth_sizes: tuple[Decimal, ...] = ()          # sizes of levels 1..n (level 0 is top)
    recorded: bool = False                         # a replay's touch: shows 0 once taken
    taken: dict[tuple[str, Decimal], Decimal] = field(default_factory=dict)

    def levels(self, side: str, n: int = DEPTH_LEVELS) -> list[tuple[Decimal, Decimal]]:
        """Remaining liquidity on ``side`` ("bid" or "ask"), best first."""
        return list(self.iter_levels(side, n))

    def iter_levels(self, side: str, n: int = DEPTH_LEVELS) -> Iterator[tuple[Decimal, Decimal]]:
        """``levels``, one at a time: a taker that stops at its limit price (an IOC far from
        the touch stops at the first) computes no more of them. The book must not change
        while this is iterated."""
        sizes = (self.bid_qty if side == "bid" else self.ask_qty, *self.depth_sizes)
        for k in range(min(n, len(sizes))):
            price = self.bid - self.gap * k if side == "bid" else self.ask + self.gap * k
            if price <= 0:
                break
            qty = sizes[k] - self.taken.get((side, price), Decimal(0))
            if qty > 0:
                yield price, qty

    def take(self, side: str, price: Decimal, qty: Decimal) -> None:
        self.taken[(side, price)] = self.taken.get((side, price), Decimal(0)) + qty

    def ticker(self) -> dict[str, Any]:
        """The ``<symbol>@bookTicker`` payload: the best level with liquidity left on each side."""
        if not self.taken and self.bid_qty > 0 and self.ask_qty > 0 and self.bid > 0:
            # Nothing taken and both tops have size: the tops are the best levels (the common
            # case, computed without walking the levels).
            return {"u": self.u, "s": self.symbol, "b": fmt8(self.bid), "B": fmt8(self.bid_qty),
                    "a": fmt8(self.ask), "A": fmt8(self.ask_qty)}
        bids, asks = self.levels("bid", DEPTH_LEVELS), self.levels("ask", DEPTH_LEVELS)
        empty = Decimal(0) if self.recorded else None
        bid, bid_qty = bids[0] if bids else (self.bid, empty if empty is not None else self.bid_qty)
        ask, ask_qty = asks[0] if asks else (self.ask, empty if empty is not None else self.ask_qty)
        return {"u": self.u, "s": self.symbol, "b": fmt8(bid), "B": fmt8(bid_qty), "a": fmt8(ask),
                "A": fmt8(ask_qty)}


BookListener = Callable[[Book], None]


def _seed_for(seed: int, symbol: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{symbol}".encode()).digest()[:8], "big")


def _floor_to(value: Decimal, unit: Decimal) -> Decimal:
    return (value / unit).to_integral_value(rounding=ROUND_FLOOR) * unit


class Market:
    """All books, updated by ``tick()`` (synthetic) or by a replay; listeners see each update."""

    def __init__(self, clock: SimClock, specs: dict[str, SymbolSpec], start_prices: dict[str, Decimal],
                 seed: int = 7, book_update_hz: float = 20.0, market_file: str | Path | None = None) -> None:
        self.clock = clock
        self.specs = specs
        self.hz = float(book_update_hz)
        self.books: dict[str, Book] = {}
        self._listeners: list[BookListener] = []
        self._rngs = {s: random.Random(_seed_for(seed, s)) for s in specs}
        self._mid: dict[str, float] = {}
        self._fair: dict[str, float] = {}   # the synthetic walk; mid = fair * (1 + dislocation)
        self._disloc_rngs = {s: random.Random(_seed_for(seed, s + ":dislocation")) for s in specs}
        # Started from its stationary spread, as if the market had been running for a while.
        self._disloc = {s: self._disloc_rngs[s].gauss(0.0, DISLOCATION_STD) for s in specs}
        self._replay: list[dict[str, Any]] = []
        self._replay_pos = 0
        self.frozen_symbols: set[str] = set()    # forced books that updates must not move
        if market_file:
            self._replay = load_replay(Path(market_file), set(specs))
        for sym, spec in specs.items():
            rng = self._rngs[sym]
            first = next((r for r in self._replay if r["s"] == sym), None)
            if first is not None:
                self.books[sym] = self._book_from(sym, first, u=1_000_000 + rng.randrange(1_000_000))
                self._mid[sym] = float((first["b"] + first["a"]) / 2)
                continue
            price = start_prices.get(sym, Decimal(100))
            self._mid[sym] = self._fair[sym] = float(price)
            self.books[sym] = self._synthetic(sym, spec, u=1_000_000 + rng.randrange(1_000_000))

    # -- listeners -----------------------------------------------------------------------------
    @property
    def replaying(self) -> bool:
        """Books come from a market file (``market_file``), not the synthetic walk."""
        return bool(self._replay)

    def subscribe(self, listener: BookListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _publish(self, book: Book) -> None:
        for listener in list(self._listeners):
            listener(book)

    def book(self, symbol: str) -> Book:
        return self.books[symbol]

    # -- synthetic walk --------------------------------------------------------------------------
    def _gap(self, spec: SymbolSpec, mid: float) -> Decimal:
        gap = _floor_to(Decimal(repr(mid * 0.00003)), spec.tick)
        return max(gap, spec.tick)

    def _size(self, rng: random.Random, spec: SymbolSpec, mid: float, scale: float = 1.0) -> Decimal:
        notional = math.exp(rng.gauss(math.log(20000.0), 0.8)) * scale
        qty = _floor_to(Decimal(repr(notional / mid)), spec.step)
        return max(qty, spec.step)

    def _synthetic(self, sym: str, spec: SymbolSpec, u: int) -> Book:
        rng = self._rngs[sym]
        mid = self._mid[sym]
        base_ticks = max(1, round(mid * 0.000005 / float(spec.tick)))
        spread = spec.tick * (base_ticks + rng.choice((0, 0, 0, 1, 2)))
        bid = max(_floor_to(Decimal(repr(mid)) - spread / 2, spec.tick), spec.tick)
        return Book(symbol=sym, bid=bid, bid_qty=self._size(rng, spec, mid), ask=bid + spread,
                    ask_qty=self._size(rng, spec, mid), u=u, gap=self._gap(spec, mid),
                    depth_sizes=tuple(self._size(rng, spec, mid, 1.0 + k) for k in range(1, DEPTH_LEVELS)))

    def tick(self) -> None:
        """Advance every symbol by one update and publish it."""
        if self._replay:
            self._replay_step()
            return
        for sym, spec in self.specs.items():
            if sym in self.frozen_symbols:
                continue
            rng = self._rngs[sym]
            fair = self._fair[sym] = self._fair[sym] * math.exp(rng.gauss(0.0, 0.00003))
            self._mid[sym] = fair * (1.0 + self._step_dislocation(sym))
            book = self._synthetic(sym, spec, self.books[sym].u + 1)
            self.books[sym] = book
            self._publish(book)

    def _step_dislocation(self, sym: str) -> float:
        decay = math.exp(-math.log(2) / (DISLOCATION_HALF_LIFE_S * max(self.hz, 0.001)))
        noise = DISLOCATION_STD * math.sqrt(1 - decay * decay)
        d = self._disloc[sym] * decay + noise * self._disloc_rngs[sym].gauss(0.0, 1.0)
        self._disloc[sym] = d
        return d

    def index(self, symbol: str) -> Decimal | None:
        """The fair price the futures index tracks: the synthetic walk without this venue's
        dislocation; a replayed or forced book's own mid."""
        book = self.books.get(symbol)
        if book is None:
            return None
        fair = self._fair.get(symbol)
        if fair is None or self._replay or symbol in self.frozen_symbols:
            return (Decimal(book.bid) + Decimal(book.ask)) / 2
        return Decimal(repr(fair))

    def set_book(self, symbol: str, *, bid: Decimal | str | None = None, ask: Decimal | str | None = None,
                 bid_qty: Decimal | str | None = None, ask_qty: Decimal | str | None = None,
                 freeze: bool = True) -> Book:
        """Force the top of book (tests use this to make a cross happen); publishes the update.

        ``freeze`` stops updates of ``symbol`` so the forced book stays until ``unfreeze()``.
        """
        old = self.books[symbol]
        nb = Decimal(bid) if bid is not None else old.bid
        na = Decimal(ask) if ask is not None else old.ask
        if na <= nb:
            raise ValueError(f"ask {na} must be above bid {nb}")
        book = Book(symbol=symbol, bid=nb, ask=na,
                    bid_qty=Decimal(bid_qty) if bid_qty is not None else old.bid_qty,
                    ask_qty=Decimal(ask_qty) if ask_qty is not None else old.ask_qty,
                    u=old.u + 1, gap=old.gap, depth_sizes=old.depth_sizes)
        self._mid[symbol] = float((nb + na) / 2)
        if symbol in self._fair:  # a forced book is fair: the walk resumes from it, undislocated
            self._fair[symbol], self._disloc[symbol] = self._mid[symbol], 0.0
        self.books[symbol] = book
        if freeze:
            self.frozen_symbols.add(symbol)
        self._publish(book)
        return book

    def apply_recorded(self, symbol: str, bid: Decimal, bid_qty: Decimal, ask: Decimal,
                       ask_qty: Decimal) -> Book:
        """A replay's recorded touch becomes ``symbol``'s book (no deeper levels: only what was
        recorded is there to take); publishes it with ``u`` + 1 (``sim/replay_source.py``)."""
        old = self.books[symbol]
        book = Book(symbol=symbol, bid=bid, bid_qty=bid_qty, ask=ask, ask_qty=ask_qty, u=old.u + 1,
                    gap=old.gap, recorded=True)
        self.books[symbol] = book
        self._publish(book)
        return book

    def touch(self, symbol: str) -> Book:
        """Publish ``symbol``'s book again (u + 1) after orders took liquidity from it."""
        old = self.books[symbol]
        book = replace(old, u=old.u + 1, taken=dict(old.taken))
        self.books[symbol] = book
        self._publish(book)
        return book

    def set_price(self, symbol: str, price: Decimal | str, freeze: bool = True) -> Book:
        """Move the mid to ``price`` with a one-tick spread."""
        spec = self.specs[symbol]
        p = _floor_to(Decimal(price), spec.tick)
        return self.set_book(symbol, bid=p, ask=p + spec.tick, freeze=freeze)

    def unfreeze(self, symbol: str | None = None) -> None:
        if symbol is None:
            self.frozen_symbols.clear()
        else:
            self.frozen_symbols.discard(symbol)

    # -- replay -----------------------------------------------------------------------------------
    def _book_from(self, sym: str, rec: dict[str, Any], u: int) -> Book:
        spec = self.specs[sym]
        mid = float((rec["b"] + rec["a"]) / 2)
        rng = self._rngs[sym]
        return Book(symbol=sym, bid=rec["b"], bid_qty=rec["B"], ask=rec["a"], ask_qty=rec["A"], u=u,
                    gap=self._gap(spec, mid),
                    depth_sizes=tuple(self._size(rng, spec, mid, 1.0 + k) for k in range(1, DEPTH_LEVELS)))

    def _replay_step(self) -> float | None:
        rec = self._replay[self._replay_pos]
        self._replay_pos = (self._replay_pos + 1) % len(self._replay)
        nxt = self._replay[self._replay_pos]
        if rec["s"] in self.frozen_symbols:
            return None
        book = self._book_from(rec["s"], rec, self.books[rec["s"]].u + 1)
        self.books[rec["s"]] = book
        self._publish(book)
        if rec.get("t") is not None and nxt.get("t") is not None and nxt["t"] >= rec["t"]:
            return (nxt["t"] - rec["t"]) / 1000.0
        return None

    async def run(self) -> None:
        """Background updater: ``book_update_hz`` updates per sim second (or the replay's pace)."""
        default_gap = 1.0 / self.hz if self.hz > 0 else None
        while True:
            gap: float | None = default_gap
            if self._replay:
                gap = self._replay_step()
                gap = default_gap if gap is None else gap
            else:
                self.tick()
            if gap is None:
                return
            # Never spin faster than ~200 wall updates/s, whatever the time scale.
            await asyncio.sleep(max(self.clock.wall_seconds(gap), 0.005))


def _dec(value: Any, what: str) -> Decimal:
    if not isinstance(value, str | int):
        raise ValueError(f"{what} must be a decimal string")
    return Decimal(str(value))


def load_replay(path: Path, symbols: set[str]) -> list[dict[str, Any]]:
    """Parse a replay file (format in the module docstring) into records for known symbols."""
    out: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                obj = json.loads(line)
                data = obj["data"] if "data" in obj and "stream" in obj else obj
                rec = {"s": str(data["s"]).upper(), "b": _dec(data["b"], "b"), "B": _dec(data["B"], "B"),
                       "a": _dec(data["a"], "a"), "A": _dec(data["A"], "A"),
                       "t": int(obj["t"]) if "t" in obj else None}
            except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
                raise ValueError(f"{path}:{lineno}: not a bookTicker line ({exc})") from None
            if rec["s"] in symbols:
                out.append(rec)
    if not out:
        raise ValueError(f"{path}: no bookTicker lines for {sorted(symbols)}")
    return out


def round_down(value: Decimal, unit: Decimal) -> Decimal:
    """Floor ``value`` to a multiple of ``unit`` (a step of 0 means no rounding)."""
    if unit == 0:
        return value
    return (value / unit).to_integral_value(rounding=ROUND_DOWN) * unit
