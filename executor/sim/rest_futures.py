"""USDⓈ-M futures REST on the futures host (``/fapi``): the calls the bot makes.

Market: ``/fapi/v1/ping``, ``/fapi/v1/time``, ``/fapi/v1/exchangeInfo``,
``/fapi/v1/premiumIndex``. Account (SIGNED, same checks as spot via ``auth``):
``/fapi/v2/account`` (python-binance ``futures_account``), ``/fapi/v3/account``,
``/fapi/v3/balance`` (``futures_account_balance``) and ``/fapi/v2/balance``,
``/fapi/v3/positionRisk``. User stream: ``POST/PUT/DELETE /fapi/v1/listenKey`` with the
API key header only; POST creates or returns-and-extends, PUT on an unknown or lapsed
key answers -1125.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from aiohttp import web

from executor.core.money import format_decimal
from executor.sim import auth, errors
from executor.sim.appkeys import SIM
from executor.sim.futures_account import FuturesSide, attach

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NO_SUCH_KEY = errors.BinanceError(-1125, "This listenKey does not exist.")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _wrap(handler: Callable[[web.Request, Any, FuturesSide], Awaitable[Any]]) -> Handler:
    async def route(request: web.Request) -> web.StreamResponse:
        sim = request.app[SIM]
        try:
            return _json(await handler(request, sim, attach(sim)))
        except errors.BinanceError as exc:
            return _json(exc.body(), exc.http_status, exc.headers)
    return route


async def _params(request: web.Request) -> tuple[dict[str, str], str, str]:
    query = request.rel_url.raw_query_string
    body = await request.text() if request.can_read_body else ""
    return auth.parse_params(query, body), query, body


async def _signed(request: web.Request, sim: Any) -> str:
    params, query, body = await _params(request)
    account, _ = auth.authenticate_signed(sim.accounts, request.headers, query, body, params,
                                          sim.clock.now_ms(), sim.clock.time_scale)
    return str(account.id)


async def ping(request: web.Request, sim: Any, side: FuturesSide) -> Any:
    return {}


async def server_time(request: web.Request, sim: Any, side: FuturesSide) -> Any:
    return {"serverTime": sim.clock.now_ms()}


def _symbol_info(symbol: str, spec: Any) -> dict[str, Any]:
    tick = format_decimal(Decimal(getattr(spec, "tick", "0.01")))
    base = getattr(spec, "base", symbol[:-4])
    return {
        "symbol": symbol, "pair": symbol, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000, "status": "TRADING", "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000", "baseAsset": base, "quoteAsset": "USDT", "marginAsset": "USDT",
        "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8, "quotePrecision": 8,
        "underlyingType": "COIN", "underlyingSubType": [], "settlePlan": 0, "triggerProtect": "0.0500",
        "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "4529764", "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "120", "stepSize": "0.001"},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": "100"},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
             "multiplierDecimal": "4"},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                       "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        "permissionSets": ["GRID", "COPY"],
    }


async def exchange_info(request: web.Request, sim: Any, side: FuturesSide) -> Any:
    specs = getattr(getattr(sim, "market", None), "specs", {}) or {}
    from executor.sim.rest_futures_orders import limiter_of

    lim = limiter_of(sim).limits      # the limits the futures routes enforce (tests may change them)
    rate_limits = [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
         "limit": lim.weight_per_minute},
        {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": lim.orders_per_minute},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": lim.orders_per_10s},
    ]
    return {"timezone": "UTC", "serverTime": sim.clock.now_ms(), "futuresType": "U_MARGINED",
            "rateLimits": rate_limits, "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": [_symbol_info(s, specs.get(s)) for s in side.market.symbols]}


async def premium_index(request: web.Request, sim: Any, side: FuturesSide) -> Any:
    symbol = request.query.get("symbol")
    if symbol is not None:
        state = side.market.state(symbol)
        if state is None:
            raise errors.invalid_symbol()
        return state.premium_index()
    rows = [side.market.state(s) for s in side.market.symbols]
    return [r.premium_index() for r in rows if r is not None]


async def account(request: web.Request, sim: Any, side: FuturesSide) -> Any:
    return side.account_view(await _signed(request, sim))


async def balance(request: web.Request, sim: Any, side: FuturesSide) -> Any:
    account_id = await _signed(request, sim)
    return side.balance_rows(account_id, alias=f"sim{account_id}")


async def position_risk(request: web.Request, sim: Any, side: FuturesSide) -> Any:
    account_id = await _signed(request, sim)
    symbol = request.query.get("symbol")
    out = []
    for r in side.account_view(account_id)["positions"]:
        if symbol not in (None, r["symbol"]) or (symbol is None and not Decimal(r["positionAmt"])):
            continue
        state = side.market.state(r["symbol"])
        liquidation = side.liquidation_price(account_id, r["symbol"])
        out.append({"symbol": r["symbol"], "positionSide": "BOTH", "positionAmt": r["positionAmt"],
                    "entryPrice": r["entryPrice"], "breakEvenPrice": r["breakEvenPrice"],
                    "markPrice": f"{state.mark:.8f}" if state else "0",
                    "unRealizedProfit": r["unrealizedProfit"],
                    "liquidationPrice": f"{liquidation:.8f}" if liquidation is not None else "0",
                    "isolatedMargin": "0", "notional": r["notional"], "marginAsset": "USDT",
                    "isolatedWallet": "0", "initialMargin": "0", "maintMargin": r["maintMargin"],
                    "positionInitialMargin": "0", "openOrderInitialMargin": "0", "adl": 0,
                    "bidNotional": "0", "askNotional": "0", "updateTime": r["updateTime"]})
    return out


async def listen_key_post(request: web.Request, sim: Any, side: FuturesSide) -> Any:
    acct, _ = auth.lookup_key(sim.accounts, request.headers)
    return {"listenKey": side.listen_keys.create_or_extend(str(acct.id))}


async def listen_key_put(request: web.Request, sim: Any, side: FuturesSide) -> Any:
    acct, _ = auth.lookup_key(sim.accounts, request.headers)
    params, _, _ = await _params(request)
    key = params.get("listenKey") or side.listen_keys.active_key(str(acct.id))
    if not key or not side.listen_keys.keepalive(key, str(acct.id)):
        raise NO_SUCH_KEY
    return {"listenKey": key}


async def listen_key_delete(request: web.Request, sim: Any, side: FuturesSide) -> Any:
    acct, _ = auth.lookup_key(sim.accounts, request.headers)
    params, _, _ = await _params(request)
    key = params.get("listenKey") or side.listen_keys.active_key(str(acct.id))
    if not key or side.listen_keys.account_of(key) != str(acct.id) or not side.listen_keys.close(key):
        raise NO_SUCH_KEY
    return {}


@web.middleware
async def _hold_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Fault (``Faults.hold`` with a /fapi path): answer, effects done, N wall seconds late."""
    response = await handler(request)
    held = request.app[SIM].faults.take_hold(request.path)
    if held:
        await asyncio.sleep(held)
    return response


def add_routes(app: web.Application, sim: Any) -> None:
    attach(sim)
    app.middlewares.append(_hold_middleware)
    r = app.router
    r.add_get("/fapi/v1/ping", _wrap(ping))
    r.add_get("/fapi/v1/time", _wrap(server_time))
    r.add_get("/fapi/v1/exchangeInfo", _wrap(exchange_info))
    r.add_get("/fapi/v1/premiumIndex", _wrap(premium_index))
    for version in ("v2", "v3"):
        r.add_get(f"/fapi/{version}/account", _wrap(account))
        r.add_get(f"/fapi/{version}/balance", _wrap(balance))
    r.add_get("/fapi/v3/positionRisk", _wrap(position_risk))     # v2: rest_futures_orders
    r.add_post("/fapi/v1/listenKey", _wrap(listen_key_post))
    r.add_put("/fapi/v1/listenKey", _wrap(listen_key_put))
    r.add_delete("/fapi/v1/listenKey", _wrap(listen_key_delete))
