"""The USDⓈ-M futures REST gateway: the only way the bot trades futures.

``FuturesGateway`` is a ``RestGateway`` aimed at ``/fapi``: the same ban gate (shared with
the spot gateway, so a 429/418 anywhere stops all sending), the same clock offset, the same
outcome rules (a 5xx, -1007, timeout or reset is ``Unknown`` and is resolved by querying the
client order id, never by sending again; a -1021 is retried once after a clock re-sync) and
its own weight budget with the futures limits (REQUEST_WEIGHT 2400/min, ORDERS 300/10 s and
1200/min, overridden by futures exchangeInfo; fed by ``X-MBX-USED-WEIGHT-1M`` and
``X-MBX-ORDER-COUNT-10S``/``-1M``). Every call the order manager, the gap fill and the
start-up checks make is an explicit method here.

``configure_account`` puts the account in one-way position mode and sets each symbol's
margin type and leverage, then reads them back from ``/fapi/v2/positionRisk`` and refuses
to go on (``FuturesSetupError``) when they differ.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from executor.core.filters import SymbolRules
from executor.core.futures_filters import futures_symbol_rules
from executor.core.reports import FUTURES_PREFIX as _FUTURES_PREFIX
from executor.core.reports import ledger_symbol as _ledger_symbol
from executor.core.reports import wire_symbol as _wire_symbol
from executor.exchange.outcome import NO_SUCH_ORDER, Accepted, Outcome, Rejected
from executor.exchange.ratelimit import ORDERS, WEIGHT, Cost, WeightBudget
from executor.exchange.rest import GatewayError, RestGateway, list_orders_since, order_wire_params

log = logging.getLogger(__name__)

FUTURES_LIMITS: tuple[tuple[str, int, int], ...] = ((WEIGHT, 60, 2400), (ORDERS, 10, 300), (ORDERS, 60, 1200))
COSTS: dict[str, Cost] = {
    "order.place": Cost(weight=1, orders=1),    # 0 weight on success; 1 reserved
    "order.cancel": Cost(weight=1),
    "order.get": Cost(weight=1),
    "openOrders.symbol": Cost(weight=1),
    "openOrders.all": Cost(weight=40),
    "positionRisk": Cost(weight=5),
    "userTrades": Cost(weight=5),
    "allOrders": Cost(weight=5),
    "income": Cost(weight=30),
    "leverage": Cost(weight=1),
    "marginType": Cost(weight=1),
    "positionMode.get": Cost(weight=30),
    "positionMode.set": Cost(weight=1),
    "exchangeInfo": Cost(weight=1),
}
NO_NEED_TO_CHANGE_MARGIN = -4046
NO_NEED_TO_CHANGE_SIDE = -4059
MAX_TRADES_LIMIT = 1000
MAX_INCOME_LIMIT = 1000
MARGIN_TYPES = {"cross": "CROSSED", "crossed": "CROSSED", "isolated": "ISOLATED"}


class FuturesSetupError(Exception):
    """The futures account's position mode, margin type or leverage is not as configured."""


@dataclass(frozen=True)
class FuturesSettings:
    """What ``configure_account`` found on the exchange after setting it."""

    dual_side: bool
    margin_type: dict[str, str]       # symbol -> CROSSED / ISOLATED
    leverage: dict[str, int]


class FuturesGateway(RestGateway):
    """Futures calls through the shared gate and clock, with a futures weight budget.

    ``spot``: the spot gateway whose ban gate and server clock this one shares (the futures
    client's ``timestamp_offset`` follows that clock before every call), and whose request
    cap (``max_requests_per_s``, the bot's option) this one takes unless given its own: the
    cap was the default 50/s here whatever the bot was configured with, so at more than 50
    hedged decisions a second the perpetual legs queued in the throttle while the spot legs
    went out (bench/RESULTS.md, "#15 ... session 9")."""

    def __init__(self, client: Any, *, spot: RestGateway | None = None, max_requests_per_s: int | None = None,
                 budget: WeightBudget | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if spot is not None:
            kwargs.update(gate=spot.gate, clock=spot.clock)
        if max_requests_per_s is None:
            max_requests_per_s = spot.max_requests_per_s if spot is not None else 50
        super().__init__(client, max_requests_per_s=max_requests_per_s,
                         budget=budget or WeightBudget(limits=FUTURES_LIMITS), **kwargs)
        if spot is not None:
            self.budget.now = spot.clock.server_now_s
        self._fclient = client
        self.rules: dict[str, SymbolRules] = {}

    def _signing(self) -> Any:
        # The futures client may be a different object from the clock's (testnet keys).
        self._fclient.timestamp_offset = self.clock.offset_ms
        return self._fclient

    # ------------------------------------------------------------------ market rules

    async def load_rules(self, symbols: Iterable[str]) -> dict[str, SymbolRules]:
        """GET /fapi/v1/exchangeInfo: the symbols' futures rules; adopts its rateLimits."""
        info = await self._read("futures.exchangeInfo", COSTS["exchangeInfo"],
                                lambda: self._signing().futures_exchange_info())
        self.budget.configure(info.get("rateLimits", []))
        wanted = {s.upper() for s in symbols}
        for row in info.get("symbols", []):
            if row.get("symbol") in wanted:
                self.rules[row["symbol"]] = futures_symbol_rules(row)
        missing = wanted - set(self.rules)
        if missing:
            raise FuturesSetupError(f"no USD-M perpetual for {', '.join(sorted(missing))}")
        return dict(self.rules)

    # ------------------------------------------------------------------ orders

    async def place_order(self, params: Mapping[str, Any], *,
                          hold: Awaitable[object] | None = None) -> Outcome:
        """POST /fapi/v1/order. Never raises for the exchange's answer; never resends on
        Unknown. ``params`` must carry our ``newClientOrderId``. ``hold``: as
        ``RestGateway.place_order`` (written only once it has completed)."""
        wire = order_wire_params(params)
        what = f"UM:{wire['symbol']} {wire['newClientOrderId']}"
        return await self._send("futures.order.place", COSTS["order.place"],
                                lambda: self._signing().futures_create_order(**wire), what, hold)

    async def cancel_order(self, symbol: str, orig_client_id: str, cancel_client_id: str = "") -> Outcome:
        """DELETE /fapi/v1/order by our client id (futures cancels carry no cancel id)."""
        if not (symbol and orig_client_id):
            raise ValueError("cancel_order needs symbol and orig_client_id")
        return await self._send(
            "futures.order.cancel", COSTS["order.cancel"],
            lambda: self._signing().futures_cancel_order(symbol=symbol, origClientOrderId=orig_client_id),
            f"UM:{symbol} {orig_client_id}")

    async def get_order(self, symbol: str, orig_client_order_id: str) -> dict[str, Any] | None:
        """GET /fapi/v1/order by client id; None if the exchange does not know it (-2013)."""
        if not (symbol and orig_client_order_id):
            raise ValueError("get_order needs symbol and orig_client_order_id")
        return await self._get_order(symbol, {"origClientOrderId": orig_client_order_id},
                                     f"UM:{symbol} {orig_client_order_id}")

    async def get_order_by_id(self, symbol: str, order_id: int) -> dict[str, Any] | None:
        """GET /fapi/v1/order by the exchange's orderId: the order of a trade the ledger has no
        order for (the exchange's liquidation or ADL order, one placed by hand); None on -2013."""
        if not symbol:
            raise ValueError("get_order_by_id needs a symbol")
        return await self._get_order(symbol, {"orderId": order_id}, f"UM:{symbol} #{order_id}")

    async def _get_order(self, symbol: str, by: dict[str, Any], what: str) -> dict[str, Any] | None:
        outcome = await self._send("futures.order.get", COSTS["order.get"],
                                   lambda: self._signing().futures_get_order(symbol=symbol, **by), what)
        if isinstance(outcome, Accepted):
            return outcome.response
        if isinstance(outcome, Rejected) and outcome.code == NO_SUCH_ORDER:
            return None
        raise GatewayError("futures.order.get", outcome)

    async def orders_since(self, symbol: str, since_ms: int, *, now_ms: int,
                           limit: int = 1000) -> list[dict[str, Any]]:
        """Every order of ``symbol`` placed at or after ``since_ms`` (GET /fapi/v1/allOrders,
        whose longest time window is 7 days; ``rest.list_orders_since``)."""
        if not symbol:
            raise ValueError("orders_since needs a symbol")

        async def page(params: dict[str, Any]) -> list[dict[str, Any]]:
            return await self._read("futures.allOrders", COSTS["allOrders"],
                                    lambda: self._signing().futures_get_all_orders(**params), symbol)

        return await list_orders_since(page, symbol, since_ms, now_ms=now_ms, window_ms=7 * 86_400_000,
                                       limit=limit)

    async def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        if symbol:
            return await self._read("futures.openOrders", COSTS["openOrders.symbol"],
                                    lambda: self._signing().futures_get_open_orders(symbol=symbol), symbol)
        return await self._read("futures.openOrders", COSTS["openOrders.all"],
                                lambda: self._signing().futures_get_open_orders())

    # ------------------------------------------------------------------ positions / trades / income

    async def position_risk(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """GET /fapi/v2/positionRisk (v2 carries leverage and marginType)."""
        params: dict[str, Any] = {"version": 2}
        if symbol:
            params["symbol"] = symbol
        return await self._read("futures.positionRisk", COSTS["positionRisk"],
                                lambda: self._signing().futures_position_information(**params), symbol or "")

    async def user_trades(self, symbol: str, from_id: int | None = None,
                          limit: int = 500) -> list[dict[str, Any]]:
        """GET /fapi/v1/userTrades: trades with id >= ``from_id`` (oldest first)."""
        if not symbol:
            raise ValueError("user_trades needs a symbol")
        if not 1 <= limit <= MAX_TRADES_LIMIT:
            raise ValueError(f"limit must be in 1..{MAX_TRADES_LIMIT}, got {limit}")
        params: dict[str, Any] = {"symbol": symbol, "limit": limit}
        if from_id is not None:
            params["fromId"] = from_id
        return await self._read("futures.userTrades", COSTS["userTrades"],
                                lambda: self._signing().futures_account_trades(**params), symbol)

    async def trades_since(self, symbol: str, from_id: int, *, page_size: int = MAX_TRADES_LIMIT,
                           max_pages: int | None = None) -> list[dict[str, Any]]:
        """Every futures trade of ``symbol`` with id >= ``from_id``, paging through userTrades."""
        out: dict[int, dict[str, Any]] = {}
        next_id, pages = from_id, 0
        while max_pages is None or pages < max_pages:
            page = await self.user_trades(symbol, next_id, page_size)
            pages += 1
            for row in page:
                if int(row["id"]) >= from_id:
                    out.setdefault(int(row["id"]), row)
            if len(page) < page_size:
                break
            next_id = max(int(row["id"]) for row in page) + 1
        return [out[k] for k in sorted(out)]

    async def income(self, *, start_time: int | None = None, income_type: str | None = None,
                     symbol: str | None = None, limit: int = MAX_INCOME_LIMIT) -> list[dict[str, Any]]:
        """GET /fapi/v1/income: funding fees, commissions, realized PnL, transfers (oldest first)."""
        if not 1 <= limit <= MAX_INCOME_LIMIT:
            raise ValueError(f"limit must be in 1..{MAX_INCOME_LIMIT}, got {limit}")
        params: dict[str, Any] = {"limit": limit}
        for key, value in (("startTime", start_time), ("incomeType", income_type), ("symbol", symbol)):
            if value is not None:
                params[key] = value
        return await self._read("futures.income", COSTS["income"],
                                lambda: self._signing().futures_income_history(**params), income_type or "")

    # ------------------------------------------------------------------ account settings

    async def set_leverage(self, symbol: str, leverage: int) -> dict[str, Any]:
        if not 1 <= leverage <= 125:
            raise ValueError(f"leverage must be 1..125, got {leverage}")
        return await self._read("futures.leverage", COSTS["leverage"],
                                lambda: self._signing().futures_change_leverage(symbol=symbol,
                                                                                leverage=leverage),
                                symbol)

    async def set_margin_type(self, symbol: str, margin_type: str) -> bool:
        """POST /fapi/v1/marginType; False when it already was (-4046)."""
        wanted = MARGIN_TYPES.get(margin_type.lower())
        if wanted is None:
            raise ValueError(f"margin type must be cross or isolated, got {margin_type!r}")
        outcome = await self._send(
            "futures.marginType", COSTS["marginType"],
            lambda: self._signing().futures_change_margin_type(symbol=symbol, marginType=wanted), symbol)
        if isinstance(outcome, Accepted):
            return True
        if isinstance(outcome, Rejected) and outcome.code == NO_NEED_TO_CHANGE_MARGIN:
            return False
        raise GatewayError("futures.marginType", outcome)

    async def dual_side_position(self) -> bool:
        """GET /fapi/v1/positionSide/dual: True in hedge mode, False in one-way mode."""
        answer = await self._read("futures.positionMode", COSTS["positionMode.get"],
                                  lambda: self._signing().futures_get_position_mode())
        return bool(answer["dualSidePosition"])

    async def set_dual_side_position(self, dual: bool) -> bool:
        """POST /fapi/v1/positionSide/dual; False when it already was (-4059)."""
        outcome = await self._send(
            "futures.positionMode", COSTS["positionMode.set"],
            lambda: self._signing().futures_change_position_mode(
                dualSidePosition="true" if dual else "false"))
        if isinstance(outcome, Accepted):
            return True
        if isinstance(outcome, Rejected) and outcome.code == NO_NEED_TO_CHANGE_SIDE:
            return False
        raise GatewayError("futures.positionMode", outcome)

    async def configure_account(self, symbols: Iterable[str], *, leverage: int,
                                margin_type: str) -> FuturesSettings:
        """One-way mode, ``margin_type`` and ``leverage`` on every symbol, then read back and
        checked; ``FuturesSetupError`` names what differs."""
        names = [s.upper() for s in symbols]
        if await self.dual_side_position():
            await self.set_dual_side_position(False)
        for symbol in names:
            await self.set_margin_type(symbol, margin_type)
            await self.set_leverage(symbol, leverage)
        dual = await self.dual_side_position()
        rows = {r["symbol"]: r for r in await self.position_risk()}
        found = FuturesSettings(
            dual_side=dual,
            margin_type={s: MARGIN_TYPES.get(str(rows.get(s, {}).get("marginType", "")).lower(), "?")
                         for s in names},
            leverage={s: int(Decimal(str(rows.get(s, {}).get("leverage", "0")))) for s in names})
        wrong = ["hedge mode is on" if dual else ""]
        want = MARGIN_TYPES[margin_type.lower()]
        wrong += [f"{s} margin type {found.margin_type[s]} (want {want})" for s in names
                  if found.margin_type[s] != want]
        wrong += [f"{s} leverage {found.leverage[s]} (want {leverage})" for s in names
                  if found.leverage[s] != leverage]
        problems = [w for w in wrong if w]
        if problems:
            raise FuturesSetupError("futures account not as configured: " + "; ".join(problems))
        log.info("futures account: one-way mode, %s margin, leverage %d on %s", want, leverage,
                 ", ".join(names))
        return found


# The ledger's naming of USD-M symbols (``UM:BTCUSDT``) is core.reports'; re-exported here.
FUTURES_PREFIX = _FUTURES_PREFIX
ledger_symbol = _ledger_symbol
wire_symbol = _wire_symbol


def _ledger_row(row: Any) -> Any:
    if isinstance(row, Mapping) and isinstance(row.get("symbol"), str):
        return {**row, "symbol": ledger_symbol(row["symbol"])}
    return row


def _ledger_outcome(outcome: Outcome) -> Outcome:
    return Accepted(_ledger_row(outcome.response)) if isinstance(outcome, Accepted) else outcome


class LedgerFuturesGateway:
    """The futures gateway as an ``OrderManager`` drives it: symbols in and out are ledger
    symbols (``UM:BTCUSDT``), a LIMIT_MAKER (a strategy's ``post_only``) goes out as LIMIT
    GTX, and FULL responses (spot only) are asked for as RESULT."""

    def __init__(self, gateway: FuturesGateway) -> None:
        self.futures = gateway
        self.gate = gateway.gate

    async def place_order(self, params: Mapping[str, Any], *,
                          hold: Awaitable[object] | None = None) -> Outcome:
        wire = dict(params)
        wire["symbol"] = wire_symbol(str(wire["symbol"]))
        if wire.get("type") == "LIMIT_MAKER":
            wire["type"], wire["timeInForce"] = "LIMIT", "GTX"
        if wire.get("newOrderRespType") == "FULL":
            wire["newOrderRespType"] = "RESULT"
        return _ledger_outcome(await self.futures.place_order(wire, hold=hold))

    async def cancel_order(self, symbol: str, orig_client_id: str, cancel_client_id: str = "") -> Outcome:
        return _ledger_outcome(await self.futures.cancel_order(wire_symbol(symbol), orig_client_id))

    async def get_order(self, symbol: str, orig_client_order_id: str) -> dict[str, Any] | None:
        found = await self.futures.get_order(wire_symbol(symbol), orig_client_order_id)
        return None if found is None else _ledger_row(found)

    async def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        rows = await self.futures.open_orders(wire_symbol(symbol) if symbol else None)
        return [_ledger_row(r) for r in rows]


__all__ = ["COSTS", "FuturesGateway", "FuturesSettings", "FuturesSetupError", "LedgerFuturesGateway",
           "ledger_symbol", "wire_symbol"]
