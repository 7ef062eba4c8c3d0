"""The strategy interface: what a strategy sees, what it may return, and its parameters.

A strategy is a class with four handlers, each returning a list of intents
(``Place`` / ``Cancel`` / ``Replace`` from ``executor.core.intents``) and doing no I/O:

* ``on_book_ticker(symbol, view)`` -- the symbol's best bid/ask changed;
* ``on_mark_price(symbol, view)`` -- the symbol's futures mark price changed;
* ``on_order_update(order)`` -- one of our orders changed (status, fill);
* ``on_timer(now)`` -- periodic tick (for time-based decisions such as quote expiry).

``after_exchange_close(symbol, close)`` is not a handler: it says in words what the strategy
will do about a liquidation/ADL of its perpetual position (``ctx.exchange_closes``), for the
app's WARNING and alert.

``view`` is a ``StrategyContext``: read-only access to market state, our working orders,
our inventory per asset, the symbols' trading rules, the account's commission rates
(``fees``, read from the exchange at start) and recent candles (``candles``, fed from the
kline streams of the intervals the strategy class lists in ``candle_intervals``), plus
``now``. The same context is bound once before the first event (``bind``) and stays
available as ``self.ctx`` in every handler, so ``on_order_update`` and ``on_timer`` can
look at the market too.

The app owns everything else: intents go through the risk checks and the order manager,
which rounds them to the symbol's filters, records them (with the strategy's ``reason``)
and sends them. A strategy never blocks and never sees a socket.

Parameters come from config ``[strategy.params]`` and are handed to ``__init__`` as a
plain mapping; ``Params`` reads them with types and ranges and raises ``ParamError``,
which the loader turns into a ``ConfigError`` naming the key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from executor.core.fees import FeeRates
from executor.core.filters import SymbolRules
from executor.core.intents import Intent
from executor.core.money import ZERO, parse_decimal
from executor.core.orders import FINAL, OrderStatus, Side
from executor.core.positions import ExchangeClose
from executor.market.state import Candle, MarketState, SymbolState

__all__ = ["KLINE_INTERVALS", "OrderView", "ParamError", "Params", "Strategy", "StrategyContext"]


# Binance's kline intervals (case-sensitive), what ``Strategy.candle_intervals`` may list.
KLINE_INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d",
                   "1w", "1M")


@dataclass(frozen=True)
class OrderView:
    """One of our orders as a strategy sees it.

    ``placed_at`` is on the context's clock (monotonic seconds) and is when the order
    manager accepted the intent. ``cancel_requested`` is true once a cancel for it has been
    accepted, so a strategy does not ask twice. ``reason`` is the reason the order was
    placed with (the strategy's own words).
    """

    client_id: str
    symbol: str
    side: Side
    price: Decimal
    qty: Decimal
    filled: Decimal
    status: OrderStatus
    placed_at: float
    order_type: str = "LIMIT"
    cancel_requested: bool = False
    reason: str = ""

    @property
    def working(self) -> bool:
        """Not final: resting, partially filled, or not yet known to be placed (may fill)."""
        return self.status not in FINAL

    @property
    def remaining(self) -> Decimal:
        return max(self.qty - self.filled, ZERO)

    def age(self, now: float) -> float:
        return now - self.placed_at


class StrategyContext:
    """Read-only view of everything a strategy may base a decision on.

    Built by the app from live sources (``MarketState``, the order manager's orders, the
    ledger's inventory); tests build it from hand-made values. Every accessor reads the
    source at call time, so one context object serves the whole run.

    ``inventory(asset)`` is the position the bot itself has built in ``asset`` (the net of
    its own fills in the ledger, across runs, less commissions charged in that asset:
    ``executor.core.positions``), not the account balance: a strategy sells what it bought,
    and starting balances held for other purposes are never touched. ``free_balance(asset)``
    is what the exchange last reported free (None until it has).
    """

    def __init__(
        self,
        market: MarketState,
        rules: Mapping[str, SymbolRules],
        orders: Callable[[], Iterable[OrderView]],
        inventory: Callable[[str], Decimal] | Mapping[str, Decimal],
        *,
        stale_after_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        fees: Mapping[str, FeeRates] | None = None,
        free_balance: Callable[[str], Decimal | None] | None = None,
        futures_position: Callable[[str], Decimal] | None = None,
        futures_rules: Mapping[str, SymbolRules] | None = None,
        exchange_closes: Callable[[str], Sequence[ExchangeClose]] | None = None,
    ) -> None:
        self._exchange_closes = exchange_closes
        self._free_balance = free_balance
        self._futures_position = futures_position
        self._futures_rules: Mapping[str, SymbolRules] = futures_rules if futures_rules is not None else {}
        self._market = market
        self._fees: Mapping[str, FeeRates] = fees if fees is not None else {}
        self._rules = rules
        self._orders = orders
        self._inventory = inventory
        self._stale_after_s = float(stale_after_s)
        self._clock = clock

    @property
    def now(self) -> float:
        """Monotonic seconds, the clock market receipt times and ``OrderView.placed_at`` use."""
        return self._clock()

    @property
    def symbols(self) -> list[str]:
        """The symbols the bot trades (those with trading rules)."""
        return list(self._rules)

    @property
    def stale_after_s(self) -> float:
        return self._stale_after_s

    def market(self, symbol: str) -> SymbolState | None:
        """Latest book/mark for ``symbol`` (fields None until the first update). Do not modify."""
        return self._market.get(symbol)

    def is_stale(self, symbol: str, *, book: bool = True, mark: bool = True) -> bool:
        """Book and/or mark missing or older than ``stale_after_s`` (risk refuses then)."""
        return self._market.is_stale(symbol, self.now, self._stale_after_s, book=book, mark=mark)

    def fees(self, symbol: str) -> FeeRates | None:
        """The account's commission rates on ``symbol`` as the exchange reported them at start
        (``GET /api/v3/account/commission``); None if they could not be read."""
        return self._fees.get(symbol)

    def candles(self, symbol: str, interval: str, n: int) -> list[Candle]:
        """The newest ``n`` candles of ``interval`` for ``symbol``, oldest first; the last one
        may still be open (``closed`` False). Only intervals listed in the strategy's
        ``candle_intervals`` are streamed; others raise ValueError."""
        if interval not in self._market.candle_intervals:
            raise ValueError(f"no {interval} candles: list {interval!r} in the strategy's candle_intervals")
        return self._market.candles(symbol, interval, n)

    def rules(self, symbol: str) -> SymbolRules:
        """Trading rules (tick, step, min notional, base/quote asset). KeyError if not traded."""
        return self._rules[symbol]

    def open_orders(self, symbol: str | None = None, side: Side | None = None) -> list[OrderView]:
        """Our working orders (not final), optionally for one symbol and/or side."""
        return [o for o in self._orders()
                if o.working and (symbol is None or o.symbol == symbol) and (side is None or o.side is side)]

    def futures_position(self, symbol: str) -> Decimal:
        """The bot's USD-M perpetual position in ``symbol`` (signed base quantity, negative =
        short): its own futures fills and the exchange's closes of it (liquidation, ADL: one
        position per symbol per account); 0 when futures are not traded."""
        return ZERO if self._futures_position is None else self._futures_position(symbol)

    def exchange_closes(self, symbol: str) -> Sequence[ExchangeClose]:
        """The exchange's closes of ``symbol``'s perpetual position (liquidation, ADL) found
        during this run, oldest first, numbered by ``seq`` (already counted in
        ``futures_position``); empty when futures are not traded."""
        return () if self._exchange_closes is None else self._exchange_closes(symbol)

    def futures_rules(self, symbol: str) -> SymbolRules | None:
        """The perpetual's trading rules (futures exchangeInfo), None when futures are not traded."""
        return self._futures_rules.get(symbol)

    def inventory(self, asset: str) -> Decimal:
        """The bot's own position in ``asset`` (see the class docstring); 0 if none."""
        if callable(self._inventory):
            return self._inventory(asset)
        return self._inventory.get(asset, ZERO)

    def free_balance(self, asset: str) -> Decimal | None:
        """The free balance of ``asset`` the exchange last reported; None if unknown."""
        return self._free_balance(asset) if self._free_balance is not None else None


class Strategy:
    """Base class for strategies. Override the handlers you need; each returns intents.

    ``__init__`` receives ``[strategy.params]`` and should validate them (``Params``) so a
    bad value stops the bot at start with a clear message rather than mid-run.

    What the app guarantees: ``bind`` before the first event; handlers are called one at a
    time on the event loop (keep them fast, they delay market processing); an intent the
    app accepts shows in ``ctx.open_orders()`` (status PENDING_SEND at first) before the
    next handler call, while a refused one never appears (the refusal is logged and
    recorded, and the strategy may ask again later); ``on_order_update`` follows every
    change of one of our orders; ``on_timer`` runs about once a second.
    """

    # Kline intervals ("1m", "5m", ...) the app streams for every traded symbol so that
    # ``ctx.candles(symbol, interval, n)`` has them; empty: no kline streams.
    candle_intervals: tuple[str, ...] = ()

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params: Mapping[str, Any] = dict(params)
        self._ctx: StrategyContext | None = None

    def bind(self, ctx: StrategyContext) -> None:
        """Called once by the app before the first event."""
        self._ctx = ctx

    @property
    def ctx(self) -> StrategyContext:
        # getattr: a subclass that forgot super().__init__ still gets this clear message.
        if getattr(self, "_ctx", None) is None:
            raise RuntimeError(f"{type(self).__name__} is not bound to a context yet (call bind)")
        return self._ctx  # type: ignore[return-value]

    def on_book_ticker(self, symbol: str, view: StrategyContext) -> list[Intent]:
        return []

    def on_mark_price(self, symbol: str, view: StrategyContext) -> list[Intent]:
        return []

    def on_order_update(self, order: OrderView) -> list[Intent]:
        return []

    def on_timer(self, now: float) -> list[Intent]:
        return []

    def after_exchange_close(self, symbol: str, close: ExchangeClose) -> str:
        """What this strategy does now that the exchange closed (part of) its perpetual
        position in ``symbol`` -- the app says so in its WARNING and alert. No I/O."""
        return "the strategy sees the position without the closed quantity from its next evaluation"


class ParamError(ValueError):
    """A bad strategy parameter; ``key`` names it (the loader prefixes ``strategy.params.``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


_MISSING: Any = object()


class Params:
    """Typed, range-checked reading of a strategy's parameter mapping.

    Read each key once, then call ``finish()`` so a misspelt key is an error instead of a
    silently ignored setting. Decimals must be strings or integers (a TOML float has
    already lost its exact value), as in the rest of the config.
    """

    def __init__(self, params: Mapping[str, Any]) -> None:
        if not isinstance(params, Mapping):
            raise ParamError("params", f"must be a table, got {type(params).__name__}")
        self._params = params
        self._read: set[str] = set()

    def _get(self, key: str, default: Any) -> Any:
        self._read.add(key)
        if key in self._params:
            return self._params[key]
        if default is _MISSING:
            raise ParamError(key, "missing")
        return default

    def decimal(self, key: str, default: Decimal | str = _MISSING, *, min: Decimal | str | None = None,
                max: Decimal | str | None = None, positive: bool = False) -> Decimal:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
            raise ParamError(key, f"must be a decimal written as a string, e.g. \"5\", got {value!r}")
        try:
            dec = parse_decimal(value, key)  # strict: no "5_00", " 5", exponents or NaN
        except ValueError:
            if str(value).strip().lower().lstrip("+-") in ("nan", "snan", "inf", "infinity"):
                raise ParamError(key, "must be finite") from None
            raise ParamError(key, f"not a decimal number: {value!r}") from None
        if positive and dec <= 0:
            raise ParamError(key, f"must be greater than 0, got {dec}")
        if min is not None and dec < Decimal(min):
            raise ParamError(key, f"must be at least {min}, got {dec}")
        if max is not None and dec > Decimal(max):
            raise ParamError(key, f"must be at most {max}, got {dec}")
        return dec

    def boolean(self, key: str, default: bool = _MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ParamError(key, f"must be true or false, got {value!r}")
        return value

    def string(self, key: str, default: str = _MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise ParamError(key, f"must be a string, got {value!r}")
        return value

    def finish(self) -> None:
        """Refuse keys that were never read (typos, parameters of another strategy)."""
        unknown = sorted(set(self._params) - self._read)
        if unknown:
            known = ", ".join(sorted(self._read)) or "none"
            raise ParamError(unknown[0], f"unknown parameter (known: {known})")
