"""The spot WebSocket API (``/ws-api/v3``): request/response envelope and user data.

Requests are ``{"id","method","params"}``; answers are ``{"id","status":200,"result",
"rateLimits"}`` or ``{"id","status":4xx,"error":{"code","msg"},"rateLimits"}``. Weight is
charged to the same per-IP REQUEST_WEIGHT budget as REST. Methods: ``ping``, ``time``,
``session.logon`` (Ed25519 only), ``session.status``, ``session.logout``,
``session.subscriptions``, ``userDataStream.subscribe.signature`` (any key type; the
signature covers the other params sorted by name and joined as a query string),
``userDataStream.subscribe`` (after logon), ``userDataStream.unsubscribe``, and
``order.place`` / ``order.cancel`` / ``order.status`` sharing the spot engine, and the
market-data and account methods ``ticker.24hr``, ``klines``, ``trades.recent`` (public) and
``account.rateLimits.orders``, ``account.commission`` (signed), answered by the same
functions as their REST endpoints (``rest_market``), and the REST twins ``account.status``,
``openOrders.status``, ``openOrders.cancelAll``, ``allOrders``, ``myTrades``, ``exchangeInfo``,
``depth``, ``ticker.book`` and ``avgPrice``, answered by their REST routes' own handlers with
the same parameter checks and weights (``REST_TWINS``).

User events arrive as ``{"subscriptionId": N, "event": {...}}``; ending a subscription
sends ``eventStreamTerminated``. One subscription per account per connection. The
connection follows the spot stream rules (20 s pings, maximum age, ``serverShutdown``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from executor.sim import auth, errors, rest_market, rest_spot
from executor.sim.accounts import Account, ApiKey
from executor.sim.appkeys import SIM
from executor.sim.engine import (
    cancel_response,
    order_response,
    parse_int,
    parse_new_order,
    parse_symbol,
    query_response,
    reached_engine,
)
from executor.sim.faults import SPOT_RULES, ServerSocket

WEIGHTS = {"ping": 1, "time": 1, "session.logon": 2, "session.status": 2, "session.logout": 2,
           "session.subscriptions": 2, "userDataStream.subscribe": 2,
           "userDataStream.subscribe.signature": 2, "userDataStream.unsubscribe": 2,
           "order.place": 0, "order.cancel": 0, "order.status": 4,
           "ticker.24hr": 2, "klines": 2, "trades.recent": 25, "account.rateLimits.orders": 40,
           "account.commission": 20}
# The WS API twins of REST endpoints, answered by the same handlers (``rest_spot.ROUTES``):
# method -> (REST route, signed). Their weights are the REST routes' (by the same params).
REST_TWINS: dict[str, tuple[str, str]] = {
    "account.status": ("GET", "/api/v3/account"),
    "openOrders.status": ("GET", "/api/v3/openOrders"),
    "openOrders.cancelAll": ("DELETE", "/api/v3/openOrders"),
    "allOrders": ("GET", "/api/v3/allOrders"),
    "myTrades": ("GET", "/api/v3/myTrades"),
    "exchangeInfo": ("GET", "/api/v3/exchangeInfo"),
    "depth": ("GET", "/api/v3/depth"),
    "ticker.book": ("GET", "/api/v3/ticker/bookTicker"),
    "avgPrice": ("GET", "/api/v3/avgPrice"),
}
WEIGHTS.update(dict.fromkeys(REST_TWINS, 1))  # replaced per request by the REST route's weight
_REST_ROUTES = {**rest_spot.ROUTES, **rest_market.ROUTES}


def _twin_weight(method: str) -> Callable[[dict[str, Any]], int]:
    def weigh(params: dict[str, Any]) -> int:
        route = _REST_ROUTES.get(REST_TWINS[method])
        return route.weight(WsApiSession.rest_params(params)) if route is not None else 1
    return weigh


# Methods whose weight depends on their parameters (ticker.24hr: by the number of symbols).
PARAM_WEIGHTS: dict[str, Callable[[dict[str, Any]], int]] = {
    "ticker.24hr": rest_market.ticker_24hr_weight,
    **{m: _twin_weight(m) for m in REST_TWINS},
}
# Since 2026-04-02 a successful placement or cancel weighs 0; a failed one its documented 1.
FAILURE_WEIGHTS = {"order.place": 1, "order.cancel": 1}
CONNECT_WEIGHT = 2

NOT_AUTHORIZED = errors.BinanceError(-1002, "You are not authorized to execute this request.", 401)
SUBSCRIPTION_ACTIVE = errors.BinanceError(-2035, "User Data Stream subscription already active.")
SUBSCRIPTION_INACTIVE = errors.BinanceError(-2036, "User Data Stream subscription not active.")
UNKNOWN_METHOD = errors.BinanceError(-1102, "Unknown method.")
# errors.md -1135 INVALID_JSON; the params text is what Binance's WS API answers (binance-us-api-docs #126).
INVALID_JSON = errors.BinanceError(-1135, "Invalid JSON Request")
PARAMS_NOT_OBJECT = errors.BinanceError(-1135, "Invalid 'params' in JSON request; expected an object.")


def signature_payloads(params: dict[str, Any]) -> list[str]:
    """What a WS API signature may cover: every param but ``signature``, sorted by name,
    as ``k=v&...`` — percent-encoded (python-binance) or raw (Binance's own examples)."""
    items = sorted((k, str(v)) for k, v in params.items() if k != "signature")
    encoded = urlencode(items)
    raw = "&".join(f"{k}={v}" for k, v in items)
    return [encoded] if encoded == raw else [encoded, raw]


@dataclass
class _Subscription:
    account_id: str
    via_logon: bool
    unsubscribe: Callable[[], None]


class WsApiSession:
    """One WS API connection: its logon state and subscriptions."""

    def __init__(self, sim: Any, sock: ServerSocket, ip: str) -> None:
        self.sim = sim
        self.sock = sock
        self.ip = ip
        self.connected_since = sim.clock.now_ms()
        self.logon: ApiKey | None = None
        self.authorized_since: int | None = None
        self.subs: dict[int, _Subscription] = {}
        self._next_sub = 0
        self._order_account: str | None = None     # set by order.place for the ORDERS rateLimits

    # -- envelope -----------------------------------------------------------------------------

    def _rate_limits(self, order_account: str | None = None) -> list[dict[str, Any]]:
        limiter = self.sim.ratelimiter
        out = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                "limit": limiter.limits.weight_per_minute, "count": limiter.used_weight(self.ip)}]
        if order_account is not None:
            # Order placements also report the account's ORDERS counters (web-socket-api.md).
            n10, nday = limiter.order_counts(order_account)
            out[:0] = [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                        "limit": limiter.limits.orders_per_10s, "count": n10},
                       {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1,
                        "limit": limiter.limits.orders_per_day, "count": nday}]
        return out

    async def handle(self, text: str) -> None:
        req_id: Any = None
        self._order_account = None
        try:
            request = json.loads(text)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            self.sock.enqueue({"id": None, "status": 400, "error": INVALID_JSON.body()})
            return
        req_id = request.get("id")
        method = request.get("method")
        params = request.get("params", {})
        if not isinstance(params, dict):
            self.sock.enqueue({"id": req_id, "status": 400, "error": PARAMS_NOT_OBJECT.body()})
            return
        if not isinstance(method, str):
            missing = errors.mandatory_missing("method")
            self.sock.enqueue({"id": req_id, "status": 400, "error": missing.body()})
            return
        try:
            limiter = self.sim.ratelimiter
            limiter.gate(self.ip)
            weigh = PARAM_WEIGHTS.get(method)
            limiter.charge(self.ip, weigh(params) if weigh is not None else WEIGHTS.get(method, 1))
            if method not in WEIGHTS:
                raise UNKNOWN_METHOD
            handler = getattr(self, "m_" + method.replace(".", "_"))
            answer = handler(params)
            result, after = (await answer) if inspect.isawaitable(answer) else answer
        except errors.BinanceError as exc:
            if method in FAILURE_WEIGHTS:
                with contextlib.suppress(errors.BinanceError):
                    limiter.charge(self.ip, FAILURE_WEIGHTS[method])
            body: dict[str, Any] = {"id": req_id, "status": exc.http_status, "error": exc.body(),
                                    "rateLimits": self._rate_limits(self._order_account)}
            self.sock.enqueue(body)
            if exc.http_status == 418:
                # CHANGELOG 2023-03-13: a banned IP is disconnected from the WS API (after the reply).
                await self._drain()
                self.sock.close_reason = "banned"
                await self.sock.close(1008, b"IP banned")
            return
        self.sock.enqueue({"id": req_id, "status": 200, "result": result,
                           "rateLimits": self._rate_limits(self._order_account)})
        for message in after:
            self.sock.enqueue(message)

    async def _drain(self, limit_s: float = 1.0) -> None:
        """Let replies already queued go out before a close."""
        waited = 0.0
        while self.sock.queued and waited < limit_s and not self.sock.closed:
            await asyncio.sleep(0.005)
            waited += 0.005

    # -- authentication -----------------------------------------------------------------------

    def _authenticate(self, params: dict[str, Any]) -> tuple[Account, ApiKey]:
        key = params.get("apiKey")
        if not key:
            raise errors.mandatory_missing("apiKey")
        found = self.sim.accounts.by_api_key(str(key))
        if found is None:
            raise errors.rejected_key()
        account, api = found
        auth.check_timestamp({k: str(v) for k, v in params.items()}, self.sim.clock.now_ms(),
                             self.sim.clock.time_scale)
        signature = params.get("signature")
        if not signature:
            raise errors.mandatory_missing("signature")
        if not any(auth.verify_signature(api, p, str(signature)) for p in signature_payloads(params)):
            raise errors.invalid_signature()
        return account, api

    def _signed_account(self, params: dict[str, Any]) -> Account:
        """A request authenticated by its own signature, or by the session's logon."""
        if "signature" in params or self.logon is None:
            return self._authenticate(params)[0]
        found = self.sim.accounts.by_api_key(self.logon.key)
        assert found is not None
        return found[0]

    # -- user data ------------------------------------------------------------------------------

    def _subscribe(self, account_id: str, via_logon: bool) -> dict[str, Any]:
        if any(s.account_id == account_id for s in self.subs.values()):
            raise SUBSCRIPTION_ACTIVE
        sub_id = self._next_sub
        self._next_sub += 1
        sock = self.sock

        def deliver(event: dict[str, Any]) -> None:
            if sub_id in self.subs and not sock.stalled:
                sock.enqueue({"subscriptionId": sub_id, "event": event})

        self.subs[sub_id] = _Subscription(account_id, via_logon, self.sim.bus.subscribe(account_id, "spot",
                                                                                            deliver))
        self.sock.set_account(account_id)
        return {"subscriptionId": sub_id}

    def _terminate(self, sub_ids: list[int]) -> list[dict[str, Any]]:
        out = []
        for sub_id in sub_ids:
            sub = self.subs.pop(sub_id)
            sub.unsubscribe()
            out.append({"subscriptionId": sub_id,
                        "event": {"e": "eventStreamTerminated", "E": self.sim.clock.now_ms()}})
        return out

    def close(self) -> None:
        for sub in self.subs.values():
            sub.unsubscribe()
        self.subs.clear()

    # -- methods: each returns (result, messages to send after the response) -------------------

    def m_ping(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        return {}, []

    def m_time(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        return {"serverTime": self.sim.clock.now_ms()}, []

    def _status(self) -> dict[str, Any]:
        return {"apiKey": self.logon.key if self.logon else None, "authorizedSince": self.authorized_since,
                "connectedSince": self.connected_since, "returnRateLimits": True,
                "serverTime": self.sim.clock.now_ms(), "userDataStream": bool(self.subs)}

    def m_session_logon(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        _, api = self._authenticate(params)
        if api.kind != "Ed25519":
            raise NOT_AUTHORIZED
        self.logon, self.authorized_since = api, self.sim.clock.now_ms()
        return self._status(), []

    def m_session_status(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        return self._status(), []

    def m_session_logout(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        # Only subscriptions started through the logon end with it.
        ended = self._terminate([i for i, s in self.subs.items() if s.via_logon])
        self.logon, self.authorized_since = None, None
        return self._status(), ended

    def m_session_subscriptions(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        return [{"subscriptionId": i} for i in self.subs], []

    def m_userDataStream_subscribe_signature(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        account, _ = self._authenticate(params)
        return self._subscribe(str(account.id), via_logon=False), []

    def m_userDataStream_subscribe(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        if self.logon is None:
            raise NOT_AUTHORIZED
        return self._subscribe(self.logon.account_id, via_logon=True), []

    def m_userDataStream_unsubscribe(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        if "subscriptionId" in params:
            try:
                sub_id = int(params["subscriptionId"])
            except (TypeError, ValueError):
                raise errors.invalid_param("subscriptionId") from None
            if sub_id not in self.subs:
                raise SUBSCRIPTION_INACTIVE
            return {}, self._terminate([sub_id])
        if not self.subs:
            raise SUBSCRIPTION_INACTIVE
        return {}, self._terminate(list(self.subs))

    # -- orders (same engine as REST) ---------------------------------------------------------

    def _order_params(self, params: dict[str, Any]) -> dict[str, str]:
        return {k: str(v) for k, v in params.items()
                if k not in ("apiKey", "signature", "timestamp", "recvWindow")}

    def m_order_place(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        account = self._signed_account(params)
        self._order_account = str(account.id)
        req = parse_new_order(self._order_params(params), self.sim.engine.specs)
        self.sim.ratelimiter.check_order(str(account.id))
        try:
            order, transact = self.sim.engine.place(account, req)
        except errors.BinanceError as exc:
            if reached_engine(exc):
                self.sim.ratelimiter.count_order(str(account.id))
            raise
        self.sim.ratelimiter.count_order(str(account.id))
        return order_response(order, req.resp_type, transact), []

    def _order_ids(self, params: dict[str, str]) -> tuple[str, int | None, str | None]:
        spec = parse_symbol(params, self.sim.engine.specs)
        assert spec is not None
        order_id = parse_int(params, "orderId")
        client_id = params.get("origClientOrderId")
        if order_id is None and not client_id:
            raise errors.one_of_missing("orderId", "origClientOrderId")
        return spec.symbol, order_id, client_id

    def m_order_cancel(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        account = self._signed_account(params)
        p = self._order_params(params)
        symbol, order_id, client_id = self._order_ids(p)
        order, transact = self.sim.engine.cancel(account, symbol, order_id, client_id,
                                                 p.get("newClientOrderId"))
        return cancel_response(order, transact), []

    def m_order_status(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        account = self._signed_account(params)
        symbol, order_id, client_id = self._order_ids(self._order_params(params))
        order = self.sim.engine.find_order(str(account.id), symbol, order_id, client_id)
        if order is None:
            raise errors.no_such_order()
        if order_id is not None and client_id and order.client_order_id != client_id:
            raise errors.order_id_mismatch()      # as REST GET /api/v3/order (CHANGELOG 2025-04-08)
        return query_response(order), []


    # -- market data and account (same answers as REST, rest_market) --------------------------

    async def _rest_twin(self, method: str, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        """Answer ``method`` with its REST twin's handler, parameters checked the same way."""
        route = _REST_ROUTES[REST_TWINS[method]]
        rest = self.rest_params(params)
        ctx = rest_spot.Ctx(sim=self.sim, request=self.sock.request, params=rest)
        if route.signed:
            ctx.account = self._signed_account(params)
            self._order_account = str(ctx.account.id)
        read = route.params
        if any(k not in read for k in rest):
            raise errors.unread_params(sum(1 for k in rest if k in read), len(rest))
        return await route.handler(ctx), []

    async def m_account_status(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        return await self._rest_twin("account.status", params)

    async def m_openOrders_status(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        return await self._rest_twin("openOrders.status", params)

    async def m_openOrders_cancelAll(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        return await self._rest_twin("openOrders.cancelAll", params)

    async def m_allOrders(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        return await self._rest_twin("allOrders", params)

    async def m_myTrades(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        return await self._rest_twin("myTrades", params)

    async def m_exchangeInfo(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        return await self._rest_twin("exchangeInfo", params)

    async def m_depth(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        return await self._rest_twin("depth", params)

    async def m_ticker_book(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        return await self._rest_twin("ticker.book", params)

    async def m_avgPrice(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        return await self._rest_twin("avgPrice", params)

    @staticmethod
    def rest_params(params: dict[str, Any]) -> dict[str, str]:
        return WsApiSession._market_params(params)

    @staticmethod
    def _market_params(params: dict[str, Any]) -> dict[str, str]:
        """WS API params as REST strings (``symbols`` is a JSON array on the WS API)."""
        out: dict[str, str] = {}
        for key, value in params.items():
            if key in ("apiKey", "signature", "timestamp", "recvWindow"):
                continue
            if isinstance(value, list):
                out[key] = json.dumps(value, separators=(",", ":"))
            elif isinstance(value, bool):
                out[key] = "true" if value else "false"
            else:
                out[key] = str(value)
        return out

    def m_ticker_24hr(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        return rest_market.ticker_24hr(self.sim, self._market_params(params)), []

    def m_klines(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        return rest_market.klines(self.sim, self._market_params(params)), []

    def m_trades_recent(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        return rest_market.recent_trades(self.sim, self._market_params(params)), []

    def m_account_rateLimits_orders(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        account = self._signed_account(params)
        return rest_market.order_rate_limits(self.sim, account), []

    def m_account_commission(self, params: dict[str, Any]) -> tuple[Any, list[Any]]:
        account = self._signed_account(params)
        return rest_market.commission(self.sim, account, self._market_params(params)), []


def _ws_api_shutdown(now_ms: int) -> dict[str, Any]:
    return {"event": {"e": "serverShutdown", "E": now_ms}}


async def ws_api(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIM]
    ip = request.remote or "127.0.0.1"
    try:
        sim.ratelimiter.gate(ip)
        sim.ratelimiter.charge(ip, CONNECT_WEIGHT)
    except errors.BinanceError as exc:
        return web.json_response(exc.body(), status=exc.http_status, headers=exc.headers)
    rules = replace(SPOT_RULES, max_age_s=float(getattr(sim, "max_connection_age_s", SPOT_RULES.max_age_s)))
    sock = ServerSocket(request, "ws_api", sim.clock, sim.faults, rules=rules,
                        shutdown_frame=_ws_api_shutdown, send_inline=sim.send_inline)
    await sock.prepare()
    session = WsApiSession(sim, sock, ip)
    try:
        await sock.run(session.handle)
    finally:
        session.close()
    return sock.ws


def add_routes(app: web.Application, sim: Any) -> None:
    app.router.add_get("/ws-api/v3", ws_api)

    async def close_sockets(app: web.Application) -> None:
        await sim.faults.connections.drop("ws_api")

    app.on_shutdown.append(close_sockets)
