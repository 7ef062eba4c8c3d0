"""The REST gateway: the only way the bot talks REST to Binance spot.

Every call passes, in order: the global ``BanGate`` (closed after any 429/418 until its
Retry-After), the ``WeightBudget`` (paces before a limit is near, fed by the exchange's
usage headers), and an asyncio-throttle request-rate cap. Failures are classified
(``outcome.classify``): order placement and cancel return ``Accepted``/``Rejected``/
``Unknown``/``RateLimited`` without raising; reads return data or raise ``GatewayError``
carrying the classified failure. A -1021 (timestamp outside recvWindow) re-syncs the
server clock and is retried exactly once: it is rejected before matching, so resending
cannot duplicate an order. Nothing else is ever retried here; in particular an order with
an ``Unknown`` outcome is resolved by the caller with ``get_order`` on its client id.

Request parameters are never logged (they carry the signature once signed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import orjson
from asyncio_throttle import Throttler

from executor.core.reports import VenueError
from executor.exchange.binance_private import public_get
from executor.exchange.client import (
    NotSent,
    capture_response,
    holds_requests,
    leave_send_group,
    release_after,
)
from executor.exchange.clock import ServerClock
from executor.exchange.outcome import (
    INVALID_TIMESTAMP,
    NO_SUCH_ORDER,
    Accepted,
    Failure,
    Outcome,
    RateLimited,
    Rejected,
    Unknown,
    classify,
)
from executor.exchange.ratelimit import BanGate, Cost, Sleep, WeightBudget

log = logging.getLogger(__name__)

# Spot REST weights (reference.md §6). A successful placement or cancel weighs 0 since
# 2026-04-02 but a failed one costs the documented 1, so 1 is reserved and the
# X-MBX-USED-WEIGHT header settles the truth.
COSTS: dict[str, Cost] = {
    "order.place": Cost(weight=1, orders=1),
    "order.cancel": Cost(weight=1),
    "order.get": Cost(weight=4),
    "openOrders.symbol": Cost(weight=6),
    "openOrders.all": Cost(weight=80),
    "myTrades": Cost(weight=20),
    "myTrades.order": Cost(weight=5),  # myTrades with orderId
    "allOrders": Cost(weight=20),
    "account": Cost(weight=20),
    "account.commission": Cost(weight=20),
    "exchangeInfo": Cost(weight=20),
    "time": Cost(weight=1),
}

FUTURES_ACCOUNT_COST = Cost(weight=5)  # GET /fapi/v2/account

MAX_TRADES_LIMIT = 1000
_REQUIRED_ORDER_PARAMS = ("symbol", "side", "type", "newClientOrderId")


class GatewayError(VenueError):
    """A read request failed; ``outcome`` says how (Rejected, Unknown or RateLimited)."""

    def __init__(self, endpoint: str, outcome: Failure) -> None:
        self.endpoint = endpoint
        self.outcome = outcome
        super().__init__(f"{endpoint}: {outcome}")


def _wire_value(key: str, value: Any) -> Any:
    """Money goes out as plain decimal strings: never floats, never exponent notation."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        raise TypeError(f"order parameter {key!r} is a float; use Decimal or str")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"order parameter {key!r} is not finite")
        return format(value, "f")
    return value


def order_wire_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and normalise new-order parameters (a clear error for bad input)."""
    missing = [k for k in _REQUIRED_ORDER_PARAMS if not params.get(k)]
    if missing:
        raise ValueError(f"order parameters missing {', '.join(missing)}")
    for forbidden in ("signature", "timestamp"):
        if forbidden in params:
            raise ValueError(f"order parameters must not carry {forbidden!r}; the client signs")
    return {k: _wire_value(k, v) for k, v in params.items() if v is not None}


class RestGateway:
    """Rate-limited, outcome-classifying wrapper around one python-binance AsyncClient.

    ``local_ms`` (the clock python-binance signs with) and ``sleep``, or whole ``budget`` /
    ``gate`` / ``clock`` objects, are injectable so tests drive time themselves.
    """

    def __init__(self, client: Any, *, max_requests_per_s: int = 50,
                 budget: WeightBudget | None = None, gate: BanGate | None = None,
                 clock: ServerClock | None = None, sleep: Sleep = asyncio.sleep,
                 local_ms: Callable[[], float] | None = None) -> None:
        if max_requests_per_s < 1:
            raise ValueError("max_requests_per_s must be at least 1")
        self._client = client
        self._sleep = sleep
        self.clock = clock or ServerClock(
            client, self._fetch_server_ms, **({"local_ms": local_ms} if local_ms else {}))
        self.budget = budget or WeightBudget(now=self.clock.server_now_s)
        self.gate = gate or BanGate(sleep=sleep)
        self.max_requests_per_s = max_requests_per_s  # this gateway's own cap (a futures one sharing it)
        self._throttler = Throttler(rate_limit=max_requests_per_s, period=1.0)
        self._probe = asyncio.Lock()  # one request at a time while the gate is recovering
        self.sent = 0
        self.skew_retries = 0

    @property
    def client(self) -> Any:
        """The python-binance client this gateway sends through (for the WS API signer, the
        live preflight and a futures stream sharing the key)."""
        return self._client

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> int:
        """Sync the server clock (before anything is signed); returns the offset in ms."""
        return await self.clock.sync()

    async def sync_clock(self) -> int:
        """Periodic re-sync, for the scheduler."""
        return await self.clock.sync()

    async def close(self) -> None:
        await self._client.close_connection()

    # ------------------------------------------------------------------ core

    async def _admit(self, cost: Cost) -> None:
        while True:
            await self.gate.wait()
            delay = self.budget.delay(cost)
            if delay <= 0:
                if self.gate.is_open:
                    return
                continue
            log.log(logging.INFO if delay >= 1 else logging.DEBUG, "weight budget: pausing %.3f s", delay)
            await self._sleep(delay)

    def _fallback_headers(self) -> Mapping[str, str] | None:
        # Only for clients not built by make_client (no per-request tap): best effort.
        return getattr(getattr(self._client, "response", None), "headers", None)

    async def _admitted(self, cost: Cost) -> None:
        """Wait for the gate, the weight budget and the rate cap (after the gate, so senders
        released together are still spaced)."""
        while True:
            await self._admit(cost)
            await self._throttler.acquire()
            if self.gate.is_open:
                return

    async def _call(self, name: str, cost: Cost, call: Callable[[], Awaitable[Any]],
                    hold: Awaitable[object] | None = None) -> Outcome:
        """One request on the wire: reserve its cost, send, settle the budget from the answer.

        ``hold``: the request is built and signed now but written only once ``hold`` has
        completed (``NotSent``, with nothing written, if it fails); see ``place_order``."""
        self.budget.reserve(cost)
        if hold is not None and not holds_requests(self._client):
            # A client without the holding middleware: wait here, before anything is built.
            leave_send_group()  # its decision's other requests do not wait for this one
            try:
                await release_after(hold)
            except BaseException:
                self.budget.settle(cost, None)
                raise
            hold = None
        self.sent += 1
        with capture_response(hold) as seen:
            try:
                response = await call()
            except asyncio.CancelledError:
                self.budget.settle(cost, seen.headers if seen.seen else None)
                raise
            except NotSent:
                self.sent -= 1
                self.budget.settle(cost, None)
                raise
            except Exception as exc:
                headers = seen.headers if seen.seen else getattr(
                    getattr(exc, "response", None), "headers", None)
                self.budget.settle(cost, headers)
                outcome = classify(exc, now_ms=int(self.clock.server_now_ms()))
                if outcome is None:
                    raise
                if isinstance(outcome, RateLimited):
                    self.gate.trip(outcome.retry_after_s, banned=outcome.banned, source=name)
                return outcome
            self.budget.settle(cost, seen.headers if seen.seen else self._fallback_headers())
            return Accepted(response)

    async def _send(self, name: str, cost: Cost, call: Callable[[], Awaitable[Any]],
                    what: str = "", hold: Awaitable[object] | None = None) -> Outcome:
        for attempt in (0, 1):
            await self._admitted(cost)
            generation = self.clock.generation
            if self.gate.recovering:
                # The gate has just reopened after a 429/418. Requests queued behind it do
                # not leave together: if the first of a burst met another 429, the rest would
                # arrive inside its Retry-After and earn a 418 ban. One request probes; the
                # others wait for its answer, and leave one after another, each admitted by
                # the weight budget, until one has been answered without a 429.
                async with self._probe:
                    await self._admitted(cost)
                    outcome = await self._call(name, cost, call, hold)
                    if not isinstance(outcome, RateLimited):
                        self.gate.recovered()
            else:
                outcome = await self._call(name, cost, call, hold)
            if isinstance(outcome, Accepted):
                return outcome
            if isinstance(outcome, Rejected) and outcome.code == INVALID_TIMESTAMP and attempt == 0:
                try:
                    await self.clock.resync_after(generation)
                except GatewayError as exc:
                    # Without a fresh offset a retry would fail the same way; the -1021
                    # stands (still a definite no, so the caller may decide again).
                    log.warning("clock re-sync after -1021 failed: %s", exc)
                else:
                    self.skew_retries += 1
                    continue
            level = logging.WARNING if isinstance(outcome, Unknown | RateLimited) else logging.INFO
            log.log(level, "%s%s -> %s", name, f" [{what}]" if what else "", outcome)
            return outcome
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read(self, name: str, cost: Cost, call: Callable[[], Awaitable[Any]],
                    what: str = "") -> Any:
        """A read: repeated after a 429/418 once the gate reopens (a read changes nothing on
        the exchange, so asking again is safe), so a bot started or reconciling during a ban
        waits it out instead of failing. Orders are never repeated (``_send``)."""
        while True:
            outcome = await self._send(name, cost, call, what)
            if isinstance(outcome, Accepted):
                return outcome.response
            if not isinstance(outcome, RateLimited):
                raise GatewayError(name, outcome)
            log.warning("%s: REST %s for %.0f s; waiting it out, then asking again", name,
                        "banned (418)" if outcome.banned else "rate limited (429)", self.gate.remaining())

    # ------------------------------------------------------------------ orders

    async def place_order(self, params: Mapping[str, Any], *,
                          hold: Awaitable[object] | None = None) -> Outcome:
        """POST /api/v3/order. Never raises for the exchange's answer; never resends on
        Unknown. ``params`` must carry our ``newClientOrderId``; prices and quantities
        as Decimal or str.

        ``hold`` (the order's record-before-send): the request is admitted, signed and built
        while it runs, and written only once it has completed; if it fails, nothing is
        written and ``NotSent`` is raised (the only exception that means "certainly not
        sent")."""
        wire = order_wire_params(params)
        what = f"{wire['symbol']} {wire['newClientOrderId']}"
        return await self._send("order.place", COSTS["order.place"],
                                lambda: self._client.create_order(**wire), what, hold)

    async def cancel_order(self, symbol: str, orig_client_id: str, cancel_client_id: str) -> Outcome:
        """DELETE /api/v3/order by our client id, with its own cancel id."""
        if not (symbol and orig_client_id and cancel_client_id):
            raise ValueError("cancel_order needs symbol, orig_client_id and cancel_client_id")
        return await self._send(
            "order.cancel", COSTS["order.cancel"],
            lambda: self._client.cancel_order(symbol=symbol, origClientOrderId=orig_client_id,
                                              newClientOrderId=cancel_client_id),
            f"{symbol} {orig_client_id}")

    async def get_order(self, symbol: str, orig_client_order_id: str) -> dict[str, Any] | None:
        """GET /api/v3/order by client id; None if the exchange does not know it (-2013)."""
        if not (symbol and orig_client_order_id):
            raise ValueError("get_order needs symbol and orig_client_order_id")
        outcome = await self._send(
            "order.get", COSTS["order.get"],
            lambda: self._client.get_order(symbol=symbol, origClientOrderId=orig_client_order_id),
            f"{symbol} {orig_client_order_id}")
        if isinstance(outcome, Accepted):
            return outcome.response
        if isinstance(outcome, Rejected) and outcome.code == NO_SUCH_ORDER:
            return None
        raise GatewayError("order.get", outcome)

    async def get_order_by_id(self, symbol: str, order_id: int) -> dict[str, Any] | None:
        """GET /api/v3/order by the exchange's orderId (a trade names only that); None on
        -2013. A read: repeated after a 429/418 once the gate reopens."""
        try:
            return await self._read("order.get", COSTS["order.get"],
                                    lambda: self._client.get_order(symbol=symbol, orderId=order_id),
                                    f"{symbol} #{order_id}")
        except GatewayError as exc:
            if isinstance(exc.outcome, Rejected) and exc.outcome.code == NO_SUCH_ORDER:
                return None
            raise

    async def order_trades(self, symbol: str, order_id: int) -> list[dict[str, Any]]:
        """Every trade of one order (GET /api/v3/myTrades with orderId, paged by fromId)."""
        out: list[dict[str, Any]] = []
        from_id: int | None = None
        while True:
            params: dict[str, Any] = {"symbol": symbol, "orderId": order_id, "limit": MAX_TRADES_LIMIT}
            if from_id is not None:
                params["fromId"] = from_id
            page = await self._read("myTrades", COSTS["myTrades.order"],
                                    lambda p=params: self._client.get_my_trades(**p), symbol)
            out.extend(page)
            if len(page) < MAX_TRADES_LIMIT:
                return out
            from_id = max(int(r["id"]) for r in page) + 1

    async def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        if symbol:
            return await self._read("openOrders", COSTS["openOrders.symbol"],
                                    lambda: self._client.get_open_orders(symbol=symbol), symbol)
        return await self._read("openOrders", COSTS["openOrders.all"], self._client.get_open_orders)

    async def orders_since(self, symbol: str, since_ms: int, *, now_ms: int,
                           limit: int = MAX_TRADES_LIMIT) -> list[dict[str, Any]]:
        """Every order of ``symbol`` placed at or after ``since_ms`` (GET /api/v3/allOrders,
        whose longest time window is 24 hours; ``list_orders_since``)."""
        if not symbol:
            raise ValueError("orders_since needs a symbol")

        async def page(params: dict[str, Any]) -> list[dict[str, Any]]:
            return await self._read("allOrders", COSTS["allOrders"],
                                    lambda: self._client.get_all_orders(**params), symbol)

        return await list_orders_since(page, symbol, since_ms, now_ms=now_ms, window_ms=86_400_000,
                                       limit=limit)

    # ------------------------------------------------------------------ trades / account

    async def my_trades(self, symbol: str, from_id: int | None = None,
                        limit: int = 500) -> list[dict[str, Any]]:
        """GET /api/v3/myTrades: trades with id >= ``from_id`` (oldest first)."""
        if not symbol:
            raise ValueError("my_trades needs a symbol")
        if not 1 <= limit <= MAX_TRADES_LIMIT:
            raise ValueError(f"limit must be in 1..{MAX_TRADES_LIMIT}, got {limit}")
        params: dict[str, Any] = {"symbol": symbol, "limit": limit}
        if from_id is not None:
            if from_id < 0:
                raise ValueError("from_id must be >= 0")
            params["fromId"] = from_id
        return await self._read("myTrades", COSTS["myTrades"],
                                lambda: self._client.get_my_trades(**params), symbol)

    async def trades_since(self, symbol: str, from_id: int, *, page_size: int = MAX_TRADES_LIMIT,
                           max_pages: int | None = None) -> list[dict[str, Any]]:
        """Every trade of ``symbol`` with id >= ``from_id``, paging through myTrades.

        Each page passes the weight budget like any request, so a long gap fill slows
        down rather than tripping the limit. Stops at a short page or after ``max_pages``.
        """
        out: list[dict[str, Any]] = []
        seen: set[int] = set()
        next_id = from_id
        pages = 0
        while max_pages is None or pages < max_pages:
            page = await self.my_trades(symbol, next_id, page_size)
            pages += 1
            for row in page:
                trade_id = int(row["id"])
                if trade_id >= from_id and trade_id not in seen:
                    seen.add(trade_id)
                    out.append(row)
            if len(page) < page_size:
                break
            next_id = max(int(row["id"]) for row in page) + 1
        out.sort(key=lambda row: int(row["id"]))
        return out

    async def account(self) -> dict[str, Any]:
        return await self._read("account", COSTS["account"], self._client.get_account)

    async def futures_account(self, client: Any | None = None) -> dict[str, Any]:
        """GET /fapi/v2/account, through this gateway's gates (ban, weight budget, rate cap).

        ``client``: the futures account's own python-binance client where it has its own
        key (testnet/demo); it is never clock-synced itself, and Binance's spot and futures
        servers keep the same time, so this gateway's measured offset signs for it too."""
        if client is None:
            client = self._client
        else:
            client.timestamp_offset = self.clock.offset_ms
        return await self._read("futures.account", FUTURES_ACCOUNT_COST, lambda: client.futures_account(),
                                "futures")

    async def commission(self, symbol: str) -> dict[str, Any]:
        """GET /api/v3/account/commission: the account's commission rates on ``symbol``."""
        return await self._read("account.commission", COSTS["account.commission"],
                                lambda: self._client.v3_get_account_commission(symbol=symbol))

    async def exchange_info(self, symbols: Iterable[str] | None = None) -> dict[str, Any]:
        """GET /api/v3/exchangeInfo (optionally for some symbols); adopts its rateLimits."""
        names = [s.upper() for s in symbols] if symbols is not None else []
        if not names:
            call: Callable[[], Awaitable[Any]] = self._client.get_exchange_info
        elif len(names) == 1:
            def call() -> Awaitable[Any]:
                return public_get(self._client, "exchangeInfo", {"symbol": names[0]})
        else:
            # python-binance leaves non-"symbol" GET values unencoded; encode the JSON list.
            encoded = quote(orjson.dumps(names).decode(), safe="")

            def call() -> Awaitable[Any]:
                return public_get(self._client, "exchangeInfo", {"symbols": encoded})
        info = await self._read("exchangeInfo", COSTS["exchangeInfo"], call)
        self.budget.configure(info.get("rateLimits", []))
        return info

    async def _fetch_server_ms(self) -> int:
        response = await self._read("time", COSTS["time"], self._client.get_server_time)
        return int(response["serverTime"])

    async def server_time(self) -> int:
        """GET /api/v3/time: the exchange's clock in epoch ms."""
        return await self._fetch_server_ms()


OrdersPage = Callable[[dict[str, Any]], Awaitable[list[dict[str, Any]]]]


async def list_orders_since(page: OrdersPage, symbol: str, since_ms: int, *, now_ms: int, window_ms: int,
                            limit: int) -> list[dict[str, Any]]:
    """Every order of ``symbol`` placed at or after ``since_ms`` through an ``allOrders``
    endpoint (``page(params)`` is one request): time windows of ``window_ms`` (the endpoint's
    longest) from ``since_ms`` until one has an order, then pages by orderId (no window)
    until a short page. Oldest first, each order once."""
    start = since_ms
    rows: list[dict[str, Any]] = []
    while start <= now_ms + window_ms:
        window = {"symbol": symbol, "startTime": start, "endTime": start + window_ms - 1, "limit": limit}
        rows = await page(window)
        if rows:
            break
        start += window_ms
    out = {int(r["orderId"]): r for r in rows}
    while len(rows) >= limit or (rows and start + window_ms - 1 < now_ms):
        rows = await page({"symbol": symbol, "orderId": max(out) + 1, "limit": limit})
        out.update((int(r["orderId"]), r) for r in rows)
        if len(rows) < limit:
            break
    return [out[k] for k in sorted(out)]


__all__ = [
    "COSTS",
    "Accepted",
    "GatewayError",
    "NotSent",
    "RateLimited",
    "Rejected",
    "RestGateway",
    "Unknown",
    "list_orders_since",
    "order_wire_params",
]
