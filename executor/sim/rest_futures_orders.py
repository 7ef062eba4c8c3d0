"""USDⓈ-M futures trading REST on the futures host: orders, trades, income and settings.

Routes: ``POST/DELETE/GET /fapi/v1/order``, ``GET /fapi/v1/openOrders``,
``GET /fapi/v2/positionRisk``, ``GET /fapi/v1/userTrades``, ``GET /fapi/v1/income``,
``POST /fapi/v1/leverage``, ``POST /fapi/v1/marginType``, ``GET/POST /fapi/v1/positionSide/dual``.
Every request passes the futures rate limits (REQUEST_WEIGHT 2400 per minute per IP with
``X-MBX-USED-WEIGHT-1M``; ORDERS 300 per 10 s and 1200 per minute per account with
``X-MBX-ORDER-COUNT-10S``/``-1M`` on accepted orders), the signature checks shared with spot
(``auth``), unread-parameter checks (-1104) and the fault switchboard's order failures
(a 5xx or -1007 answer with the order placed or not), like the spot routes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web

from executor.sim import errors, wire_json
from executor.sim.appkeys import SIM
from executor.sim.auth import AUTH_PARAMS, authenticate_signed, parse_params
from executor.sim.clock import SimClock
from executor.sim.engine import CLIENT_ID_LEGAL, CLIENT_ID_RE, parse_decimal, parse_int
from executor.sim.futures_account import FuturesSide, attach
from executor.sim.futures_orders import FuturesOrderRequest
from executor.sim.ratelimit import RateLimiter, RateLimits
from executor.sim.routing import mount

TEN_S_MS = 10_000
MINUTE_MS = 60_000
NEW_ORDER_PARAMS = frozenset({"symbol", "side", "positionSide", "type", "timeInForce", "quantity",
                              "reduceOnly",
                              "price", "newClientOrderId", "newOrderRespType", "selfTradePreventionMode"})
TIFS = ("GTC", "IOC", "FOK", "GTX")


@dataclass
class FuturesLimits:
    """Futures REST limits (exchangeInfo ``rateLimits``); mutable for tests."""

    weight_per_minute: int = 2400
    orders_per_10s: int = 300
    orders_per_minute: int = 1200


@dataclass
class _Count:
    window_10s: int = -1
    n_10s: int = 0
    window_1m: int = -1
    n_1m: int = 0


@dataclass
class FuturesRateLimiter:
    """Weight per IP (a spot-shaped limiter of its own) and ORDERS per account (10 s, 1 min)."""

    clock: SimClock
    limits: FuturesLimits = field(default_factory=FuturesLimits)
    weight: RateLimiter = field(init=False)
    _orders: dict[str, _Count] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.weight = RateLimiter(self.clock, RateLimits(weight_per_minute=self.limits.weight_per_minute))

    def set_limits(self, limits: FuturesLimits) -> None:
        """Replace the limits (weight, orders per 10 s and per minute) on a live exchange."""
        self.limits = limits
        self.weight.limits.weight_per_minute = limits.weight_per_minute

    def _count(self, account: str) -> _Count:
        st = self._orders.setdefault(account, _Count())
        now = self.clock.now_ms()
        if st.window_10s != now // TEN_S_MS:
            st.window_10s, st.n_10s = now // TEN_S_MS, 0
        if st.window_1m != now // MINUTE_MS:
            st.window_1m, st.n_1m = now // MINUTE_MS, 0
        return st

    def check_order(self, account: str) -> None:
        st = self._count(account)
        if st.n_10s >= self.limits.orders_per_10s:
            raise errors.too_many_orders(self.limits.orders_per_10s, "10 SECOND")
        if st.n_1m >= self.limits.orders_per_minute:
            raise errors.too_many_orders(self.limits.orders_per_minute, "1 MINUTE")

    def count_order(self, account: str) -> dict[str, str]:
        st = self._count(account)
        st.n_10s += 1
        st.n_1m += 1
        return {"X-MBX-ORDER-COUNT-10S": str(st.n_10s), "X-MBX-ORDER-COUNT-1M": str(st.n_1m)}


def limiter_of(sim: Any) -> FuturesRateLimiter:
    """The exchange's futures limiter (created on first use; tests lower its limits)."""
    side = attach(sim)
    existing = getattr(side, "ratelimiter", None)
    if isinstance(existing, FuturesRateLimiter):
        return existing
    side.ratelimiter = FuturesRateLimiter(sim.clock)
    return side.ratelimiter


@dataclass
class Ctx:
    sim: Any
    side: FuturesSide
    params: dict[str, str]
    account: str
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Ctx], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    handler: Handler
    params: frozenset[str]
    weight: Callable[[Mapping[str, str]], int]


def _const(n: int) -> Callable[[Mapping[str, str]], int]:
    return lambda _p: n


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=wire_json.dumps(data), status=status,
                        content_type="application/json", headers=headers)


def _symbol(ctx: Ctx, required: bool = True) -> str | None:
    raw = ctx.params.get("symbol")
    if not raw:
        if required:
            raise errors.mandatory_missing("symbol")
        return None
    if raw not in ctx.side.market.symbols:
        raise errors.invalid_symbol()
    return raw


def _client_id(params: Mapping[str, str], name: str) -> str | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not CLIENT_ID_RE.match(raw):
        raise errors.illegal_chars(name, CLIENT_ID_LEGAL)
    return raw


def _bool(params: Mapping[str, str], name: str) -> bool:
    raw = params.get(name, "false").lower()
    if raw not in ("true", "false"):
        raise errors.invalid_param(name)
    return raw == "true"


def _tick(ctx: Ctx, symbol: str) -> Decimal:
    spec = ctx.sim.specs.get(symbol)
    return Decimal(getattr(spec, "tick", Decimal("0.01")))


def parse_order(ctx: Ctx) -> tuple[FuturesOrderRequest, str]:
    p = ctx.params
    symbol = _symbol(ctx)
    assert symbol is not None
    side = p.get("side")
    if not side:
        raise errors.mandatory_missing("side")
    if side not in ("BUY", "SELL"):
        raise errors.invalid_side()
    order_type = p.get("type")
    if not order_type:
        raise errors.mandatory_missing("type")
    if order_type not in ("LIMIT", "MARKET"):
        raise errors.invalid_order_type()
    qty = parse_decimal(p, "quantity", required=True)
    assert qty is not None
    price = parse_decimal(p, "price", required=order_type == "LIMIT")
    tif = p.get("timeInForce")
    if order_type == "LIMIT":
        if not tif:
            raise errors.mandatory_missing("timeInForce")
        if tif not in TIFS:
            raise errors.invalid_tif()
    else:
        if price is not None:
            raise errors.param_not_required("price")
        tif = "GTC"
    resp_type = p.get("newOrderRespType", "ACK")
    if resp_type not in ("ACK", "RESULT"):
        raise errors.invalid_param("newOrderRespType")
    client_id = _client_id(p, "newClientOrderId") or ctx.side.orders.auto_client_id()
    position_side = p.get("positionSide", "BOTH")
    if position_side not in ("BOTH", "LONG", "SHORT"):
        raise errors.invalid_param("positionSide")
    return FuturesOrderRequest(symbol=symbol, side=side, type=order_type, tif=tif, quantity=qty, price=price,
                               reduce_only=_bool(p, "reduceOnly"), client_order_id=client_id,
                               position_side=position_side), resp_type


def _failure_response(http_status: int, code: int | None) -> web.Response:
    if code is None:
        body = f"<html><body><h1>{http_status} Service Unavailable</h1></body></html>"
        return web.Response(text=body, status=http_status, content_type="text/html")
    msg = errors.TIMEOUT_MSG if code == -1007 else "An unknown error occurred while processing the request."
    return _json({"code": code, "msg": msg}, http_status)


async def new_order(ctx: Ctx) -> Any:
    req, resp_type = parse_order(ctx)
    limiter = limiter_of(ctx.sim)
    limiter.check_order(ctx.account)
    tick = _tick(ctx, req.symbol)
    failure = ctx.sim.faults.take_order_failure("futures")
    if failure is not None:
        if failure.placed:
            with contextlib.suppress(errors.BinanceError):  # the client cannot know either way
                ctx.side.orders.place(ctx.account, req, tick)
                limiter.count_order(ctx.account)
        return _failure_response(failure.http_status, failure.code)
    order = ctx.side.orders.place(ctx.account, req, tick)
    ctx.headers.update(limiter.count_order(ctx.account))
    body = order.response()
    if resp_type == "ACK":
        # ACK: the order as accepted, before any matching.
        body.update(status="NEW", executedQty="0.000", cumQty="0.000", cumQuote="0.00000000",
                    avgPrice="0.00000", updateTime=order.time)
    return body


def _find(ctx: Ctx, symbol: str) -> tuple[int | None, str | None]:
    order_id = parse_int(ctx.params, "orderId")
    client_id = _client_id(ctx.params, "origClientOrderId")
    if order_id is None and client_id is None:
        raise errors.one_of_missing("orderId", "origClientOrderId")
    return order_id, client_id


async def get_order(ctx: Ctx) -> Any:
    symbol = _symbol(ctx)
    assert symbol is not None
    order = ctx.side.orders.find(ctx.account, symbol, *_find(ctx, symbol))
    if order is None:
        raise errors.BinanceError(-2013, "Order does not exist.")
    return order.row()


async def cancel_order(ctx: Ctx) -> Any:
    symbol = _symbol(ctx)
    assert symbol is not None
    return ctx.side.orders.cancel(ctx.account, symbol, *_find(ctx, symbol)).response()


async def open_orders(ctx: Ctx) -> Any:
    return [o.row() for o in ctx.side.orders.open_orders(ctx.account, _symbol(ctx, required=False))]


def _window(ctx: Ctx, default_limit: int, max_limit: int) -> tuple[int | None, int | None, int]:
    start, end = parse_int(ctx.params, "startTime"), parse_int(ctx.params, "endTime")
    limit = parse_int(ctx.params, "limit") or default_limit
    if limit <= 0 or limit > max_limit:
        raise errors.invalid_param("limit")
    if start is not None and end is not None and end < start:
        raise errors.BinanceError(-1023, "Start time is greater than end time.")
    return start, end, limit


async def user_trades(ctx: Ctx) -> Any:
    symbol = _symbol(ctx)
    assert symbol is not None
    start, end, limit = _window(ctx, 500, 1000)
    from_id, order_id = parse_int(ctx.params, "fromId"), parse_int(ctx.params, "orderId")
    rows = ctx.side.orders.user_trades(ctx.account, symbol)
    if order_id is not None:
        rows = [t for t in rows if t.order_id == order_id]
    return [t.row() for t in _id_or_window(rows, lambda t: t.trade_id, from_id, start, end, limit)]


def _id_or_window(rows: list[Any], key: Any, from_id: int | None, start: int | None, end: int | None,
                  limit: int) -> list[Any]:
    """Rows (oldest first) from ``from_id`` up (``key``: the row's id), else those in the
    time window: the first ``limit`` from ``start``, or without one the most recent ``limit``."""
    if from_id is not None:
        return [r for r in rows if key(r) >= from_id][:limit]
    rows = [r for r in rows if (start is None or r.time >= start) and (end is None or r.time <= end)]
    return rows[:limit] if start is not None else rows[-limit:]


async def all_orders(ctx: Ctx) -> Any:
    """``GET /fapi/v1/allOrders``: the account's orders of ``symbol`` by orderId; from
    ``orderId`` up when given, else those in the time window (default: the most recent)."""
    symbol = _symbol(ctx)
    assert symbol is not None
    start, end, limit = _window(ctx, 500, 1000)
    order_id = parse_int(ctx.params, "orderId")
    rows = sorted((o for o in ctx.side.orders.orders.values()
                   if o.account == ctx.account and o.symbol == symbol), key=lambda o: o.order_id)
    return [o.row() for o in _id_or_window(rows, lambda o: o.order_id, order_id, start, end, limit)]


async def income(ctx: Ctx) -> Any:
    symbol = _symbol(ctx, required=False)
    start, end, limit = _window(ctx, 100, 1000)
    kind = ctx.params.get("incomeType")
    rows = [dict(r) for r in ctx.side.income if r["account"] == ctx.account
            and symbol in (None, r["symbol"]) and kind in (None, r["incomeType"])
            and (start is None or r["time"] >= start) and (end is None or r["time"] <= end)]
    page = parse_int(ctx.params, "page") or 1
    rows = rows[(page - 1) * limit:page * limit] if start is not None or page > 1 else rows[-limit:]
    for r in rows:
        del r["account"]
    return rows


def _mark(side: FuturesSide, symbol: str) -> Decimal | None:
    state = side.market.state(symbol)
    return state.mark if state else None


async def position_risk_v2(ctx: Ctx) -> Any:
    symbol = _symbol(ctx, required=False)
    wallet = ctx.side.wallet(ctx.account)
    out = []
    for sym in ctx.side.market.symbols:
        if symbol not in (None, sym):
            continue
        pos = wallet.positions.get(sym)
        amount = pos.amount if pos else Decimal(0)
        entry = pos.entry_price if pos else Decimal(0)
        mark = _mark(ctx.side, sym) or Decimal(0)
        margin_type = ctx.side.orders.margin_type(ctx.account, sym)
        liquidation = ctx.side.liquidation_price(ctx.account, sym)
        out.append({"entryPrice": f"{entry:.8f}", "breakEvenPrice": f"{entry:.8f}",
                    "marginType": "isolated" if margin_type == "ISOLATED" else "cross",
                    "isAutoAddMargin": "false", "isolatedMargin": "0.00000000",
                    "leverage": str(ctx.side.orders.leverage(ctx.account, sym)),
                    "liquidationPrice": f"{liquidation:.8f}" if liquidation is not None else "0",
                    "markPrice": f"{mark:.8f}", "maxNotionalValue": "1000000",
                    "positionAmt": f"{amount:.3f}", "notional": f"{amount * mark:.8f}",
                    "isolatedWallet": "0", "symbol": sym,
                    "unRealizedProfit": f"{(mark - entry) * amount:.8f}", "positionSide": "BOTH",
                    "updateTime": wallet.update_time})
    return out


FORCE_ORDER_KEYS = ("orderId", "symbol", "status", "clientOrderId", "price", "avgPrice", "origQty",
                    "executedQty", "cumQuote", "timeInForce", "type", "reduceOnly", "closePosition", "side",
                    "positionSide", "stopPrice", "workingType", "origType", "time", "updateTime")


async def force_orders(ctx: Ctx) -> Any:
    """``GET /fapi/v1/forceOrders``: liquidation orders (this exchange makes no ADL orders)."""
    start, end, limit = _window(ctx, 50, 100)
    kind = ctx.params.get("autoCloseType")
    if kind not in (None, "LIQUIDATION", "ADL"):
        raise errors.invalid_param("autoCloseType")
    rows = [o for o in ctx.side.orders.force_orders(ctx.account, _symbol(ctx, required=False))
            if kind != "ADL" and (start is None or o.time >= start) and (end is None or o.time <= end)]
    return [{k: o.row()[k] for k in FORCE_ORDER_KEYS} for o in rows[-limit:]]


async def leverage_bracket(ctx: Ctx) -> Any:
    """``GET /fapi/v1/leverageBracket``: the one bracket the liquidation rule uses."""
    symbol = _symbol(ctx, required=False)
    rows = [{"symbol": s, "brackets": [ctx.side.bracket(s).row()]} for s in ctx.side.market.symbols
            if symbol in (None, s)]
    return rows[0] if symbol is not None else rows


async def leverage(ctx: Ctx) -> Any:
    symbol = _symbol(ctx)
    assert symbol is not None
    value = parse_int(ctx.params, "leverage", required=True)
    assert value is not None
    return ctx.side.orders.set_leverage(ctx.account, symbol, value)


async def margin_type(ctx: Ctx) -> Any:
    symbol = _symbol(ctx)
    assert symbol is not None
    value = ctx.params.get("marginType")
    if not value:
        raise errors.mandatory_missing("marginType")
    return ctx.side.orders.set_margin_type(ctx.account, symbol, value.upper())


async def get_dual(ctx: Ctx) -> Any:
    return {"dualSidePosition": ctx.side.orders.account_settings(ctx.account).dual_side}


async def post_dual(ctx: Ctx) -> Any:
    if "dualSidePosition" not in ctx.params:
        raise errors.mandatory_missing("dualSidePosition")
    return ctx.side.orders.set_dual_side(ctx.account, _bool(ctx.params, "dualSidePosition"))


ID_PARAMS = frozenset({"symbol", "orderId", "origClientOrderId"})
WINDOW = frozenset({"startTime", "endTime", "limit"})
ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/fapi/v1/order"): Route(new_order, NEW_ORDER_PARAMS, _const(0)),
    ("GET", "/fapi/v1/order"): Route(get_order, ID_PARAMS, _const(1)),
    ("DELETE", "/fapi/v1/order"): Route(cancel_order, ID_PARAMS, _const(1)),
    ("GET", "/fapi/v1/allOrders"): Route(all_orders, WINDOW | {"symbol", "orderId"}, _const(5)),
    ("GET", "/fapi/v1/openOrders"): Route(open_orders, frozenset({"symbol"}),
                                          lambda p: 1 if p.get("symbol") else 40),
    ("GET", "/fapi/v2/positionRisk"): Route(position_risk_v2, frozenset({"symbol"}), _const(5)),
    ("GET", "/fapi/v1/userTrades"): Route(user_trades, WINDOW | {"symbol", "fromId", "orderId"}, _const(5)),
    ("GET", "/fapi/v1/income"): Route(income, WINDOW | {"symbol", "incomeType", "page"}, _const(30)),
    ("GET", "/fapi/v1/forceOrders"): Route(force_orders, WINDOW | {"symbol", "autoCloseType"},
                                           lambda p: 20 if p.get("symbol") else 50),
    ("GET", "/fapi/v1/leverageBracket"): Route(leverage_bracket, frozenset({"symbol"}), _const(1)),
    ("POST", "/fapi/v1/leverage"): Route(leverage, frozenset({"symbol", "leverage"}), _const(1)),
    ("POST", "/fapi/v1/marginType"): Route(margin_type, frozenset({"symbol", "marginType"}), _const(1)),
    ("GET", "/fapi/v1/positionSide/dual"): Route(get_dual, frozenset(), _const(30)),
    ("POST", "/fapi/v1/positionSide/dual"): Route(post_dual, frozenset({"dualSidePosition"}), _const(1)),
}


async def _dispatch(request: web.Request, route: Route) -> web.Response:
    sim = request.app[SIM]
    side = attach(sim)
    limiter = limiter_of(sim)
    ip = request.remote or "127.0.0.1"
    raw_query = request.raw_path.partition("?")[2]
    body = await request.text() if request.can_read_body else ""
    try:
        limiter.weight.gate(ip)
        params = parse_params(raw_query, body)
        limiter.weight.charge(ip, route.weight(params))
        account, _ = authenticate_signed(sim.accounts, request.headers, raw_query, body, params,
                                         sim.clock.now_ms(), sim.clock.time_scale)
        read = route.params
        if any(k not in read and k not in AUTH_PARAMS for k in params):
            raise errors.unread_params(sum(1 for k in params if k in read or k in AUTH_PARAMS), len(params))
        ctx = Ctx(sim=sim, side=side, params=params, account=str(account.id))
        result = await route.handler(ctx)
        response = result if isinstance(result, web.Response) else _json(result, headers=ctx.headers)
    except errors.BinanceError as exc:
        response = _json(exc.body(), exc.http_status, exc.headers)
    response.headers["X-MBX-USED-WEIGHT-1M"] = str(limiter.weight.used_weight(ip))
    return response


def add_routes(app: web.Application, sim: Any) -> None:
    attach(sim)
    mount(app, ROUTES, _dispatch)
