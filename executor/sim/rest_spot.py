"""Spot REST routes (``/api/v3/...`` on the spot REST host) and the middleware every
``/api`` and ``/sapi`` request passes: fault holds and 429 bursts, the IP ban gate,
request weight and its ``X-MBX-USED-WEIGHT-1M`` header, and Binance-shaped errors.

Each route declares its security (NONE or SIGNED), the parameters it reads and its weight;
a request with parameters the route does not read is -1104, as on Binance.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web

from executor.sim import errors, wire_json
from executor.sim.accounts import Account, ApiKey
from executor.sim.appkeys import SIM
from executor.sim.auth import AUTH_PARAMS, authenticate_signed, parse_params
from executor.sim.engine import (
    NEW_ORDER_PARAMS,
    SYMBOL_STATUSES,
    cancel_response,
    check_filters,
    order_response,
    parse_client_id,
    parse_int,
    parse_new_order,
    parse_symbol,
    query_response,
    reached_engine,
    trade_row,
)
from executor.sim.exchange import SimExchange
from executor.sim.faults import LateOrder
from executor.sim.market import DEPTH_LEVELS, SymbolSpec, fmt8
from executor.sim.routing import mount

DAY_MS = 86_400_000
WAF_PAGE = "<html><head><title>403 Forbidden</title></head><body><h1>403 Forbidden</h1></body></html>"
_NONE: frozenset[str] = frozenset()
SYMBOLS_LEGAL = r'^\[\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}\]$'


@dataclass
class Ctx:
    sim: SimExchange
    request: web.Request
    params: dict[str, str]
    account: Account | None = None
    api_key: ApiKey | None = None
    headers: dict[str, str] = field(default_factory=dict)
    weight: int = 0
    failure_weight: int = 0      # charged only if the request fails (order placement/cancel)


Handler = Callable[[Ctx], Awaitable[Any]]
WebHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    handler: Handler
    params: frozenset[str]
    signed: bool
    weight: Callable[[Mapping[str, str]], int]
    # Placements and cancels weigh 0 when they succeed (since 2026-04-02); a failed one,
    # including one refused by authentication, costs its documented weight.
    failure_weight: int = 0


def _const(n: int) -> Callable[[Mapping[str, str]], int]:
    return lambda _p: n


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=wire_json.dumps(data), status=status,
                        content_type="application/json", headers=headers)


def _sym(ctx: Ctx) -> SymbolSpec:
    spec = parse_symbol(ctx.params, ctx.sim.specs)
    assert spec is not None
    return spec


def _limit(params: Mapping[str, str], default: int, maximum: int) -> int:
    value = parse_int(params, "limit")
    if value is None:
        return default
    if value <= 0 or value > maximum:
        raise errors.invalid_param("limit")
    return value


# -- market data --------------------------------------------------------------------------------

async def ping(ctx: Ctx) -> Any:
    return {}


async def server_time(ctx: Ctx) -> Any:
    return {"serverTime": ctx.sim.clock.now_ms()}


def _filters(spec: SymbolSpec) -> list[dict[str, Any]]:
    return [
        {"filterType": "PRICE_FILTER", "minPrice": fmt8(spec.min_price), "maxPrice": fmt8(spec.max_price),
         "tickSize": fmt8(spec.tick)},
        {"filterType": "LOT_SIZE", "minQty": fmt8(spec.min_qty), "maxQty": fmt8(spec.max_qty),
         "stepSize": fmt8(spec.step)},
        {"filterType": "ICEBERG_PARTS", "limit": 100},
        {"filterType": "MARKET_LOT_SIZE", "minQty": fmt8(Decimal(0)), "maxQty": fmt8(spec.market_max_qty),
         "stepSize": fmt8(Decimal(0))},
        {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
         "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
        {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2",
         "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
        {"filterType": "NOTIONAL", "minNotional": fmt8(spec.min_notional), "applyMinToMarket": True,
         "maxNotional": fmt8(spec.max_notional), "applyMaxToMarket": False, "avgPriceMins": 5},
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": spec.max_num_orders},
        {"filterType": "MAX_NUM_ORDER_LISTS", "maxNumOrderLists": 20},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        {"filterType": "MAX_NUM_ORDER_AMENDS", "maxNumOrderAmends": 10},
    ]


def symbol_info(spec: SymbolSpec) -> dict[str, Any]:
    return {
        "symbol": spec.symbol, "status": spec.status, "baseAsset": spec.base, "baseAssetPrecision": 8,
        "quoteAsset": spec.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        # Only the types the sim's engine implements are advertised.
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "icebergAllowed": False, "ocoAllowed": False, "otoAllowed": False, "opoAllowed": False,
        "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": False, "cancelReplaceAllowed": False,
        "amendAllowed": False, "pegInstructionsAllowed": False, "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False, "filters": _filters(spec), "permissions": [],
        "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT",
                                            "TRANSFER"],
    }


def rate_limits_info(sim: SimExchange) -> list[dict[str, Any]]:
    lim = sim.ratelimiter.limits
    return [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
         "limit": lim.weight_per_minute},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": lim.orders_per_10s},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": lim.orders_per_day},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300000},
    ]


def _symbol_list(ctx: Ctx) -> list[SymbolSpec]:
    if ctx.params.get("symbol") and ctx.params.get("symbols"):
        raise errors.bad_param_combo()
    if ctx.params.get("symbol"):
        return [_sym(ctx)]
    raw = ctx.params.get("symbols")
    if raw:
        try:
            names = json.loads(raw)
        except ValueError:
            raise errors.illegal_chars("symbols", SYMBOLS_LEGAL) from None
        if not isinstance(names, list) or not names:
            raise errors.invalid_param("symbols")
        out = []
        for name in names:
            spec = ctx.sim.specs.get(name) if isinstance(name, str) else None
            if spec is None:
                raise errors.invalid_symbol()
            out.append(spec)
        return out
    return list(ctx.sim.specs.values())


async def exchange_info(ctx: Ctx) -> Any:
    specs = _symbol_list(ctx)
    status = ctx.params.get("symbolStatus")
    if status is not None:
        if status not in SYMBOL_STATUSES:
            raise errors.invalid_symbol_status()
        specs = [s for s in specs if s.status == status]
    return {"timezone": "UTC", "serverTime": ctx.sim.clock.now_ms(), "rateLimits": rate_limits_info(ctx.sim),
            "exchangeFilters": [], "symbols": [symbol_info(s) for s in specs]}


def _book_ticker_row(ctx: Ctx, spec: SymbolSpec) -> dict[str, str]:
    t = ctx.sim.market.book(spec.symbol).ticker()
    return {"symbol": spec.symbol, "bidPrice": t["b"], "bidQty": t["B"], "askPrice": t["a"], "askQty": t["A"]}


async def book_ticker(ctx: Ctx) -> Any:
    single = bool(ctx.params.get("symbol"))
    rows = [_book_ticker_row(ctx, s) for s in _symbol_list(ctx)]
    return rows[0] if single else rows


def _depth_weight(params: Mapping[str, str]) -> int:
    try:
        limit = int(params.get("limit") or 100)
    except ValueError:
        return 5
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250  # >5000: as 5000


async def depth(ctx: Ctx) -> Any:
    spec = _sym(ctx)
    status = ctx.params.get("symbolStatus")
    if status is not None:
        if status not in ("TRADING", "HALT", "BREAK"):
            raise errors.invalid_symbol_status()
        if spec.status != status:
            raise errors.BinanceError(-1220, "The symbol's status does not match the requested symbolStatus.")
    # rest-api.md: default 100, maximum 5000; a larger limit returns 5000 entries.
    limit = min(_limit(ctx.params, 100, 1_000_000), 5000)
    book = ctx.sim.market.book(spec.symbol)
    n = min(limit, DEPTH_LEVELS)
    return {"lastUpdateId": book.u,
            "bids": [[fmt8(p), fmt8(q)] for p, q in book.levels("bid", n)],
            "asks": [[fmt8(p), fmt8(q)] for p, q in book.levels("ask", n)]}


# -- account ------------------------------------------------------------------------------------

def account_info(sim: SimExchange, acct: Account, omit_zero: bool = False) -> dict[str, Any]:
    assets = list(acct.balances)
    for spec in sim.specs.values():
        for a in (spec.base, spec.quote):
            if a not in assets:
                assets.append(a)
    balances = [{"asset": a, "free": fmt8(acct.free(a)), "locked": fmt8(acct.locked(a))} for a in assets]
    if omit_zero:
        balances = [b for b in balances if Decimal(b["free"]) or Decimal(b["locked"])]
    return {
        "makerCommission": int(acct.maker_rate * 10000), "takerCommission": int(acct.taker_rate * 10000),
        "buyerCommission": 0, "sellerCommission": 0, "commissionRates": acct.rates(),
        "canTrade": acct.can_trade, "canWithdraw": acct.can_withdraw, "canDeposit": acct.can_deposit,
        "brokered": False, "requireSelfTradePrevention": False, "preventSor": False,
        "updateTime": acct.update_time, "accountType": "SPOT", "balances": balances,
        "permissions": ["SPOT"], "uid": acct.uid,
    }


async def account(ctx: Ctx) -> Any:
    assert ctx.account is not None
    omit = ctx.params.get("omitZeroBalances", "false")
    if omit not in ("true", "false"):
        raise errors.invalid_param("omitZeroBalances")
    return account_info(ctx.sim, ctx.account, omit == "true")


async def api_restrictions(ctx: Ctx) -> Any:
    assert ctx.api_key is not None
    return dict(ctx.api_key.api_restrictions)


# -- orders -------------------------------------------------------------------------------------

def _failure_response(ctx: Ctx, http_status: int, code: int | None) -> web.Response:
    if code is None:
        body = f"<html><body><h1>{http_status} Service Unavailable</h1></body></html>"
        return web.Response(text=body, status=http_status, content_type="text/html")
    msg = errors.TIMEOUT_MSG if code == -1007 else "An unknown error occurred while processing the request."
    return _json({"code": code, "msg": msg}, http_status)


async def new_order(ctx: Ctx) -> Any:
    assert ctx.account is not None
    sim = ctx.sim
    req = parse_new_order(ctx.params, sim.specs)
    sim.ratelimiter.check_order(ctx.account.id)
    late = sim.faults.take_late_order()
    if late is not None:
        return _late_order(ctx, req, late)
    failure = sim.faults.take_order_failure()
    if failure is not None:
        if failure.placed:
            try:
                sim.engine.place(ctx.account, req)
                sim.ratelimiter.count_order(ctx.account.id)
            except errors.BinanceError:
                pass   # the client cannot know: the answer is the failure either way
        return _failure_response(ctx, failure.http_status, failure.code)
    try:
        order, transact = sim.engine.place(ctx.account, req)
    except errors.BinanceError as exc:
        if reached_engine(exc):
            sim.ratelimiter.count_order(ctx.account.id)
        raise
    ctx.headers.update(sim.ratelimiter.count_order(ctx.account.id))
    return order_response(order, req.resp_type, transact)


def _late_order(ctx: Ctx, req: Any, late: LateOrder) -> web.Response:
    """Fault: accepted, but the answer is lost and the order reaches the engine later."""
    sim, account = ctx.sim, ctx.account
    assert account is not None

    def place() -> None:
        try:
            sim.engine.place(account, req)
            sim.ratelimiter.count_order(account.id)
        except errors.BinanceError:
            pass  # refused when it finally arrives (e.g. the market moved): nothing was placed

    sim.faults.place_later(late.delay_ms, place, req.client_order_id or "")
    if late.http_status is None:
        transport = ctx.request.transport
        if transport is not None:
            transport.abort()  # the connection drops: the client never sees an answer
    return _failure_response(ctx, late.http_status or 503, None)


async def test_order(ctx: Ctx) -> Any:
    assert ctx.account is not None
    params = {k: v for k, v in ctx.params.items() if k != "computeCommissionRates"}
    req = parse_new_order(params, ctx.sim.specs)
    book = ctx.sim.market.book(req.symbol)
    check_filters(ctx.sim.specs[req.symbol], req, (book.bid + book.ask) / 2)
    if ctx.params.get("computeCommissionRates") == "true":
        acct = ctx.account
        rates = {"maker": fmt8(acct.maker_rate), "taker": fmt8(acct.taker_rate)}
        return {"standardCommissionForOrder": rates,
                "specialCommissionForOrder": {"maker": fmt8(Decimal(0)), "taker": fmt8(Decimal(0))},
                "taxCommissionForOrder": {"maker": fmt8(Decimal(0)), "taker": fmt8(Decimal(0))},
                "discount": {"enabledForAccount": False, "enabledForSymbol": False,
                             "discountAsset": "BNB", "discount": "0.25000000"}}
    return {}


def _order_ids(ctx: Ctx) -> tuple[int | None, str | None]:
    order_id = parse_int(ctx.params, "orderId")
    client_id = parse_client_id(ctx.params, "origClientOrderId")
    if order_id is None and client_id is None:
        raise errors.one_of_missing("origClientOrderId", "orderId")
    return order_id, client_id


async def get_order(ctx: Ctx) -> Any:
    assert ctx.account is not None
    spec = _sym(ctx)
    order_id, client_id = _order_ids(ctx)
    order = ctx.sim.engine.find_order(ctx.account.id, spec.symbol, order_id, client_id)
    if order is None:
        raise errors.no_such_order()
    if order_id is not None and client_id is not None and order.client_order_id != client_id:
        raise errors.order_id_mismatch()
    return query_response(order)


async def cancel_order(ctx: Ctx) -> Any:
    assert ctx.account is not None
    spec = _sym(ctx)
    order_id, client_id = _order_ids(ctx)
    cancel_id = parse_client_id(ctx.params, "newClientOrderId")
    restrictions = ctx.params.get("cancelRestrictions")
    if restrictions is not None and restrictions not in ("ONLY_NEW", "ONLY_PARTIALLY_FILLED"):
        raise errors.invalid_param("cancelRestrictions")
    found = ctx.sim.engine.find_order(ctx.account.id, spec.symbol, order_id, client_id)
    if found is not None and restrictions and found.is_open and \
            found.status != restrictions.removeprefix("ONLY_"):
        raise errors.BinanceError(-2011, "Order was not canceled due to cancel restrictions.")
    order, transact = ctx.sim.engine.cancel(ctx.account, spec.symbol, order_id, client_id, cancel_id)
    return cancel_response(order, transact)


async def cancel_open_orders(ctx: Ctx) -> Any:
    assert ctx.account is not None
    spec = _sym(ctx)
    done = ctx.sim.engine.cancel_all(ctx.account, spec.symbol)
    if not done:
        raise errors.unknown_order_cancel()
    return [cancel_response(o, t) for o, t in done]


async def open_orders(ctx: Ctx) -> Any:
    assert ctx.account is not None
    spec = parse_symbol(ctx.params, ctx.sim.specs, required=False)
    rows = ctx.sim.engine.open_orders(ctx.account.id, spec.symbol if spec else None)
    return [query_response(o) for o in rows]


def _window(ctx: Ctx) -> tuple[int | None, int | None]:
    start = parse_int(ctx.params, "startTime")
    end = parse_int(ctx.params, "endTime")
    if start is not None and end is not None:
        if end < start:
            raise errors.BinanceError(-1127, "Lookup interval is too big.")
        if end - start > DAY_MS:
            raise errors.lookup_too_big()
    return start, end


async def all_orders(ctx: Ctx) -> Any:
    assert ctx.account is not None
    spec = _sym(ctx)
    order_id = parse_int(ctx.params, "orderId")
    start, end = _window(ctx)
    limit = _limit(ctx.params, 500, 1000)
    rows = ctx.sim.engine.all_orders(ctx.account.id, spec.symbol, order_id=order_id, start=start, end=end,
                                     limit=limit)
    return [query_response(o) for o in rows]


async def my_trades(ctx: Ctx) -> Any:
    assert ctx.account is not None
    spec = _sym(ctx)
    order_id = parse_int(ctx.params, "orderId")
    from_id = parse_int(ctx.params, "fromId")
    start, end = _window(ctx)
    limit = _limit(ctx.params, 500, 1000)
    # Binance's supported combinations: fromId only with orderId, never with a time window;
    # orderId never with a time window.
    if (from_id is not None or order_id is not None) and (start is not None or end is not None):
        raise errors.bad_param_combo()
    rows = ctx.sim.engine.my_trades(ctx.account.id, spec.symbol, order_id=order_id, from_id=from_id,
                                    start=start, end=end, limit=limit)
    return [trade_row(t) for t in rows]


def _open_orders_weight(params: Mapping[str, str]) -> int:
    return 6 if params.get("symbol") else 80


def _symbols_weight(single: int, many: int) -> Callable[[Mapping[str, str]], int]:
    return lambda p: single if p.get("symbol") else many


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/api/v3/ping"): Route(ping, frozenset(), False, _const(1)),
    ("GET", "/api/v3/time"): Route(server_time, frozenset(), False, _const(1)),
    ("GET", "/api/v3/exchangeInfo"): Route(
        exchange_info, frozenset({"symbol", "symbols", "permissions", "showPermissionSets", "symbolStatus"}),
        False, _const(20)),
    ("GET", "/api/v3/ticker/bookTicker"): Route(book_ticker, frozenset({"symbol", "symbols"}), False,
                                                _symbols_weight(2, 4)),
    ("GET", "/api/v3/depth"): Route(depth, frozenset({"symbol", "limit", "symbolStatus"}), False,
                                    _depth_weight),
    ("GET", "/api/v3/account"): Route(account, frozenset({"omitZeroBalances"}), True, _const(20)),
    ("POST", "/api/v3/order"): Route(new_order, NEW_ORDER_PARAMS, True, _const(0), failure_weight=1),
    ("POST", "/api/v3/order/test"): Route(test_order, NEW_ORDER_PARAMS | {"computeCommissionRates"}, True,
                                          lambda p: 20 if p.get("computeCommissionRates") == "true" else 1),
    ("GET", "/api/v3/order"): Route(get_order, frozenset({"symbol", "orderId", "origClientOrderId"}), True,
                                    _const(4)),
    ("DELETE", "/api/v3/order"): Route(
        cancel_order, frozenset({"symbol", "orderId", "origClientOrderId", "newClientOrderId",
                                 "cancelRestrictions"}), True, _const(0), failure_weight=1),
    ("DELETE", "/api/v3/openOrders"): Route(cancel_open_orders, frozenset({"symbol"}), True, _const(0),
                                            failure_weight=1),
    ("GET", "/api/v3/openOrders"): Route(open_orders, frozenset({"symbol"}), True, _open_orders_weight),
    ("GET", "/api/v3/allOrders"): Route(all_orders, frozenset({"symbol", "orderId", "startTime", "endTime",
                                                               "limit"}), True, _const(20)),
    ("GET", "/api/v3/myTrades"): Route(my_trades, frozenset({"symbol", "orderId", "startTime", "endTime",
                                                             "fromId", "limit"}), True,
                                       lambda p: 5 if p.get("orderId") else 20),
    ("GET", "/sapi/v1/account/apiRestrictions"): Route(api_restrictions, frozenset(), True, _const(1)),
}


def _remote(request: web.Request) -> str:
    return request.remote or "127.0.0.1"


async def _dispatch(request: web.Request, sim: SimExchange, route: Route) -> web.Response:
    ip = _remote(request)
    limiter = sim.ratelimiter
    raw_query = request.raw_path.partition("?")[2]
    # body_exists, not can_read_body: a replay hook may have read (and aiohttp cached) the body.
    has_body = request.method in ("POST", "PUT", "DELETE") and request.body_exists
    body = await request.text() if has_body else ""
    ctx: Ctx | None = None
    if sim.faults.take_waf():
        # The WAF answers before Binance's API sees the request: no weight, no JSON error body.
        return web.Response(text=WAF_PAGE, status=403, content_type="text/html")
    try:
        limiter.gate(ip)
        if sim.faults.take_429():
            retry_s = limiter.limits.burst_retry_after_s
            limiter.note_429(ip, retry_s)
            raise errors.BinanceError(
                -1003, "Too many requests queued.", 429, {"Retry-After": str(retry_s)})
        params = parse_params(raw_query, body)
        ctx = Ctx(sim=sim, request=request, params=params, failure_weight=route.failure_weight)
        limiter.charge(ip, route.weight(params))
        if route.signed:
            ctx.account, ctx.api_key = authenticate_signed(sim.accounts, request.headers, raw_query, body,
                                                           params, sim.clock.now_ms(), sim.clock.time_scale)
        read, auth_read = route.params, AUTH_PARAMS if route.signed else _NONE
        if any(k not in read and k not in auth_read for k in params):
            raise errors.unread_params(sum(1 for k in params if k in read or k in auth_read), len(params))
        result = await route.handler(ctx)
        response = result if isinstance(result, web.StreamResponse) else _json(result, headers=ctx.headers)
    except errors.BinanceError as exc:
        if ctx is not None and ctx.failure_weight:
            with contextlib.suppress(errors.BinanceError):
                limiter.charge(ip, ctx.failure_weight)
        response = _json(exc.body(), exc.http_status, exc.headers)
    response.headers["X-MBX-USED-WEIGHT-1M"] = str(limiter.used_weight(ip))
    return response


def add_routes(app: web.Application, sim: SimExchange) -> None:
    serve_routes(app, sim, ROUTES)
    app.middlewares.append(_hold_middleware)


def serve_routes(app: web.Application, sim: SimExchange, table: Mapping[tuple[str, str], Route]) -> None:
    """Serve ``table``'s routes through this module's dispatcher (weight, faults, auth,
    Binance-shaped errors); other route modules (``rest_market``) use it for theirs."""
    mount(app, table, lambda request, route: _dispatch(request, sim, route))


@web.middleware
async def _hold_middleware(request: web.Request, handler: WebHandler) -> web.StreamResponse:
    """Fault: answer the request (its effects happen) but hold the response N wall seconds."""
    sim: SimExchange = request.app[SIM]
    if sim.before_order is not None and request.method in ("POST", "DELETE") \
            and request.path == "/api/v3/order":
        await sim.before_order(request)   # a replay's order of arrival and latency
    response = await handler(request)
    if sim.before_response is not None and request.path.startswith(("/api/", "/sapi/")):
        await sim.before_response()   # a lock-step replay (executor/replay/runner.py)
    held = sim.faults.take_hold(request.path)
    if held:
        await asyncio.sleep(held)
    return response
