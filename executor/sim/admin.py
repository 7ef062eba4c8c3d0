"""Admin routes under ``/sim/`` on the spot REST host: ground truth and fault switches for
use from outside the process (``run.py --exchange URL``). Binance has no ``/sim`` path,
so nothing here can be mistaken for exchange behaviour. JSON in, JSON out; tests in the
same process use the ``SimExchange`` object directly instead.

Routes (``account`` defaults to "default"):

- ``GET  /sim/urls?account=`` — every listener's URL and the account's local HMAC test key
  (for ``run.py --exchange URL``)
- ``GET  /sim/state`` — symbols, books, clock, accounts and open-connection counts
- ``GET  /sim/orders?account=&symbol=`` / ``GET /sim/trades?account=&symbol=``
- ``GET  /sim/balances?account=``
- ``POST /sim/deposit`` / ``POST /sim/withdraw`` ``{"account","asset","amount"}``
  (→ balanceUpdate + outboundAccountPosition)
- ``POST /sim/market`` ``{"symbol","price"}`` or ``{"symbol","bid","ask","bidQty","askQty"}``;
  ``{"unfreeze": true}`` resumes the random walk
- ``POST /sim/clock`` ``{"advance_ms"}`` and/or ``{"time_scale"}``, ``{"skew_ms"}``
- ``POST /sim/faults`` ``{"order_failures": [{"http_status","code","placed"}], "hold":
  {"count","seconds","path"}, "burst_429": n, "drop": kind|"all", "shutdown": kind|"all",
  "reset": true}``
- ``POST /sim/limits`` ``{"weight_per_minute","orders_per_10s","orders_per_day"}``
- ``POST /sim/symbol-status`` ``{"symbol","status"}`` (TRADING, BREAK, HALT, END_OF_DAY,
  CANCEL_ONLY; anything but TRADING refuses new orders, exchangeInfo shows it)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from executor.sim import errors
from executor.sim.accounts import DEFAULT_ID, Account
from executor.sim.appkeys import SERVER
from executor.sim.engine import query_response, trade_row
from executor.sim.exchange import SimExchange
from executor.sim.faults import OrderFailure
from executor.sim.market import fmt8


class AdminError(Exception):
    pass


def _ok(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, separators=(",", ":")), status=status,
                        content_type="application/json")


def _account(sim: SimExchange, account_id: str | None) -> Account:
    acct = sim.accounts.find(account_id or DEFAULT_ID)
    if acct is None:
        raise AdminError(f"unknown account {account_id!r}")
    return acct


def _dec(body: dict[str, Any], key: str) -> Decimal:
    if key not in body:
        raise AdminError(f"missing '{key}'")
    try:
        value = Decimal(str(body[key]))
    except InvalidOperation:
        raise AdminError(f"'{key}' is not a decimal: {body[key]!r}") from None
    if not value.is_finite():
        raise AdminError(f"'{key}' must be finite")
    return value


def balances_of(acct: Account) -> dict[str, dict[str, str]]:
    return {a: {"free": fmt8(b.free), "locked": fmt8(b.locked)} for a, b in sorted(acct.balances.items())}


def add_routes(app: web.Application, sim: SimExchange) -> None:
    Handler = Callable[[web.Request], Awaitable[Any]]

    def route(fn: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def wrapped(request: web.Request) -> web.Response:
            try:
                return _ok(await fn(request))
            except AdminError as exc:
                return _ok({"error": str(exc)}, 400)
            except errors.BinanceError as exc:
                return _ok({"error": exc.msg, "code": exc.code}, 400)
            except (ValueError, KeyError) as exc:
                return _ok({"error": str(exc)}, 400)
        return wrapped

    async def body_of(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            data = await request.json()
        except ValueError:
            raise AdminError("body must be a JSON object") from None
        if not isinstance(data, dict):
            raise AdminError("body must be a JSON object")
        return data

    def symbols(request: web.Request) -> list[str]:
        sym = request.query.get("symbol")
        if sym and sym not in sim.specs:
            raise AdminError(f"unknown symbol {sym!r}")
        return [sym] if sym else list(sim.specs)

    async def state(request: web.Request) -> Any:
        return {
            "now_ms": sim.clock.now_ms(), "time_scale": sim.clock.time_scale, "seed": sim.seed,
            "symbols": list(sim.specs),
            "books": {s: sim.market.book(s).ticker() for s in sim.specs},
            "accounts": [a.id for a in sim.accounts],
            "connections": {k: sim.faults.connections.count(k)
                            for k in ("market", "ws_api", "futures_market", "private")},
        }

    async def orders(request: web.Request) -> Any:
        acct = _account(sim, request.query.get("account"))
        return [query_response(o) for s in symbols(request) for o in sim.engine.orders[s]
                if o.account_id == acct.id]

    async def trades(request: web.Request) -> Any:
        acct = _account(sim, request.query.get("account"))
        return [trade_row(t) for s in symbols(request) for t in sim.engine.trades[s]
                if t.account_id == acct.id]

    async def balances(request: web.Request) -> Any:
        return balances_of(_account(sim, request.query.get("account")))

    async def deposit(request: web.Request, sign: int) -> Any:
        body = await body_of(request)
        acct = _account(sim, body.get("account"))
        amount = _dec(body, "amount")
        if amount <= 0:
            raise AdminError("'amount' must be positive")
        asset = str(body.get("asset") or "")
        if not asset.isalnum():
            raise AdminError("'asset' must be an asset name")
        sim.engine.adjust_balance(acct, asset, amount * sign)
        return balances_of(acct)

    async def market(request: web.Request) -> Any:
        body = await body_of(request)
        if body.get("unfreeze"):
            sim.market.unfreeze()
            return {"frozen": False}
        sym = body.get("symbol")
        if sym not in sim.specs:
            raise AdminError(f"unknown symbol {sym!r}")
        if "price" in body:
            book = sim.market.set_price(sym, _dec(body, "price"))
        else:
            kw = {k: _dec(body, src) for k, src in (("bid", "bid"), ("ask", "ask"), ("bid_qty", "bidQty"),
                                                     ("ask_qty", "askQty")) if src in body}
            book = sim.market.set_book(sym, **kw)
        return book.ticker()

    async def clock(request: web.Request) -> Any:
        body = await body_of(request)
        if "time_scale" in body:
            sim.clock.set_time_scale(float(_dec(body, "time_scale")))
        if "advance_ms" in body:
            sim.clock.advance(int(_dec(body, "advance_ms")))
        if "skew_ms" in body:
            sim.clock.skew_ms = int(_dec(body, "skew_ms"))
        return {"now_ms": sim.clock.now_ms(), "time_scale": sim.clock.time_scale}

    async def faults(request: web.Request) -> Any:
        body = await body_of(request)
        f = sim.faults
        out: dict[str, Any] = {}
        if body.get("reset"):
            if hasattr(f, "reset"):
                f.reset()
            else:
                f.order_failures.clear()
                f.hold_responses, f.rate_limit_burst = 0, 0
        for spec in body.get("order_failures", []):
            code = spec.get("code")
            f.order_failures.append(OrderFailure(http_status=int(spec.get("http_status", 503)),
                                                 code=int(code) if code is not None else None,
                                                 placed=bool(spec.get("placed", True))))
        if "hold" in body:
            f.hold(int(body["hold"].get("count", 1)), float(body["hold"].get("seconds", 0)),
                   path=str(body["hold"].get("path", "")))
        if "burst_429" in body:
            f.rate_limit_burst = int(body["burst_429"])
        if "drop" in body:
            kind = body["drop"]
            out["dropped"] = await f.connections.drop(None if kind == "all" else kind)
        if "shutdown" in body:
            kind = body["shutdown"]
            out["shutdown"] = await f.connections.shutdown(None if kind == "all" else kind)
        out.update({"order_failures": len(f.order_failures), "hold_responses": f.hold_responses,
                    "rate_limit_burst": f.rate_limit_burst})
        return out

    async def limits(request: web.Request) -> Any:
        body = await body_of(request)
        lim = sim.ratelimiter.limits
        for key in ("weight_per_minute", "orders_per_10s", "orders_per_day"):
            if key in body:
                setattr(lim, key, int(body[key]))
        return {"weight_per_minute": lim.weight_per_minute, "orders_per_10s": lim.orders_per_10s,
                "orders_per_day": lim.orders_per_day}

    async def symbol_status(request: web.Request) -> Any:
        body = await body_of(request)
        spec = sim.set_symbol_status(str(body.get("symbol")), str(body.get("status")))
        return {"symbol": spec.symbol, "status": spec.status}

    async def dep(request: web.Request) -> Any:
        return await deposit(request, 1)

    async def wdr(request: web.Request) -> Any:
        return await deposit(request, -1)

    async def urls(request: web.Request) -> Any:
        # For `run.py --exchange URL`: every listener's URL and the account's local test key.
        server = request.app.get(SERVER)
        bound = getattr(server, "urls", None)
        if bound is None:
            raise AdminError("the exchange's listeners are not all up yet")
        ep = bound.endpoints()
        acct = _account(sim, request.query.get("account"))
        key = sim.accounts.key_of(acct.id, "HMAC")
        return {"spot_rest": ep.spot_rest, "spot_stream": ep.spot_stream, "spot_ws_api": ep.spot_ws_api,
                "futures_rest": ep.futures_rest, "futures_stream": ep.futures_stream,
                "sapi_rest": ep.sapi_rest, "admin": bound.admin, "account": acct.id,
                "api_key": key.key, "api_secret": key.secret}

    app.router.add_get("/sim/urls", route(urls))
    app.router.add_get("/sim/state", route(state))
    app.router.add_get("/sim/orders", route(orders))
    app.router.add_get("/sim/trades", route(trades))
    app.router.add_get("/sim/balances", route(balances))
    app.router.add_post("/sim/deposit", route(dep))
    app.router.add_post("/sim/withdraw", route(wdr))
    app.router.add_post("/sim/market", route(market))
    app.router.add_post("/sim/clock", route(clock))
    app.router.add_post("/sim/faults", route(faults))
    app.router.add_post("/sim/limits", route(limits))
    app.router.add_post("/sim/symbol-status", route(symbol_status))
