"""The spot matching engine: order validation, matching against the synthetic book,
balances, fees, order/trade/execution ids and user events.

Transport-neutral: the REST routes (and the WS API) hand it the request's parameters as
strings (``parse_new_order``) and render its ``Order``/``Trade`` objects with the
``*_response`` helpers, so every transport rejects and answers the same way.

Money model: a fill moves base and quote between the account and the counterparty
account at the fill price; the commission (maker or taker rate, charged in the asset
received) goes to the fee account. So for every asset, account + counterparty + fees is
conserved exactly, and no account's free or locked ever goes negative.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from executor.sim import errors
from executor.sim.accounts import Account, Accounts
from executor.sim.bus import UserEventBus
from executor.sim.clock import SimClock
from executor.sim.market import Book, Market, SymbolSpec, fmt8, round_down

ZERO = Decimal(0)
ZERO8 = fmt8(ZERO)
ALPHABET62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
FEE_UNIT = Decimal("0.00000001")
ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET")
# Binance order types the sim's symbols do not enable (exchangeInfo lists only ORDER_TYPES).
STOP_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
KNOWN_TYPES = (*ORDER_TYPES, *STOP_TYPES)
SYMBOL_STATUSES = ("TRADING", "END_OF_DAY", "HALT", "BREAK", "CANCEL_ONLY")
STP_MODES = ("NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT", "TRANSFER")
DEFAULT_STP = "EXPIRE_MAKER"
# PERCENT_PRICE_BY_SIDE as exchangeInfo advertises it (multipliers 5 and 0.2 both sides).
PERCENT_PRICE_UP = Decimal(5)
PERCENT_PRICE_DOWN = Decimal("0.2")
OPEN_STATUSES = ("NEW", "PARTIALLY_FILLED")
DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
DECIMAL_LEGAL = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
# Spot's legal range, as Binance states it in the -1100 text (binance-spot-api-docs PR #34):
# no '.', ':' or '/' (those are futures-only).
CLIENT_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,36}$")
CLIENT_ID_LEGAL = "^[a-zA-Z0-9-_]{1,36}$"
SYMBOL_RE = re.compile(r"^[A-Z0-9-_.]{1,20}$")
SYMBOL_LEGAL = r"^[A-Z0-9-_.]{1,20}$"

# Parameters each order endpoint reads (the auth ones are read by auth.py).
NEW_ORDER_PARAMS = frozenset({
    "symbol", "side", "type", "timeInForce", "quantity", "quoteOrderQty", "price", "newClientOrderId",
    "strategyId", "strategyType", "stopPrice", "trailingDelta", "icebergQty", "newOrderRespType",
    "selfTradePreventionMode", "pegPriceType", "pegOffsetValue", "pegOffsetType",
})


# -- parameter parsing (shared by REST and WS API) ----------------------------------------------

def parse_decimal(params: Mapping[str, str], name: str, *, required: bool = False) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise errors.mandatory_missing(name)
        return None
    if not DECIMAL_RE.match(raw):
        raise errors.illegal_chars(name, DECIMAL_LEGAL)
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise errors.illegal_chars(name, DECIMAL_LEGAL) from None


def parse_int(params: Mapping[str, str], name: str, *, required: bool = False) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise errors.mandatory_missing(name)
        return None
    if not re.fullmatch(r"-?[0-9]{1,20}", raw):
        raise errors.illegal_chars(name, "^-?[0-9]{1,20}$")
    return int(raw)


def parse_symbol(params: Mapping[str, str], specs: Mapping[str, SymbolSpec], *, required: bool = True
                 ) -> SymbolSpec | None:
    raw = params.get("symbol")
    if raw is None or raw == "":
        if required:
            raise errors.mandatory_missing("symbol")
        return None
    if not SYMBOL_RE.match(raw):
        raise errors.illegal_chars("symbol", SYMBOL_LEGAL)
    spec = specs.get(raw)
    if spec is None:
        raise errors.invalid_symbol()
    return spec


def parse_client_id(params: Mapping[str, str], name: str) -> str | None:
    raw = params.get(name)
    if raw is None:
        return None
    if raw == "":
        if name == "newClientOrderId":
            raise errors.empty_client_id()
        raise errors.mandatory_missing(name)
    if not CLIENT_ID_RE.match(raw):
        raise errors.illegal_chars(name, CLIENT_ID_LEGAL)
    return raw


@dataclass(frozen=True)
class NewOrder:
    symbol: str
    side: str
    type: str
    tif: str
    quantity: Decimal | None
    quote_qty: Decimal | None
    price: Decimal | None
    client_order_id: str | None
    resp_type: str
    stp: str


def parse_new_order(params: Mapping[str, str], specs: Mapping[str, SymbolSpec]) -> NewOrder:
    """Validate a new-order request's parameters the way Binance does, in Binance's order."""
    spec = parse_symbol(params, specs)
    assert spec is not None
    side = params.get("side") or ""
    if not side:
        raise errors.mandatory_missing("side")
    if side not in ("BUY", "SELL"):
        raise errors.invalid_side()
    otype = params.get("type") or ""
    if not otype:
        raise errors.mandatory_missing("type")
    if otype not in KNOWN_TYPES:
        raise errors.invalid_order_type()
    if otype in STOP_TYPES:
        if not params.get("stopPrice") and not params.get("trailingDelta"):
            raise errors.one_of_missing("stopPrice", "trailingDelta")
        raise errors.order_type_not_supported(otype)
    for name in ("stopPrice", "trailingDelta"):
        if params.get(name):
            raise errors.param_not_required(name)
    if params.get("icebergQty"):
        if otype == "MARKET":
            raise errors.param_not_required("icebergQty")
        raise errors.BinanceError(-2010, "Iceberg orders are not supported for this symbol.")
    tif_raw = params.get("timeInForce")
    quantity = parse_decimal(params, "quantity")
    quote_qty = parse_decimal(params, "quoteOrderQty")
    price = parse_decimal(params, "price")
    if otype == "LIMIT":
        if not tif_raw:
            raise errors.mandatory_missing("timeInForce")
        if tif_raw not in ("GTC", "IOC", "FOK"):
            raise errors.invalid_tif()
        if quantity is None:
            raise errors.mandatory_missing("quantity")
        if price is None:
            raise errors.mandatory_missing("price")
        if quote_qty is not None:
            raise errors.param_not_required("quoteOrderQty")
    elif otype == "LIMIT_MAKER":
        if tif_raw:
            raise errors.param_not_required("timeInForce")
        if quantity is None:
            raise errors.mandatory_missing("quantity")
        if price is None:
            raise errors.mandatory_missing("price")
        if quote_qty is not None:
            raise errors.param_not_required("quoteOrderQty")
    else:  # MARKET
        if price is not None:
            raise errors.param_not_required("price")
        if tif_raw:
            raise errors.param_not_required("timeInForce")
        if quantity is None and quote_qty is None:
            raise errors.one_of_missing("quantity", "quoteOrderQty")
        if quantity is not None and quote_qty is not None:
            raise errors.param_not_required("quoteOrderQty")
    for name, value in (("quantity", quantity), ("price", price), ("quoteOrderQty", quote_qty)):
        if value is not None and value.as_tuple().exponent < -8:  # type: ignore[operator]
            raise errors.bad_precision(name)
    client_id = parse_client_id(params, "newClientOrderId")
    resp_type = params.get("newOrderRespType") or ("FULL" if otype in ("LIMIT", "MARKET") else "ACK")
    if resp_type not in ("ACK", "RESULT", "FULL"):
        raise errors.invalid_param("newOrderRespType")
    stp = params.get("selfTradePreventionMode") or DEFAULT_STP
    if stp not in STP_MODES:
        raise errors.invalid_param("selfTradePreventionMode")
    return NewOrder(symbol=spec.symbol, side=side, type=otype, tif=tif_raw or "GTC", quantity=quantity,
                    quote_qty=quote_qty, price=price, client_order_id=client_id, resp_type=resp_type, stp=stp)


def _off_step(value: Decimal, base: Decimal, step: Decimal) -> bool:
    """True when ``value`` breaks a step rule; a step of 0 disables the rule (filters.md)."""
    return step != 0 and (value - base) % step != 0


def check_filters(spec: SymbolSpec, req: NewOrder, ref_price: Decimal) -> None:
    """PRICE_FILTER, PERCENT_PRICE_BY_SIDE (against the mid, standing in for the average price),
    LOT_SIZE / MARKET_LOT_SIZE and NOTIONAL, as filters.md defines them (a 0 bound disables it)."""
    price = req.price
    if price is not None and (
        (spec.min_price != 0 and price < spec.min_price) or (spec.max_price != 0 and price > spec.max_price)
        or _off_step(price, spec.min_price, spec.tick)
    ):
        raise errors.filter_failure("PRICE_FILTER")
    if price is not None and ref_price > 0 and not (
            ref_price * PERCENT_PRICE_DOWN <= price <= ref_price * PERCENT_PRICE_UP):
        raise errors.filter_failure("PERCENT_PRICE_BY_SIDE")
    if req.quantity is not None:
        if req.type == "MARKET" and (req.quantity > spec.market_max_qty or req.quantity <= 0):
            raise errors.filter_failure("MARKET_LOT_SIZE")
        # Since CHANGELOG 2023-03-13 the step rule is quantity % stepSize == 0 (not minQty-based).
        if req.quantity < spec.min_qty or req.quantity > spec.max_qty or \
                _off_step(req.quantity, ZERO, spec.step):
            raise errors.filter_failure("LOT_SIZE")
    if req.quote_qty is not None and req.quote_qty <= 0:
        raise errors.filter_failure("NOTIONAL")
    if req.type == "MARKET":
        notional = req.quote_qty if req.quote_qty is not None else (req.quantity or ZERO) * ref_price
        if notional < spec.min_notional:
            raise errors.filter_failure("NOTIONAL")
    else:
        notional = (req.quantity or ZERO) * (req.price or ZERO)
        if notional < spec.min_notional or notional > spec.max_notional:
            raise errors.filter_failure("NOTIONAL")


def check_trading_phase(spec: SymbolSpec) -> None:
    """New orders only while the symbol is TRADING (cancels stay allowed)."""
    if spec.status != "TRADING":
        raise errors.not_in_trading_phase()


def reached_engine(exc: errors.BinanceError) -> bool:
    """A -2010 NEW_ORDER_REJECTED came from the matching engine, so it still used one of the
    account's ORDERS (the WS API docs' failed order.place shows the count going up); a -1013
    filter failure or a parameter error was refused before it."""
    return exc.code == -2010


# -- orders and trades -------------------------------------------------------------------------

@dataclass
class Fill:
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    trade_id: int


@dataclass
class Order:
    symbol: str
    order_id: int
    client_order_id: str
    account_id: str
    side: str
    type: str
    tif: str
    price: Decimal
    orig_qty: Decimal
    orig_quote_qty: Decimal
    stp: str
    time: int
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = "NEW"
    update_time: int = 0
    working_time: int = -1
    locked: Decimal = ZERO              # still locked for this order (quote for BUY, base for SELL)
    fills: list[Fill] = field(default_factory=list)
    cancel_client_id: str = ""

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty


@dataclass
class Trade:
    symbol: str
    id: int
    order_id: int
    account_id: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool


def order_response(o: Order, resp_type: str, transact_time: int) -> dict[str, Any]:
    out: dict[str, Any] = {"symbol": o.symbol, "orderId": o.order_id, "orderListId": -1,
                           "clientOrderId": o.client_order_id, "transactTime": transact_time}
    if resp_type == "ACK":
        return out
    out.update({
        "price": fmt8(o.price), "origQty": fmt8(o.orig_qty), "executedQty": fmt8(o.executed_qty),
        "origQuoteOrderQty": fmt8(o.orig_quote_qty), "cummulativeQuoteQty": fmt8(o.cum_quote),
        "status": o.status, "timeInForce": o.tif, "type": o.type, "side": o.side,
        "workingTime": o.working_time, "selfTradePreventionMode": o.stp,
    })
    if resp_type == "FULL":
        out["fills"] = [{"price": fmt8(f.price), "qty": fmt8(f.qty), "commission": fmt8(f.commission),
                         "commissionAsset": f.commission_asset, "tradeId": f.trade_id} for f in o.fills]
    return out


def query_response(o: Order) -> dict[str, Any]:
    return {
        "symbol": o.symbol, "orderId": o.order_id, "orderListId": -1, "clientOrderId": o.client_order_id,
        "price": fmt8(o.price), "origQty": fmt8(o.orig_qty), "executedQty": fmt8(o.executed_qty),
        "cummulativeQuoteQty": fmt8(o.cum_quote), "status": o.status, "timeInForce": o.tif, "type": o.type,
        "side": o.side, "stopPrice": fmt8(ZERO), "icebergQty": fmt8(ZERO), "time": o.time,
        "updateTime": o.update_time, "isWorking": o.working_time >= 0, "workingTime": o.working_time,
        "origQuoteOrderQty": fmt8(o.orig_quote_qty), "selfTradePreventionMode": o.stp,
    }


def cancel_response(o: Order, transact_time: int) -> dict[str, Any]:
    return {
        "symbol": o.symbol, "origClientOrderId": o.client_order_id, "orderId": o.order_id, "orderListId": -1,
        "clientOrderId": o.cancel_client_id, "transactTime": transact_time, "price": fmt8(o.price),
        "origQty": fmt8(o.orig_qty), "executedQty": fmt8(o.executed_qty),
        "origQuoteOrderQty": fmt8(o.orig_quote_qty), "cummulativeQuoteQty": fmt8(o.cum_quote),
        "status": o.status, "timeInForce": o.tif, "type": o.type, "side": o.side,
        "selfTradePreventionMode": o.stp,
    }


def trade_row(t: Trade) -> dict[str, Any]:
    return {"symbol": t.symbol, "id": t.id, "orderId": t.order_id, "orderListId": -1, "price": fmt8(t.price),
            "qty": fmt8(t.qty), "quoteQty": fmt8(t.quote_qty), "commission": fmt8(t.commission),
            "commissionAsset": t.commission_asset, "time": t.time, "isBuyer": t.is_buyer,
            "isMaker": t.is_maker, "isBestMatch": True}


# -- the engine ---------------------------------------------------------------------------------

class SpotEngine:
    """Spot orders of every account, matched against ``market``'s books."""

    def __init__(self, accounts: Accounts, market: Market, clock: SimClock, bus: UserEventBus,
                 seed: int = 7) -> None:
        self.accounts = accounts
        self.market = market
        self.clock = clock
        self.bus = bus
        self.orders: dict[str, list[Order]] = {s: [] for s in market.specs}        # per symbol, in id order
        # Indexes so a long run stays fast: open orders, and lookups by id and client id.
        self._open: dict[str, dict[int, Order]] = {s: {} for s in market.specs}
        self._by_id: dict[tuple[str, int], Order] = {}
        self._by_client: dict[tuple[str, str, str], Order] = {}     # (account, symbol, id) -> latest
        self.trades: dict[str, list[Trade]] = {s: [] for s in market.specs}
        self._next_order_id = {s: 1000 + (seed % 1000) * 10 for s in market.specs}
        self._next_trade_id = {s: 500 + (seed % 1000) * 10 for s in market.specs}
        self._next_exec_id = 1
        self._auto_id = 0
        self._seed = seed
        self._matching = False
        # Called with (symbol, trade_id, price, qty, time, buyer_maker, taker) for every fill:
        # the public trade tape (``executor.sim.tape``) listens here.
        self.trade_listeners: list[Callable[..., None]] = []
        market.subscribe(self.on_book)

    def allocate_trade_id(self, symbol: str) -> int:
        """The next trade id of ``symbol`` (shared by our fills and the market's trades)."""
        trade_id = self._next_trade_id[symbol]
        self._next_trade_id[symbol] += 1
        return trade_id

    def last_trade_id(self, symbol: str) -> int:
        """The id given to ``symbol``'s latest trade (ours or the market tape's)."""
        return self._next_trade_id[symbol] - 1

    # -- helpers ----------------------------------------------------------------------------------
    @property
    def specs(self) -> dict[str, SymbolSpec]:
        return self.market.specs

    def _now(self) -> int:
        return self.clock.now_ms()

    def _new_client_id(self) -> str:
        """A 22-character id like Binance's generated ones, deterministic per engine."""
        self._auto_id += 1
        n = int.from_bytes(hashlib.sha256(f"{self._seed}:{self._auto_id}".encode()).digest()[:17], "big")
        out = []
        for _ in range(22):
            n, r = divmod(n, 62)
            out.append(ALPHABET62[r])
        return "".join(out)

    def open_orders(self, account_id: str, symbol: str | None = None) -> list[Order]:
        symbols = [symbol] if symbol else list(self.orders)
        out: list[Order] = []
        for s in symbols:
            book = self._open[s]
            for oid in [oid for oid, o in book.items() if not o.is_open]:
                del book[oid]
            out.extend(o for o in book.values() if o.account_id == account_id)
        return out

    def open_orders_all(self, symbol: str) -> list[Order]:
        """Every account's open orders on ``symbol``, in id order."""
        book = self._open[symbol]
        for oid in [oid for oid, o in book.items() if not o.is_open]:
            del book[oid]
        return list(book.values())

    def find_order(self, account_id: str, symbol: str, order_id: int | None,
                   client_id: str | None) -> Order | None:
        if order_id is not None:
            found = self._by_id.get((symbol, order_id))
            return found if found is not None and found.account_id == account_id else None
        if client_id is None:
            return None
        return self._by_client.get((account_id, symbol, client_id))

    # -- events -----------------------------------------------------------------------------------
    def _exec_report(self, o: Order, x: str, now: int, *, fill: Fill | None = None, maker: bool = False,
                     reject: str = "NONE") -> None:
        # Built straight in Binance's key order; the fill-less fields (NEW, EXPIRED, CANCELED:
        # most reports) are constants, formatted once (``ZERO8``).
        canceled = x == "CANCELED"
        working = o.working_time
        if fill is None:
            last_qty = last_price = last_quote = ZERO8
            commission, commission_asset, trade_id, is_maker = "0", None, -1, False
        else:
            last_qty, last_price = fmt8(fill.qty), fmt8(fill.price)
            last_quote = fmt8(fill.price * fill.qty)
            commission, commission_asset = fmt8(fill.commission), fill.commission_asset
            trade_id, is_maker = fill.trade_id, maker
        ev = {
            "e": "executionReport", "E": now, "s": o.symbol,
            "c": o.cancel_client_id if canceled else o.client_order_id,
            "S": o.side, "o": o.type, "f": o.tif, "q": fmt8(o.orig_qty), "p": fmt8(o.price),
            "P": ZERO8, "F": ZERO8, "g": -1,
            "C": o.client_order_id if canceled else "",
            "x": x, "X": o.status, "r": reject, "i": o.order_id,
            "l": last_qty, "z": fmt8(o.executed_qty), "L": last_price,
            "n": commission, "N": commission_asset,
            "T": now, "t": trade_id, "I": self._next_exec_id,
            "w": o.status in OPEN_STATUSES and working >= 0, "m": is_maker, "M": fill is not None,
            "O": o.time, "Z": fmt8(o.cum_quote), "Y": last_quote, "Q": fmt8(o.orig_quote_qty),
            "W": working if working >= 0 else o.time, "V": o.stp,
        }
        self._next_exec_id += 1
        self.bus.publish(o.account_id, "spot", ev)

    def _position(self, acct: Account, assets: list[str], now: int) -> None:
        acct.update_time = now
        seen: list[str] = []
        for a in assets:
            if a not in seen:
                seen.append(a)
        self.bus.publish(acct.id, "spot", {
            "e": "outboundAccountPosition", "E": now, "u": now,
            "B": [{"a": a, "f": fmt8(acct.free(a)), "l": fmt8(acct.locked(a))} for a in seen]})

    # -- placing ----------------------------------------------------------------------------------
    def place(self, account: Account, req: NewOrder) -> tuple[Order, int]:
        """Validate against rules and balances, book, match. Returns the order and transactTime."""
        spec = self.specs[req.symbol]
        book = self.market.book(req.symbol)
        ref = (book.bid + book.ask) / 2
        check_filters(spec, req, ref)
        check_trading_phase(spec)
        mine_open = self.open_orders(account.id, req.symbol)
        if len(mine_open) >= spec.max_num_orders and req.type != "MARKET":
            raise errors.filter_failure("MAX_NUM_ORDERS")
        client_id = req.client_order_id or self._new_client_id()
        if any(o.client_order_id == client_id for o in mine_open):
            raise errors.duplicate_order()
        if not account.can_trade:
            raise errors.trading_disabled()
        if req.type == "LIMIT_MAKER":
            assert req.price is not None
            opposite = book.levels("ask" if req.side == "BUY" else "bid", 1)
            best = opposite[0][0] if opposite else None
            crosses = best is not None and (req.price >= best if req.side == "BUY" else req.price <= best)
            if crosses:
                raise errors.would_match()
        plan = self._plan_taker(spec, book, req)
        if req.tif == "FOK" and sum((q for _, q in plan), ZERO) < (req.quantity or ZERO):
            plan = []
        # Balance needed up front: what a resting LIMIT locks, or what a MARKET will spend.
        if req.side == "BUY":
            need_asset = spec.quote
            if req.type == "MARKET":
                need = req.quote_qty if req.quote_qty is not None else sum((p * q for p, q in plan), ZERO)
            else:
                assert req.price is not None and req.quantity is not None
                need = req.price * req.quantity
        else:
            need_asset = spec.base
            need = req.quantity if req.quantity is not None else sum((q for _, q in plan), ZERO)
        assert need is not None
        if account.free(need_asset) < need:
            raise errors.insufficient_balance()
        now = self._now()
        sym_orders = self.orders[req.symbol]
        order = Order(
            symbol=req.symbol, order_id=self._next_order_id[req.symbol], client_order_id=client_id,
            account_id=account.id, side=req.side, type=req.type, tif=req.tif,
            price=req.price or ZERO, orig_qty=req.quantity or ZERO, orig_quote_qty=req.quote_qty or ZERO,
            stp=req.stp, time=now, update_time=now, working_time=now,
        )
        self._next_order_id[req.symbol] += 1
        sym_orders.append(order)
        self._by_id[(order.symbol, order.order_id)] = order
        self._by_client[(account.id, order.symbol, client_id)] = order
        self._open[order.symbol][order.order_id] = order
        account.lock(need_asset, need)
        order.locked = need
        self._exec_report(order, "NEW", now)
        self._position(account, [need_asset], now)
        if req.quote_qty is not None and plan:
            # A quoteOrderQty order is complete when the rest cannot buy one more step.
            spent = sum((p * q for p, q in plan), ZERO)
            if req.quote_qty - spent < plan[-1][0] * spec.step:
                order.orig_qty = sum((q for _, q in plan), ZERO)
        for price, qty in plan:
            book.take("ask" if req.side == "BUY" else "bid", price, qty)
            self._fill(order, account, spec, price, qty, maker=False, now=now)
        if plan:
            self.market.touch(req.symbol)     # the taken liquidity shows in the next bookTicker
        if order.is_open and (req.type == "MARKET" or req.tif in ("IOC", "FOK")):
            if req.quote_qty is not None:
                order.orig_qty = order.executed_qty
            order.status = "EXPIRED"
            order.update_time = now
            self._release(order, account, spec)
            self._exec_report(order, "EXPIRED", now)
            self._position(account, [need_asset], now)
        elif order.type == "MARKET" and order.locked > 0:
            self._release(order, account, spec)   # a filled quoteOrderQty buy's unspent dust
            self._position(account, [need_asset], now)
        return order, now

    def _plan_taker(self, spec: SymbolSpec, book: Book, req: NewOrder) -> list[tuple[Decimal, Decimal]]:
        """The fills a taker order would get now: walk the levels up to its limit price."""
        if req.type == "LIMIT_MAKER":
            return []
        side = "ask" if req.side == "BUY" else "bid"
        plan: list[tuple[Decimal, Decimal]] = []
        left_qty = req.quantity
        left_quote = req.quote_qty
        for price, avail in book.iter_levels(side):
            if req.price is not None and ((req.side == "BUY" and price > req.price) or
                                          (req.side == "SELL" and price < req.price)):
                break
            if left_qty is not None:
                q = min(left_qty, avail)
            else:
                assert left_quote is not None
                q = min(round_down(left_quote / price, spec.step), avail)
            if q <= 0:
                break
            plan.append((price, q))
            if left_qty is not None:
                left_qty -= q
                if left_qty <= 0:
                    break
            else:
                assert left_quote is not None
                left_quote -= price * q
        return plan

    def _fill(self, order: Order, account: Account, spec: SymbolSpec, price: Decimal, qty: Decimal, *,
              maker: bool, now: int, taker: Any = None) -> None:
        quote_amt = price * qty
        rate = account.maker_rate if maker else account.taker_rate
        cp, fees = self.accounts.counterparty, self.accounts.fees
        if order.side == "BUY":
            # Pay from the lock (a LIMIT locked price*qty; a better fill price frees the rest).
            spend_from_lock = order.price * qty if order.type != "MARKET" else quote_amt
            spend_from_lock = min(spend_from_lock, order.locked)
            account.debit_locked(spec.quote, spend_from_lock)
            order.locked -= spend_from_lock
            if spend_from_lock > quote_amt:
                account.credit(spec.quote, spend_from_lock - quote_amt)
            elif spend_from_lock < quote_amt:   # cannot happen while locks are right; keep exact anyway
                account.debit(spec.quote, quote_amt - spend_from_lock)
            fee = (qty * rate).quantize(FEE_UNIT, rounding=ROUND_HALF_UP)
            fee_asset = spec.base
            account.credit(spec.base, qty - fee)
            cp.debit(spec.base, qty, allow_negative=True)
            cp.credit(spec.quote, quote_amt)
        else:
            account.debit_locked(spec.base, qty)
            order.locked -= qty
            fee = (quote_amt * rate).quantize(FEE_UNIT, rounding=ROUND_HALF_UP)
            fee_asset = spec.quote
            account.credit(spec.quote, quote_amt - fee)
            cp.debit(spec.quote, quote_amt, allow_negative=True)
            cp.credit(spec.base, qty)
        fees.credit(fee_asset, fee)
        trade_id = self.allocate_trade_id(order.symbol)
        fill = Fill(price=price, qty=qty, commission=fee, commission_asset=fee_asset, trade_id=trade_id)
        order.fills.append(fill)
        order.executed_qty += qty
        order.cum_quote += quote_amt
        order.update_time = now
        done = order.orig_qty > 0 and order.executed_qty >= order.orig_qty
        order.status = "FILLED" if done else "PARTIALLY_FILLED"
        if done:
            self._release(order, account, spec)
        self.trades[order.symbol].append(Trade(
            symbol=order.symbol, id=trade_id, order_id=order.order_id, account_id=order.account_id,
            price=price, qty=qty, quote_qty=quote_amt, commission=fee, commission_asset=fee_asset, time=now,
            is_buyer=order.side == "BUY", is_maker=maker))
        buyer_maker = (order.side == "BUY") == maker
        for listener in list(self.trade_listeners):
            listener(order.symbol, trade_id, price, qty, now, buyer_maker,
                     taker if taker is not None else ("order", order.symbol, order.order_id))
        self._exec_report(order, "TRADE", now, fill=fill, maker=maker)
        self._position(account, [spec.base, spec.quote], now)

    def _release(self, order: Order, account: Account, spec: SymbolSpec) -> None:
        if order.locked > 0:
            account.unlock(spec.quote if order.side == "BUY" else spec.base, order.locked)
            order.locked = ZERO

    # -- cancelling ---------------------------------------------------------------------------------
    def cancel(self, account: Account, symbol: str, order_id: int | None, client_id: str | None,
               cancel_client_id: str | None = None) -> tuple[Order, int]:
        if not account.can_trade:
            raise errors.trading_disabled(-2011)
        order = self.find_order(account.id, symbol, order_id, client_id)
        if order is None or not order.is_open:
            raise errors.unknown_order_cancel()
        if order_id is not None and client_id is not None and order.client_order_id != client_id:
            raise errors.unknown_order_cancel()
        now = self._now()
        spec = self.specs[symbol]
        order.status = "CANCELED"
        order.update_time = now
        order.cancel_client_id = cancel_client_id or self._new_client_id()
        self._release(order, account, spec)
        self._exec_report(order, "CANCELED", now)
        self._position(account, [spec.quote if order.side == "BUY" else spec.base], now)
        return order, now

    def cancel_all(self, account: Account, symbol: str) -> list[tuple[Order, int]]:
        return [self.cancel(account, symbol, o.order_id, None) for o in self.open_orders(account.id, symbol)]

    # -- maker fills as the market moves ------------------------------------------------------------
    def on_book(self, book: Book) -> None:
        if self._matching or not self._open[book.symbol]:
            # No order (open or not yet pruned) on the symbol: nothing can fill. Every book
            # update comes through here, and most find no resting order.
            return
        self._matching = True
        try:
            spec = self.specs[book.symbol]
            resting = self.open_orders_all(book.symbol)
            buys = sorted((o for o in resting if o.side == "BUY"), key=lambda o: (-o.price, o.order_id))
            sells = sorted((o for o in resting if o.side == "SELL"), key=lambda o: (o.price, o.order_id))
            now = self._now()
            for side, orders in (("ask", buys), ("bid", sells)):
                for o in orders:
                    for price, avail in book.levels(side):
                        through = price <= o.price if side == "ask" else price >= o.price
                        if not through or not o.is_open:
                            break
                        q = min(o.remaining, avail)
                        book.take(side, price, q)
                        self._fill(o, self.accounts.get(o.account_id), spec, o.price, q, maker=True, now=now,
                                   taker=("book", book.symbol, book.u))
        finally:
            self._matching = False

    # -- deposits and withdrawals -------------------------------------------------------------------
    def adjust_balance(self, account: Account, asset: str, delta: Decimal) -> None:
        """Deposit (delta > 0) or withdraw (delta < 0): balanceUpdate then outboundAccountPosition."""
        if delta >= 0:
            account.credit(asset, delta)
        else:
            if account.free(asset) < -delta:
                raise errors.insufficient_balance()
            account.debit(asset, -delta)
        now = self._now()
        self.bus.publish(account.id, "spot", {"e": "balanceUpdate", "E": now, "a": asset,
                                              "d": fmt8(delta), "T": now})
        self._position(account, [asset], now)

    # -- history queries ----------------------------------------------------------------------------
    def all_orders(self, account_id: str, symbol: str, *, order_id: int | None = None,
                   start: int | None = None, end: int | None = None, limit: int = 500) -> list[Order]:
        rows = [o for o in self.orders[symbol] if o.account_id == account_id]
        if order_id is not None:
            rows = [o for o in rows if o.order_id >= order_id]
        if start is not None:
            rows = [o for o in rows if o.time >= start]
        if end is not None:
            rows = [o for o in rows if o.time <= end]
        if order_id is None and start is None:
            return rows[-limit:]
        return rows[:limit]

    def my_trades(self, account_id: str, symbol: str, *, order_id: int | None = None,
                  from_id: int | None = None, start: int | None = None, end: int | None = None,
                  limit: int = 500) -> list[Trade]:
        rows = [t for t in self.trades[symbol] if t.account_id == account_id]
        if order_id is not None:
            rows = [t for t in rows if t.order_id == order_id]
        if from_id is not None:
            return [t for t in rows if t.id >= from_id][:limit]
        if start is not None and end is None:
            end = start + 86_400_000
        if end is not None and start is None:
            start = end - 86_400_000
        if start is not None:
            rows = [t for t in rows if t.time >= start]
        if end is not None:
            rows = [t for t in rows if t.time <= end]
        if start is not None:
            return rows[:limit]
        return rows[-limit:]
