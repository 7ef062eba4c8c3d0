"""Public market-data REST endpoints of the embedded exchange, and the account's fee and
status endpoints, as Binance's rest-api.md documents them.

Public (security NONE): ``GET /api/v3/ticker/24hr`` (one, several or all symbols, FULL or
MINI), ``/ticker/price``, ``/ticker`` (rolling ``windowSize``), ``/ticker/tradingDay``,
``/avgPrice``, ``/trades``, ``/historicalTrades``, ``/aggTrades``, ``/klines``, ``/uiKlines``
and ``GET /sapi/v1/system/status``. Signed (USER_DATA): ``GET /api/v3/account/commission``,
``/rateLimit/order``, ``/myPreventedMatches`` and ``GET /sapi/v1/asset/tradeFee``.

Each route is served through ``rest_spot``'s dispatcher, so weights count in the sim's
REQUEST_WEIGHT limiter, unread parameters are -1104 and every error is Binance-shaped.
The answers are built by transport-neutral functions taking the exchange and the request
parameters as strings; the WS API (``wsapi.py``) calls the same ones.

Data comes from ``sim.tape`` (see ``tape.py``): statistics count the trades of whole minute
candles from the one holding the window's start (the rolling-window rule of rest-api.md;
the 24 h tickers still report ``openTime`` = ``closeTime`` - 24 h), and ``uiKlines``
differs from ``klines`` by filling intervals without trades with a flat candle at the
previous close (Binance only says uiKlines is "modified ... for presentation").
``myPreventedMatches`` is always empty: the sim's matching never triggers self-trade
prevention (every fill is against the market, never against another order of the account).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from aiohttp import web

from executor.sim import errors
from executor.sim.accounts import Account
from executor.sim.engine import parse_int, parse_symbol
from executor.sim.exchange import SimExchange
from executor.sim.market import SymbolSpec, fmt8
from executor.sim.market_feed import day_stats
from executor.sim.rest_spot import SYMBOLS_LEGAL, Ctx, Route, serve_routes
from executor.sim.tape import (
    DAY_MS,
    HOUR_MS,
    INTERVALS,
    MINUTE_MS,
    Candle,
    Stats,
    bucket_close,
    bucket_open,
    kline_row,
    parse_time_zone,
)

ZERO = Decimal(0)
STATUS_FILTERS = ("TRADING", "HALT", "BREAK")
MAX_WINDOW_SYMBOLS = 100


# -- parameters ---------------------------------------------------------------------------------

def _limit(params: Mapping[str, str], default: int, maximum: int) -> int:
    value = parse_int(params, "limit")
    if value is None:
        return default
    if value <= 0 or value > maximum:
        raise errors.invalid_param("limit")
    return value


def _symbol_names(params: Mapping[str, str]) -> list[str] | None:
    raw = params.get("symbols")
    if raw is None or raw == "":
        return None
    try:
        names = json.loads(raw)
    except ValueError:
        raise errors.illegal_chars("symbols", SYMBOLS_LEGAL) from None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise errors.invalid_param("symbols")
    if len(set(names)) != len(names):
        raise errors.BinanceError(-1151, "Symbol is present multiple times in the list.")
    return names


def select_symbols(sim: SimExchange, params: Mapping[str, str], *, required: bool = False,
                   max_symbols: int | None = None) -> tuple[list[SymbolSpec], bool]:
    """The symbols a ticker request names: (specs, single). ``symbol`` and ``symbols`` are
    exclusive; neither means every symbol unless ``required``. ``symbolStatus`` filters."""
    status = params.get("symbolStatus")
    if status is not None and status not in STATUS_FILTERS:
        raise errors.invalid_symbol_status()
    names = _symbol_names(params)
    if params.get("symbol") and names is not None:
        raise errors.bad_param_combo()
    if params.get("symbol"):
        spec = parse_symbol(params, sim.specs)
        assert spec is not None
        if status is not None and spec.status != status:
            raise errors.BinanceError(-1220, "The symbol's status does not match the requested symbolStatus.")
        return [spec], True
    if names is None:
        if required:
            raise errors.one_of_missing("symbol", "symbols")
        specs = list(sim.specs.values())
    else:
        if max_symbols is not None and len(names) > max_symbols:
            raise errors.BinanceError(-1101, f"Too many values sent for parameter 'symbols', maximum allowed "
                                             f"is {max_symbols}.")
        specs = []
        for name in names:
            spec = sim.specs.get(name)
            if spec is None:
                raise errors.invalid_symbol()
            specs.append(spec)
    if status is not None:
        specs = [s for s in specs if s.status == status]
    return specs, False


def _ticker_type(params: Mapping[str, str]) -> bool:
    """True for MINI."""
    kind = params.get("type") or "FULL"
    if kind not in ("FULL", "MINI"):
        raise errors.BinanceError(-1139, "Invalid ticker type.")
    return kind == "MINI"


def _time_zone(params: Mapping[str, str]) -> int:
    try:
        return parse_time_zone(params.get("timeZone"))
    except ValueError:
        raise errors.invalid_param("timeZone") from None


def _window_ms(raw: str | None) -> int:
    """``windowSize``: 1m..59m, 1h..23h, 1d..7d (default 1d); units cannot be combined."""
    text = raw or "1d"
    unit, num = text[-1:], text[:-1]
    limits = {"m": (59, MINUTE_MS), "h": (23, HOUR_MS), "d": (7, DAY_MS)}
    if unit not in limits or not num.isdigit() or not 1 <= int(num) <= limits[unit][0]:
        raise errors.invalid_param("windowSize")
    return int(num) * limits[unit][1]


def _interval(params: Mapping[str, str]) -> str:
    raw = params.get("interval")
    if not raw:
        raise errors.mandatory_missing("interval")
    if raw not in INTERVALS:
        raise errors.BinanceError(-1120, "Invalid interval.")
    return raw


# -- weights ------------------------------------------------------------------------------------

def _count_symbols(params: Mapping[str, str]) -> int | None:
    """How many symbols ``symbols`` names (None when absent or unreadable: weighed as all)."""
    raw = params.get("symbols")
    if not raw:
        return None
    try:
        names = json.loads(raw)
    except ValueError:
        return None
    return len(names) if isinstance(names, list) else None


def ticker_24hr_weight(params: Mapping[str, Any]) -> int:
    if params.get("symbol"):
        return 2
    n = _count_symbols(params) if not isinstance(params.get("symbols"), list) else len(params["symbols"])
    if n is None:
        return 80
    return 2 if n <= 20 else 40 if n <= 100 else 80


def _per_symbol_weight(params: Mapping[str, str]) -> int:
    if params.get("symbol"):
        return 4
    n = _count_symbols(params) or 1
    return 200 if n > 50 else 4 * n


def _price_weight(params: Mapping[str, str]) -> int:
    return 2 if params.get("symbol") else 4


def _prevented_weight(params: Mapping[str, str]) -> int:
    return 20 if params.get("orderId") and not params.get("preventedMatchId") else 2


def _const(n: int) -> Any:
    return lambda _p: n


# -- answers (transport-neutral) ----------------------------------------------------------------

def _pct(change: Decimal, base: Decimal) -> str:
    return f"{(change / base * 100):.3f}" if base else "0.000"


def stats_row(sim: SimExchange, symbol: str, st: Stats, *, mini: bool, kind: str) -> dict[str, Any]:
    """A ticker row; ``kind`` "24hr" (with prevClose, last qty and book) or "window"."""
    c: Candle | None = st.candle
    o, h, lo, cl = (c.open, c.high, c.low, c.close) if c else (ZERO, ZERO, ZERO, ZERO)
    v, q = (c.volume, c.quote_volume) if c else (ZERO, ZERO)
    ids = {"firstId": c.first_id if c else -1, "lastId": c.last_id if c else -1, "count": c.count if c else 0}
    times = {"openTime": st.open_time, "closeTime": st.close_time}
    if mini:
        return {"symbol": symbol, "openPrice": fmt8(o), "highPrice": fmt8(h), "lowPrice": fmt8(lo),
                "lastPrice": fmt8(cl), "volume": fmt8(v), "quoteVolume": fmt8(q), **times, **ids}
    change = {"symbol": symbol, "priceChange": fmt8(cl - o), "priceChangePercent": _pct(cl - o, o),
              "weightedAvgPrice": fmt8((q / v).quantize(Decimal("0.00000001")) if v else ZERO)}
    if kind == "window":
        return {**change, "openPrice": fmt8(o), "highPrice": fmt8(h), "lowPrice": fmt8(lo),
                "lastPrice": fmt8(cl), "volume": fmt8(v), "quoteVolume": fmt8(q), **times, **ids}
    t = sim.market.book(symbol).ticker()
    return {**change, "prevClosePrice": fmt8(st.prev_close if st.prev_close is not None else ZERO),
            "lastPrice": fmt8(cl), "lastQty": fmt8(st.last_qty or ZERO), "bidPrice": t["b"], "bidQty": t["B"],
            "askPrice": t["a"], "askQty": t["A"], "openPrice": fmt8(o), "highPrice": fmt8(h),
            "lowPrice": fmt8(lo), "volume": fmt8(v), "quoteVolume": fmt8(q), **times, **ids}


def _one_or_list(rows: list[dict[str, Any]], single: bool) -> Any:
    return rows[0] if single else rows


def ticker_24hr(sim: SimExchange, params: Mapping[str, str]) -> Any:
    specs, single = select_symbols(sim, params)
    mini = _ticker_type(params)
    now = sim.clock.now_ms()
    return _one_or_list([stats_row(sim, s.symbol, day_stats(sim.tape, s.symbol, now), mini=mini, kind="24hr")
                         for s in specs], single)


def ticker_window(sim: SimExchange, params: Mapping[str, str]) -> Any:
    specs, single = select_symbols(sim, params, required=True, max_symbols=MAX_WINDOW_SYMBOLS)
    window = _window_ms(params.get("windowSize"))
    mini = _ticker_type(params)
    now = sim.clock.now_ms()
    start = (now - window) // MINUTE_MS * MINUTE_MS        # opens on a minute (rest-api.md)
    return _one_or_list([stats_row(sim, s.symbol, sim.tape.stats(s.symbol, start, now), mini=mini,
                                   kind="window") for s in specs], single)


def ticker_trading_day(sim: SimExchange, params: Mapping[str, str]) -> Any:
    specs, single = select_symbols(sim, params, required=True, max_symbols=MAX_WINDOW_SYMBOLS)
    offset = _time_zone(params)
    mini = _ticker_type(params)
    now = sim.clock.now_ms()
    start = bucket_open("1d", now, offset)
    rows = []
    for s in specs:
        st = sim.tape.stats(s.symbol, start, now)
        st.close_time = start + DAY_MS - 1
        if st.candle is not None:
            st.candle.close_time = st.close_time
        rows.append(stats_row(sim, s.symbol, st, mini=mini, kind="window"))
    return _one_or_list(rows, single)


def ticker_price(sim: SimExchange, params: Mapping[str, str]) -> Any:
    specs, single = select_symbols(sim, params)
    rows = []
    for s in specs:
        last = sim.tape.last_trade(s.symbol)
        if last is not None:
            price = last.price
        else:
            book = sim.market.book(s.symbol)
            price = (book.bid + book.ask) / 2
        rows.append({"symbol": s.symbol, "price": fmt8(price)})
    return _one_or_list(rows, single)


def avg_price(sim: SimExchange, params: Mapping[str, str]) -> Any:
    spec = parse_symbol(params, sim.specs)
    assert spec is not None
    price, last_time = sim.tape.avg_price(spec.symbol)
    return {"mins": 5, "price": fmt8(price), "closeTime": last_time}


def _trade_row(t: Any) -> dict[str, Any]:
    return {"id": t.id, "price": fmt8(t.price), "qty": fmt8(t.qty), "quoteQty": fmt8(t.quote_qty),
            "time": t.time, "isBuyerMaker": t.buyer_maker, "isBestMatch": True}


def recent_trades(sim: SimExchange, params: Mapping[str, str]) -> Any:
    spec = parse_symbol(params, sim.specs)
    assert spec is not None
    return [_trade_row(t) for t in sim.tape.recent(spec.symbol, _limit(params, 500, 1000))]


def historical_trades(sim: SimExchange, params: Mapping[str, str]) -> Any:
    spec = parse_symbol(params, sim.specs)
    assert spec is not None
    limit = _limit(params, 500, 1000)
    from_id = parse_int(params, "fromId")
    return [_trade_row(t) for t in sim.tape.historical(spec.symbol, from_id, limit)]


def agg_trades(sim: SimExchange, params: Mapping[str, str]) -> Any:
    spec = parse_symbol(params, sim.specs)
    assert spec is not None
    from_id = parse_int(params, "fromId")
    start = parse_int(params, "startTime")
    end = parse_int(params, "endTime")
    limit = _limit(params, 500, 1000)
    if from_id is not None and (start is not None or end is not None):
        raise errors.bad_param_combo()
    if start is not None and end is not None and end < start:
        raise errors.BinanceError(-1127, "Lookup interval is too big.")
    rows = sim.tape.agg_trades(spec.symbol, from_id=from_id, start=start, end=end, limit=limit)
    return [{"a": a.id, "p": fmt8(a.price), "q": fmt8(a.qty), "f": a.first_id, "l": a.last_id, "T": a.time,
             "m": a.buyer_maker, "M": True} for a in rows]


def _fill_gaps(candles: list[Candle], interval: str, offset: int) -> list[Candle]:
    out: list[Candle] = []
    for c in candles:
        while out:
            nxt = bucket_open(interval, out[-1].close_time + 1, offset)
            if nxt >= c.open_time:
                break
            p = out[-1].close
            out.append(Candle(nxt, bucket_close(interval, nxt, offset), p, p, p, p))
        out.append(c)
    return out


def klines(sim: SimExchange, params: Mapping[str, str], *, ui: bool = False) -> Any:
    spec = parse_symbol(params, sim.specs)
    assert spec is not None
    interval = _interval(params)
    start = parse_int(params, "startTime")
    end = parse_int(params, "endTime")
    offset = _time_zone(params)
    limit = _limit(params, 500, 1000)
    if start is not None and end is not None and end < start:
        raise errors.BinanceError(-1127, "Lookup interval is too big.")
    rows = sim.tape.candles(spec.symbol, interval, offset, start=start, end=end, limit=limit)
    if ui:
        rows = _fill_gaps(rows, interval, offset)
        rows = rows[:limit] if start is not None else rows[-limit:]
    return [kline_row(c) for c in rows]


def commission(sim: SimExchange, account: Account, params: Mapping[str, str]) -> Any:
    spec = parse_symbol(params, sim.specs)
    assert spec is not None
    zero = fmt8(ZERO)
    return {"symbol": spec.symbol,
            "standardCommission": {"maker": fmt8(account.maker_rate), "taker": fmt8(account.taker_rate),
                                   "buyer": zero, "seller": zero},
            "specialCommission": {"maker": zero, "taker": zero, "buyer": zero, "seller": zero},
            "taxCommission": {"maker": zero, "taker": zero, "buyer": zero, "seller": zero},
            "discount": {"enabledForAccount": False, "enabledForSymbol": False, "discountAsset": "BNB",
                         "discount": "0.25000000"}}


def order_rate_limits(sim: SimExchange, account: Account) -> list[dict[str, Any]]:
    lim = sim.ratelimiter.limits
    n10, nday = sim.ratelimiter.order_counts(account.id)
    return [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": lim.orders_per_10s,
             "count": n10},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": lim.orders_per_day,
             "count": nday}]


def prevented_matches(sim: SimExchange, account: Account, params: Mapping[str, str]) -> Any:
    spec = parse_symbol(params, sim.specs)
    assert spec is not None
    pm_id = parse_int(params, "preventedMatchId")
    order_id = parse_int(params, "orderId")
    from_pm = parse_int(params, "fromPreventedMatchId")
    _limit(params, 500, 1000)
    # Supported: symbol + preventedMatchId; symbol + orderId [+ fromPreventedMatchId [+ limit]].
    by_match = pm_id is not None and order_id is None and from_pm is None
    by_order = order_id is not None and pm_id is None
    if not (by_match or by_order) or (params.get("limit") and from_pm is None):
        raise errors.bad_param_combo()
    return []


def trade_fee(sim: SimExchange, account: Account, params: Mapping[str, str]) -> Any:
    spec = parse_symbol(params, sim.specs, required=False)
    specs = [spec] if spec is not None else list(sim.specs.values())
    return [{"symbol": s.symbol, "makerCommission": _plain(account.maker_rate),
             "takerCommission": _plain(account.taker_rate)} for s in specs]


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def system_status(sim: SimExchange) -> dict[str, Any]:
    normal = getattr(sim, "system_status", 0) == 0
    return {"status": 0 if normal else 1, "msg": "normal" if normal else "system_maintenance"}


# -- routes ---------------------------------------------------------------------------------------

def _public(fn: Any) -> Any:
    async def handler(ctx: Ctx) -> Any:
        return fn(ctx.sim, ctx.params)
    return handler


def _signed(fn: Any) -> Any:
    async def handler(ctx: Ctx) -> Any:
        assert ctx.account is not None
        return fn(ctx.sim, ctx.account, ctx.params)
    return handler


async def _klines(ctx: Ctx) -> Any:
    return klines(ctx.sim, ctx.params)


async def _ui_klines(ctx: Ctx) -> Any:
    return klines(ctx.sim, ctx.params, ui=True)


async def _rate_limit_order(ctx: Ctx) -> Any:
    assert ctx.account is not None
    return order_rate_limits(ctx.sim, ctx.account)


async def _system_status(ctx: Ctx) -> Any:
    return system_status(ctx.sim)


KLINE_PARAMS = frozenset({"symbol", "interval", "startTime", "endTime", "timeZone", "limit"})
TICKER_PARAMS = frozenset({"symbol", "symbols", "type", "symbolStatus"})

ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/api/v3/ticker/24hr"): Route(_public(ticker_24hr), TICKER_PARAMS, False, ticker_24hr_weight),
    ("GET", "/api/v3/ticker/price"): Route(_public(ticker_price),
                                           frozenset({"symbol", "symbols", "symbolStatus"}), False,
                                           _price_weight),
    ("GET", "/api/v3/ticker"): Route(_public(ticker_window), TICKER_PARAMS | {"windowSize"}, False,
                                     _per_symbol_weight),
    ("GET", "/api/v3/ticker/tradingDay"): Route(_public(ticker_trading_day), TICKER_PARAMS | {"timeZone"},
                                                False, _per_symbol_weight),
    ("GET", "/api/v3/avgPrice"): Route(_public(avg_price), frozenset({"symbol"}), False, _const(2)),
    ("GET", "/api/v3/trades"): Route(_public(recent_trades), frozenset({"symbol", "limit"}), False,
                                     _const(25)),
    ("GET", "/api/v3/historicalTrades"): Route(_public(historical_trades),
                                               frozenset({"symbol", "limit", "fromId"}), False, _const(25)),
    ("GET", "/api/v3/aggTrades"): Route(_public(agg_trades),
                                        frozenset({"symbol", "fromId", "startTime", "endTime", "limit"}),
                                        False, _const(4)),
    ("GET", "/api/v3/klines"): Route(_klines, KLINE_PARAMS, False, _const(2)),
    ("GET", "/api/v3/uiKlines"): Route(_ui_klines, KLINE_PARAMS, False, _const(2)),
    ("GET", "/api/v3/account/commission"): Route(_signed(commission), frozenset({"symbol"}), True,
                                                 _const(20)),
    ("GET", "/api/v3/rateLimit/order"): Route(_rate_limit_order, frozenset(), True, _const(40)),
    ("GET", "/api/v3/myPreventedMatches"): Route(
        _signed(prevented_matches),
        frozenset({"symbol", "preventedMatchId", "orderId", "fromPreventedMatchId", "limit"}), True,
        _prevented_weight),
    ("GET", "/sapi/v1/asset/tradeFee"): Route(_signed(trade_fee), frozenset({"symbol"}), True, _const(1)),
    ("GET", "/sapi/v1/system/status"): Route(_system_status, frozenset(), False, _const(1)),
}


def add_routes(app: web.Application, sim: SimExchange) -> None:
    serve_routes(app, sim, ROUTES)
