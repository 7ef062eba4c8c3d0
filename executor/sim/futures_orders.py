"""USDⓈ-M futures orders of the embedded exchange: validation, matching and account settings.

``FuturesOrders`` (``sim.futures.orders``) owns every futures order and trade, the account
settings (leverage and margin type per symbol, the position mode) and the matching: there is
no futures order book, only the perpetual's touch (``FuturesMarket.touch``: one tick either
side of the mark, a size that changes each second). A marketable order fills at the touch
up to the size still shown this second; a resting LIMIT order fills at its own price
(maker) when the touch crosses it. Positions, realized PnL, commissions and income rows are
booked by ``FuturesSide.book_trade``; this module publishes ORDER_TRADE_UPDATE for every
state change and ACCOUNT_UPDATE (m=ORDER) after every trade, as Binance documents them.
``liquidate`` closes a position by an exchange liquidation order (``FuturesSide.check_liquidations``
decides when). Only one-way mode trades: hedge mode can be switched on (``positionSide/dual``) but orders
then need LONG/SHORT, which this engine refuses (-4061), as a one-way-only bot expects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from executor.core.money import format_decimal
from executor.sim import errors
from executor.sim.futures_account import MAKER_FEE, PRICE_PLACES, QTY_PLACES, TAKER_FEE, ZERO
from executor.sim.futures_account import d8 as _d8
from executor.sim.futures_account import fixed as _fixed

if TYPE_CHECKING:
    from executor.sim.futures_account import FuturesSide

# exchangeInfo filters of every perpetual (rest_futures advertises the same numbers)
MIN_QTY = Decimal("0.001")
STEP = Decimal("0.001")
MAX_QTY = Decimal("1000")
MARKET_MAX_QTY = Decimal("120")
MIN_NOTIONAL = Decimal("100")
PERCENT_UP = Decimal("1.0500")
PERCENT_DOWN = Decimal("0.9500")
MAX_PRICE = Decimal("4529764")
DEFAULT_LEVERAGE = 20
MAX_LEVERAGE = 125
MARGIN_TYPES = ("ISOLATED", "CROSSED")
OPEN = ("NEW", "PARTIALLY_FILLED")
LIQUIDATED = "5"   # ORDER_TRADE_UPDATE ``er``: "Order has expired when the account was liquidated"
Event = dict[str, Any]


def margin_insufficient() -> errors.BinanceError:
    return errors.BinanceError(-2019, "Margin is insufficient.")


def post_only_rejected() -> errors.BinanceError:
    return errors.BinanceError(-5022, "Due to the order could not be executed as maker, the Post Only order "
                                      "will be rejected. The order will not be recorded in the order history")


def reduce_only_rejected() -> errors.BinanceError:
    return errors.BinanceError(-2022, "ReduceOnly Order is rejected.")


def duplicate_client_id() -> errors.BinanceError:
    return errors.BinanceError(-4116, "ClientOrderId is duplicated.")


def no_such_order() -> errors.BinanceError:
    return errors.BinanceError(-2013, "Order does not exist.")


def unknown_order() -> errors.BinanceError:
    return errors.BinanceError(-2011, "Unknown order sent.")


@dataclass(frozen=True)
class FuturesOrderRequest:
    """A parsed ``POST /fapi/v1/order`` (the REST module parses; the engine checks and matches)."""

    symbol: str
    side: str                  # BUY / SELL
    type: str                  # LIMIT / MARKET
    tif: str                   # GTC / IOC / FOK / GTX (MARKET: GTC, as Binance reports it)
    quantity: Decimal
    price: Decimal | None
    reduce_only: bool
    client_order_id: str
    position_side: str = "BOTH"


@dataclass
class FuturesOrder:
    account: str
    symbol: str
    order_id: int
    client_order_id: str
    side: str
    type: str
    tif: str
    qty: Decimal
    price: Decimal             # 0 for MARKET
    reduce_only: bool
    time: int
    status: str = "NEW"
    executed: Decimal = ZERO
    cum_quote: Decimal = ZERO
    update_time: int = 0

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.executed

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed if self.executed else ZERO

    def row(self) -> dict[str, Any]:
        """``GET /fapi/v1/order`` / ``openOrders`` row (RESULT responses drop ``time``)."""
        return {"avgPrice": f"{self.avg_price:.5f}", "clientOrderId": self.client_order_id,
                "cumQuote": _d8(self.cum_quote), "executedQty": _fixed(self.executed, QTY_PLACES),
                "orderId": self.order_id, "origQty": _fixed(self.qty, QTY_PLACES), "origType": self.type,
                "price": _fixed(self.price, PRICE_PLACES) if self.price else "0",
                "reduceOnly": self.reduce_only, "side": self.side, "positionSide": "BOTH",
                "status": self.status, "stopPrice": "0", "closePosition": False, "symbol": self.symbol,
                "time": self.time, "timeInForce": self.tif, "type": self.type, "updateTime": self.update_time,
                "workingType": "CONTRACT_PRICE", "priceProtect": False, "priceMatch": "NONE",
                "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0}

    def response(self) -> dict[str, Any]:
        """``POST``/``DELETE /fapi/v1/order`` response body."""
        row = self.row()
        del row["time"]
        row["cumQty"] = row["executedQty"]
        return row


@dataclass
class FuturesTrade:
    account: str
    symbol: str
    trade_id: int
    order_id: int
    side: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    realized: Decimal
    maker: bool
    time: int

    def row(self) -> dict[str, Any]:
        """``GET /fapi/v1/userTrades`` row."""
        return {"buyer": self.side == "BUY", "commission": _d8(self.commission), "commissionAsset": "USDT",
                "id": self.trade_id, "maker": self.maker, "orderId": self.order_id,
                "price": _fixed(self.price, PRICE_PLACES), "qty": _fixed(self.qty, QTY_PLACES),
                "quoteQty": _d8(self.price * self.qty), "realizedPnl": _d8(self.realized), "side": self.side,
                "positionSide": "BOTH", "symbol": self.symbol, "time": self.time}


@dataclass
class AccountSettings:
    leverage: dict[str, int] = field(default_factory=dict)
    margin_type: dict[str, str] = field(default_factory=dict)   # ISOLATED / CROSSED
    dual_side: bool = False


class FuturesOrders:
    """Every futures order and trade of one exchange, matched against the perpetual's touch."""

    def __init__(self, side: FuturesSide, now_ms: Callable[[], int],
                 publish: Callable[[str, str, Event], None]) -> None:
        self._side = side
        self._now_ms = now_ms
        self._publish = publish
        self.orders: dict[int, FuturesOrder] = {}
        self._open: dict[int, FuturesOrder] = {}       # NEW / PARTIALLY_FILLED only (matching walks these)
        self.trades: list[FuturesTrade] = []
        self.settings: dict[str, AccountSettings] = {}
        # Tests: the touch shows at most this size per second (forces partial fills).
        self.liquidity_cap: dict[str, Decimal] = {}
        self._auto = 0
        self._taken: dict[tuple[str, str], tuple[int, Decimal]] = {}   # (symbol, BUY/SELL) -> (second, qty)
        self._liquidations = 0

    def auto_client_id(self) -> str:
        """A client id for an order sent without ``newClientOrderId`` (Binance makes one up)."""
        self._auto += 1
        return f"autoclient-{self._auto}"

    # -- settings --------------------------------------------------------------------------
    def account_settings(self, account: str) -> AccountSettings:
        return self.settings.setdefault(account, AccountSettings())

    def leverage(self, account: str, symbol: str) -> int:
        return self.account_settings(account).leverage.get(symbol, DEFAULT_LEVERAGE)

    def margin_type(self, account: str, symbol: str) -> str:
        return self.account_settings(account).margin_type.get(symbol, "CROSSED")

    def set_leverage(self, account: str, symbol: str, leverage: int) -> dict[str, Any]:
        if not 1 <= leverage <= MAX_LEVERAGE:
            raise errors.BinanceError(-4028, f"Leverage {leverage} is not valid")
        self.account_settings(account).leverage[symbol] = leverage
        return {"leverage": leverage, "maxNotionalValue": "1000000", "symbol": symbol}

    def set_margin_type(self, account: str, symbol: str, margin_type: str) -> dict[str, Any]:
        if margin_type not in MARGIN_TYPES:
            raise errors.BinanceError(-1116, "Invalid marginType.")
        if self.margin_type(account, symbol) == margin_type:
            raise errors.BinanceError(-4046, "No need to change margin type.")
        if any(o.account == account and o.symbol == symbol for o in self.open_orders(account)):
            raise errors.BinanceError(-4047, "Margin type cannot be changed if there exists open orders.")
        if self._position_amount(account, symbol):
            raise errors.BinanceError(-4048, "Margin type cannot be changed if there exists position.")
        self.account_settings(account).margin_type[symbol] = margin_type
        return {"code": 200, "msg": "success"}

    def set_dual_side(self, account: str, dual: bool) -> dict[str, Any]:
        settings = self.account_settings(account)
        if settings.dual_side == dual:
            raise errors.BinanceError(-4059, "No need to change position side.")
        if self.open_orders(account):
            raise errors.BinanceError(-4067, "Position side cannot be changed if there exists open orders.")
        if any(p.amount for p in self._side.wallet(account).positions.values()):
            raise errors.BinanceError(-4068, "Position side cannot be changed if there exists position.")
        settings.dual_side = dual
        return {"code": 200, "msg": "success"}

    # -- queries ---------------------------------------------------------------------------
    def find(self, account: str, symbol: str, order_id: int | None,
             client_id: str | None) -> FuturesOrder | None:
        if order_id is not None:
            order = self.orders.get(order_id)
            mine = order is not None and order.account == account and order.symbol == symbol
            return order if mine else None
        # A client id may be reused once its order is closed: the newest one answers.
        for order in reversed(list(self.orders.values())):
            if order.account == account and order.symbol == symbol and order.client_order_id == client_id:
                return order
        return None

    def open_orders(self, account: str, symbol: str | None = None) -> list[FuturesOrder]:
        return [o for o in self._open.values() if o.account == account and symbol in (None, o.symbol)]

    def user_trades(self, account: str, symbol: str) -> list[FuturesTrade]:
        return [t for t in self.trades if t.account == account and t.symbol == symbol]

    # -- margin ----------------------------------------------------------------------------
    def _position_amount(self, account: str, symbol: str) -> Decimal:
        pos = self._side.wallet(account).positions.get(symbol)
        return pos.amount if pos is not None else ZERO

    def _mark(self, symbol: str) -> Decimal:
        state = self._side.market.state(symbol)
        if state is None:
            raise errors.BinanceError(-1121, "Invalid symbol.")
        return state.mark

    def available_margin(self, account: str) -> Decimal:
        """Wallet + unrealized PnL - position initial margin - open orders' initial margin."""
        wallet = self._side.wallet(account)
        total = wallet.balance("USDT")
        for pos in wallet.positions.values():
            if pos.amount:
                mark = self._mark(pos.symbol)
                total += (mark - pos.entry_price) * pos.amount
                total -= abs(pos.amount) * mark / self.leverage(account, pos.symbol)
        for order in self.open_orders(account):
            if not order.reduce_only:
                total -= order.remaining * order.price / self.leverage(account, order.symbol)
        return total

    def _check_margin(self, account: str, req: FuturesOrderRequest, ref_price: Decimal) -> None:
        amount = self._position_amount(account, req.symbol)
        reduces = (amount > 0 and req.side == "SELL") or (amount < 0 and req.side == "BUY")
        closing = abs(amount) if reduces else ZERO
        opening = max(ZERO, req.quantity - closing)
        if not opening:
            return
        needed = opening * ref_price / self.leverage(account, req.symbol)
        needed += opening * ref_price * TAKER_FEE
        if needed > self.available_margin(account):
            raise margin_insufficient()

    # -- placing ---------------------------------------------------------------------------
    def check_filters(self, req: FuturesOrderRequest, tick: Decimal) -> None:
        qty = req.quantity
        if qty <= 0:
            raise errors.BinanceError(-4003, "Quantity less than or equal to zero.")
        if (qty - MIN_QTY) % STEP:
            raise errors.BinanceError(-4023, "Quantity not increased by step size.")
        max_qty = MARKET_MAX_QTY if req.type == "MARKET" else MAX_QTY
        if qty < MIN_QTY or qty > max_qty:
            raise errors.filter_failure("MARKET_LOT_SIZE" if req.type == "MARKET" else "LOT_SIZE")
        mark = self._mark(req.symbol)
        if req.price is not None:
            if req.price <= 0:
                raise errors.BinanceError(-4001, "Price less than 0.")
            if req.price % tick:
                raise errors.BinanceError(-4014, "Price not increased by tick size.")
            if req.price > MAX_PRICE:
                raise errors.BinanceError(-4016, "Limit price can't be higher than "
                                                 f"{format_decimal(MAX_PRICE)}.")
            if req.side == "BUY" and req.price > mark * PERCENT_UP:
                raise errors.BinanceError(-4016, f"Limit price can't be higher than "
                                                 f"{(mark * PERCENT_UP).quantize(tick)}.")
            if req.side == "SELL" and req.price < mark * PERCENT_DOWN:
                raise errors.BinanceError(-4024, f"Limit price can't be lower than "
                                                 f"{(mark * PERCENT_DOWN).quantize(tick)}.")
        ref = req.price if req.price is not None else mark
        if not req.reduce_only and qty * ref < MIN_NOTIONAL:
            raise errors.BinanceError(-4164, f"Order's notional must be no smaller than "
                                             f"{format_decimal(MIN_NOTIONAL)} "
                                             "(unless you choose reduce only).")

    def place(self, account: str, req: FuturesOrderRequest, tick: Decimal) -> FuturesOrder:
        """Validate, accept and match ``req``; returns the order as it stands afterwards."""
        settings = self.account_settings(account)
        if settings.dual_side or req.position_side != "BOTH":
            raise errors.BinanceError(-4061, "Order's position side does not match user's setting.")
        self.check_filters(req, tick)
        if any(o.client_order_id == req.client_order_id for o in self.open_orders(account, req.symbol)):
            raise duplicate_client_id()
        touch = self._side.market.touch(req.symbol)
        if touch is None:
            raise errors.BinanceError(-1121, "Invalid symbol.")
        marketable = req.type == "MARKET" or (
            req.price is not None
            and (req.price >= touch.ask if req.side == "BUY" else req.price <= touch.bid))
        if req.tif == "GTX" and marketable:
            raise post_only_rejected()
        amount = self._position_amount(account, req.symbol)
        if req.reduce_only:
            opposite = (amount > 0 and req.side == "SELL") or (amount < 0 and req.side == "BUY")
            if not opposite or req.quantity > abs(amount):
                raise reduce_only_rejected()
        ref = req.price if req.price is not None else (touch.ask if req.side == "BUY" else touch.bid)
        self._check_margin(account, req, ref)
        now = self._now_ms()
        order_id, _ = self._side.next_ids()
        order = FuturesOrder(account=account, symbol=req.symbol, order_id=order_id,
                             client_order_id=req.client_order_id, side=req.side, type=req.type, tif=req.tif,
                             qty=req.quantity, price=req.price or ZERO, reduce_only=req.reduce_only,
                             time=now, update_time=now)
        self.orders[order_id] = order
        self._open[order_id] = order
        self._emit(order, "NEW")
        if req.tif == "FOK" and self._available(req.symbol, req.side) < req.quantity:
            self._close(order, "EXPIRED")
            return order
        if marketable:
            price = touch.ask if req.side == "BUY" else touch.bid
            self._fill(order, price, maker=False)
        if order.status in OPEN and (req.type == "MARKET" or req.tif in ("IOC", "FOK")):
            self._close(order, "EXPIRED")
        return order

    def cancel(self, account: str, symbol: str, order_id: int | None, client_id: str | None) -> FuturesOrder:
        order = self.find(account, symbol, order_id, client_id)
        if order is None or order.status not in OPEN:
            raise unknown_order()
        self._close(order, "CANCELED")
        return order

    # -- matching --------------------------------------------------------------------------
    def _available(self, symbol: str, side: str) -> Decimal:
        """The touch size on the side ``side`` takes from, less what was taken this second."""
        touch = self._side.market.touch(symbol)
        if touch is None:
            return ZERO
        shown = touch.ask_qty if side == "BUY" else touch.bid_qty
        cap = self.liquidity_cap.get(symbol)
        if cap is not None:
            shown = min(shown, cap)
        second, taken = self._taken.get((symbol, side), (-1, ZERO))
        if second != touch.time_ms // 1000:
            taken = ZERO
        return max(ZERO, shown - taken)

    def _take(self, symbol: str, side: str, qty: Decimal) -> None:
        touch = self._side.market.touch(symbol)
        second = touch.time_ms // 1000 if touch is not None else -1
        prev_second, taken = self._taken.get((symbol, side), (-1, ZERO))
        self._taken[(symbol, side)] = (second, (taken if prev_second == second else ZERO) + qty)

    def _fill(self, order: FuturesOrder, price: Decimal, *, maker: bool) -> None:
        qty = min(order.remaining, self._available(order.symbol, order.side))
        if order.reduce_only:
            qty = min(qty, abs(self._position_amount(order.account, order.symbol)))
        qty = (qty // STEP) * STEP
        if qty <= 0:
            return
        self._take(order.symbol, order.side, qty)
        _, trade_id = self._side.next_ids()
        _, realized, commission = self._side.book_trade(order.account, order.symbol, order.side, qty, price,
                                                        maker=maker, trade_id=trade_id)
        now = self._now_ms()
        order.executed += qty
        order.cum_quote += qty * price
        order.update_time = now
        order.status = "FILLED" if order.remaining == 0 else "PARTIALLY_FILLED"
        if order.status == "FILLED":
            self._open.pop(order.order_id, None)
        trade = FuturesTrade(order.account, order.symbol, trade_id, order.order_id, order.side, price, qty,
                             commission, realized, maker, now)
        self.trades.append(trade)
        self._emit(order, "TRADE", trade)
        self._side.publish_order_update(order.account, order.symbol)

    def _close(self, order: FuturesOrder, status: str, expiry_reason: str = "0") -> None:
        order.status = status
        self._open.pop(order.order_id, None)
        order.update_time = self._now_ms()
        self._emit(order, status, expiry_reason=expiry_reason)

    def liquidate(self, account: str, symbol: str, mark: Decimal) -> FuturesOrder:
        """Close ``symbol``'s position at ``mark`` by an exchange liquidation order (see
        ``futures_account``'s docstring): the account's open orders expire first (er 5)."""
        for open_order in self.open_orders(account):
            self._close(open_order, "EXPIRED", expiry_reason=LIQUIDATED)
        self._liquidations += 1
        now = self._now_ms()
        amount = self._position_amount(account, symbol)
        # "CALCULATED - Liquidation Execution"
        return self._exchange_close(account, symbol, abs(amount), mark,
                                    f"autoclose-{now}{self._liquidations:06d}", "CALCULATED")

    def auto_deleverage(self, account: str, symbol: str, qty: Decimal | None = None,
                        price: Decimal | None = None) -> FuturesOrder:
        """ADL: the exchange closes ``qty`` (default: all) of ``symbol``'s position at
        ``price`` (default: the mark) against a liquidated counterparty, by its own order
        ``adl_autoclose`` (Binance's name for it). Open orders stay. The fill is reported as
        a TRADE execution (the reference documents only the client id; the execution type
        is an inference: the liquidation's CALCULATED is documented for liquidations)."""
        amount = self._position_amount(account, symbol)
        if amount == 0:
            raise ValueError(f"{account} has no {symbol} position to deleverage")
        size = abs(amount) if qty is None else min(qty, abs(amount))
        at = price if price is not None else self._mark(symbol)
        return self._exchange_close(account, symbol, size, at, "adl_autoclose", "TRADE")

    def _exchange_close(self, account: str, symbol: str, qty: Decimal, price: Decimal, client_order_id: str,
                        execution: str) -> FuturesOrder:
        """The exchange's own order closing ``qty`` of the position at ``price``, filled at once."""
        amount = self._position_amount(account, symbol)
        now = self._now_ms()
        order_id, trade_id = self._side.next_ids()
        order = FuturesOrder(account=account, symbol=symbol, order_id=order_id,
                             client_order_id=client_order_id, side="SELL" if amount > 0 else "BUY",
                             type="LIMIT", tif="IOC", qty=qty, price=price, reduce_only=False, time=now,
                             update_time=now)
        self.orders[order_id] = order
        self._emit(order, "NEW")
        _, realized, commission = self._side.book_trade(account, symbol, order.side, qty, price, maker=False,
                                                        trade_id=trade_id)
        order.executed, order.cum_quote, order.status = qty, qty * price, "FILLED"
        trade = FuturesTrade(account, symbol, trade_id, order_id, order.side, price, qty, commission,
                             realized, False, now)
        self.trades.append(trade)
        self._emit(order, execution, trade)
        self._side.publish_order_update(account, symbol)
        return order

    def force_orders(self, account: str, symbol: str | None = None) -> list[FuturesOrder]:
        """``GET /fapi/v1/forceOrders``: the account's liquidation orders, oldest first."""
        return [o for o in self.orders.values() if o.account == account and symbol in (None, o.symbol)
                and o.client_order_id.startswith("autoclose-")]

    def match(self, symbol: str | None = None) -> int:
        """Fill resting orders the touch now crosses (maker, at their price); returns fills made."""
        made = 0
        for order in list(self._open.values()):
            if order.status not in OPEN or order.type != "LIMIT" or symbol not in (None, order.symbol):
                continue
            touch = self._side.market.touch(order.symbol)
            if touch is None:
                continue
            crossed = touch.ask <= order.price if order.side == "BUY" else touch.bid >= order.price
            if crossed:
                before = order.executed
                self._fill(order, order.price, maker=True)
                made += order.executed != before
        return made

    # -- events ----------------------------------------------------------------------------
    def _notional(self, account: str, symbol: str, side: str) -> Decimal:
        return sum((o.remaining * o.price for o in self.open_orders(account, symbol) if o.side == side), ZERO)

    def _emit(self, order: FuturesOrder, execution: str, trade: FuturesTrade | None = None, *,
              expiry_reason: str = "0") -> Event:
        now = self._now_ms()
        o: dict[str, Any] = {
            "s": order.symbol, "c": order.client_order_id, "S": order.side, "o": order.type, "f": order.tif,
            "q": _fixed(order.qty, QTY_PLACES),
            "p": _fixed(order.price, PRICE_PLACES) if order.price else "0",
            "ap": f"{order.avg_price:.5f}", "sp": "0", "x": execution, "X": order.status, "i": order.order_id,
            "l": _fixed(trade.qty, QTY_PLACES) if trade else "0", "z": _fixed(order.executed, QTY_PLACES),
            "L": _fixed(trade.price, PRICE_PLACES) if trade else "0"}
        if trade is not None:          # "will not push if no commission"
            o["N"], o["n"] = "USDT", _d8(trade.commission)
        o.update({
            "T": now, "t": trade.trade_id if trade else 0,
            "b": _d8(self._notional(order.account, order.symbol, "BUY")),
            "a": _d8(self._notional(order.account, order.symbol, "SELL")),
            "m": trade.maker if trade else False, "R": order.reduce_only, "wt": "CONTRACT_PRICE",
            "ot": order.type, "ps": "BOTH", "cp": False, "rp": _d8(trade.realized if trade else ZERO),
            "pP": False, "si": 0, "ss": 0, "V": "EXPIRE_MAKER", "pm": "NONE", "gtd": 0, "er": expiry_reason})
        event = {"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": o}
        self._publish(order.account, "futures", event)
        return event


__all__ = ["MAKER_FEE", "TAKER_FEE", "FuturesOrder", "FuturesOrderRequest", "FuturesOrders", "FuturesTrade"]
