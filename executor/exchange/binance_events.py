"""Binance's user-data events and REST order/trade shapes, typed, with strict parsers.

The adapter's first step (``binance_reports`` then turns these into the venue-neutral
``core.reports`` the reconciler reads); nothing outside ``executor/exchange/`` imports this.

Stream events (``parse_user_event(obj)`` / ``parse_user_frame(bytes | str)``):

* spot ``executionReport`` -> ``ExecutionReport``; ``outboundAccountPosition`` ->
  ``AccountPosition``; ``balanceUpdate`` -> ``BalanceUpdate``; ``listenKeyExpired`` ->
  ``ListenKeyExpired``; ``eventStreamTerminated`` -> ``EventStreamTerminated``;
* futures ``ORDER_TRADE_UPDATE`` -> ``FuturesOrderUpdate``; ``ACCOUNT_UPDATE`` ->
  ``FuturesAccountUpdate``;
* the WS API wrapper ``{"subscriptionId": N, "event": {...}}`` is unwrapped and N kept in
  ``subscription_id``; bare (listenKey-stream) events have ``subscription_id`` None;
* any other ``e`` -> ``UnknownEvent`` (kept, never a crash).

Every event keeps its decoded payload in ``raw`` (excluded from equality and repr) so the
store can record it verbatim. A malformed payload raises ``MalformedEvent`` with one line
naming the field; no other exception escapes a parser.

REST shapes, mapped to the same vocabulary: ``parse_order_snapshot`` (order placement
response ACK/RESULT/FULL, GET order, openOrders rows, cancel response) -> ``OrderSnapshot``
(whose FULL ``fills[]`` become ``Fill``s); ``parse_my_trade`` (a myTrades row) -> ``Fill``;
``parse_account_balances`` (GET account) -> ``AssetBalance``s.

A ``Fill`` (``core.reports.FillReport``) is keyed by ``(venue, symbol, trade_id)`` whatever its source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

import orjson

from executor.core.money import MAX_DECIMAL_TEXT, PLAIN_DECIMAL_PATTERN, exact_mul, parse_decimal
from executor.core.orders import Observation, OrderStatus, Side, parse_side, parse_status
from executor.core.reports import AssetBalance, Fill, FillSource, MalformedEvent, Venue

__all__ = [
    "AccountPosition",
    "AssetBalance",
    "BalanceUpdate",
    "Event",
    "EventStreamTerminated",
    "ExecutionReport",
    "Fill",
    "FillSource",
    "FuturesAccountUpdate",
    "FuturesBalance",
    "FuturesOrderUpdate",
    "FuturesPosition",
    "ListenKeyExpired",
    "MalformedEvent",
    "OrderSnapshot",
    "UnknownEvent",
    "parse_account_balances",
    "parse_my_trade",
    "parse_order_snapshot",
    "parse_user_event",
    "parse_user_event_strict",
    "parse_user_frame",
]


_new_object = object.__new__
_set_attr = object.__setattr__
_OBSERVATION_FIELDS = ("status", "executed_qty", "cum_quote", "order_id")
if tuple(f.name for f in fields(Observation)) != _OBSERVATION_FIELDS:  # pragma: no cover - editors' guard
    raise RuntimeError("core.orders.Observation changed: update ExecutionReport.observation")


def _wire_statuses() -> frozenset[OrderStatus]:
    """The statuses an Observation accepts (the exchange's; not our local ones)."""
    out = set()
    for status in OrderStatus:
        try:
            Observation(status)
        except ValueError:
            continue
        out.add(status)
    return frozenset(out)


_WIRE_STATUSES = _wire_statuses()


# --- strict field access ---------------------------------------------------------------


class _Reader:
    """Typed access to one JSON object; every failure is a MalformedEvent naming ``where.key``."""

    __slots__ = ("d", "where")

    def __init__(self, d: object, where: str) -> None:
        if not isinstance(d, Mapping):
            raise MalformedEvent(f"{where}: expected an object, got {type(d).__name__}")
        self.d = d
        self.where = where

    def _fail(self, key: str, why: str) -> MalformedEvent:
        return MalformedEvent(f"{self.where}.{key}: {why}")

    def _get(self, key: str) -> Any:
        try:
            return self.d[key]
        except KeyError:
            raise self._fail(key, "missing") from None

    def text(self, key: str) -> str:
        v = self._get(key)
        if not isinstance(v, str):
            raise self._fail(key, f"expected a string, got {type(v).__name__}")
        return v

    def name(self, key: str) -> str:
        """A non-empty string (symbol, asset, type)."""
        v = self.text(key)
        if not v:
            raise self._fail(key, "empty")
        return v

    def opt_text(self, key: str) -> str | None:
        return None if self.d.get(key) is None else self.text(key)

    def integer(self, key: str) -> int:
        v = self._get(key)
        if not isinstance(v, int) or isinstance(v, bool):
            raise self._fail(key, f"expected an integer, got {type(v).__name__}")
        return v

    def opt_integer(self, key: str) -> int | None:
        return None if self.d.get(key) is None else self.integer(key)

    def integer_or(self, key: str, default: int) -> int:
        return default if self.d.get(key) is None else self.integer(key)

    def flag(self, key: str) -> bool:
        v = self._get(key)
        if not isinstance(v, bool):
            raise self._fail(key, f"expected true/false, got {type(v).__name__}")
        return v

    def opt_flag(self, key: str) -> bool | None:
        return None if self.d.get(key) is None else self.flag(key)

    def dec(self, key: str) -> Decimal:
        try:
            return parse_decimal(self._get(key), f"{self.where}.{key}")
        except MalformedEvent:
            raise
        except ValueError as exc:
            raise MalformedEvent(str(exc)) from None

    def opt_dec(self, key: str) -> Decimal | None:
        return None if self.d.get(key) is None else self.dec(key)

    def side(self, key: str) -> Side:
        try:
            return parse_side(self._get(key), f"{self.where}.{key}")
        except MalformedEvent:
            raise
        except ValueError as exc:
            raise MalformedEvent(str(exc)) from None

    def status(self, key: str) -> OrderStatus:
        try:
            return parse_status(self._get(key), f"{self.where}.{key}")
        except MalformedEvent:
            raise
        except ValueError as exc:
            raise MalformedEvent(str(exc)) from None

    def array(self, key: str) -> list[Any]:
        v = self._get(key)
        if not isinstance(v, list):
            raise self._fail(key, f"expected a list, got {type(v).__name__}")
        return v

    def sub(self, key: str) -> _Reader:
        return _Reader(self._get(key), f"{self.where}.{key}")

    def items(self, key: str) -> list[_Reader]:
        return [_Reader(v, f"{self.where}.{key}[{n}]") for n, v in enumerate(self.array(key))]


# --- common types ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class UserEvent:
    """Fields every stream event has besides its own."""

    subscription_id: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


# --- spot events -----------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionReport(UserEvent):
    event_time: int  # E
    symbol: str  # s
    client_order_id: str  # c: on a cancel, the CANCEL REQUEST's id
    orig_client_order_id: str  # C: the order being canceled, "" otherwise
    order_id: int  # i
    order_list_id: int  # g
    side: Side  # S
    order_type: str  # o
    time_in_force: str  # f
    quantity: Decimal  # q
    price: Decimal  # p
    execution_type: str  # x
    status: OrderStatus  # X
    reject_reason: str  # r
    last_qty: Decimal  # l
    cum_qty: Decimal  # z
    last_price: Decimal  # L
    commission: Decimal  # n
    commission_asset: str | None  # N
    transaction_time: int  # T
    trade_id: int  # t (-1 when not a trade)
    execution_id: int  # I
    is_maker: bool  # m
    on_book: bool  # w
    cum_quote: Decimal  # Z
    last_quote: Decimal  # Y
    order_time: int  # O
    working_time: int | None = None  # W
    expiry_reason: str | None = None  # eR

    @property
    def original_client_id(self) -> str:
        """The id of the order itself: ``C`` when this reports a cancel, else ``c``."""
        return self.orig_client_order_id or self.client_order_id

    @property
    def dedupe_key(self) -> tuple[str, int, int]:
        return (self.symbol, self.order_id, self.execution_id)

    @property
    def fill(self) -> Fill | None:
        if self.execution_type != "TRADE" or self.trade_id < 0:
            return None
        return Fill(self.symbol, self.trade_id, self.order_id, self.side, self.last_price, self.last_qty,
                    self.last_quote, self.commission, self.commission_asset, self.is_maker,
                    self.transaction_time, FillSource.STREAM, self.original_client_id)

    def observation(self) -> Observation:
        status = self.status
        if status in _WIRE_STATUSES and type(status) is OrderStatus:
            # What Observation(...) builds, without its __post_init__ (an enum call and the
            # local-status check, both settled here): this runs once per executionReport.
            obs = _new_object(Observation)
            _set_attr(obs, "__dict__", {"status": status, "executed_qty": self.cum_qty,
                                        "cum_quote": self.cum_quote, "order_id": self.order_id})
            return obs
        return Observation(status, self.cum_qty, self.cum_quote, self.order_id)


def _execution_report(r: _Reader, sub: int | None) -> ExecutionReport:
    return ExecutionReport(
        event_time=r.integer("E"), symbol=r.name("s"), client_order_id=r.text("c"),
        orig_client_order_id=r.text("C"), order_id=r.integer("i"), order_list_id=r.integer_or("g", -1),
        side=r.side("S"), order_type=r.name("o"), time_in_force=r.text("f"), quantity=r.dec("q"),
        price=r.dec("p"), execution_type=r.name("x"), status=r.status("X"), reject_reason=r.text("r"),
        last_qty=r.dec("l"), cum_qty=r.dec("z"), last_price=r.dec("L"), commission=r.dec("n"),
        commission_asset=r.opt_text("N"), transaction_time=r.integer("T"), trade_id=r.integer("t"),
        execution_id=r.integer("I"), is_maker=r.flag("m"), on_book=r.flag("w"), cum_quote=r.dec("Z"),
        last_quote=r.dec("Y"), order_time=r.integer("O"), working_time=r.opt_integer("W"),
        expiry_reason=r.opt_text("eR"), subscription_id=sub, raw=r.d)


@dataclass(frozen=True)
class AccountPosition(UserEvent):
    """outboundAccountPosition: absolute free/locked of the assets that may have changed."""

    event_time: int  # E
    last_update_time: int  # u
    balances: tuple[AssetBalance, ...]  # B


def _account_position(r: _Reader, sub: int | None) -> AccountPosition:
    balances = tuple(AssetBalance(b.name("a"), b.dec("f"), b.dec("l")) for b in r.items("B"))
    return AccountPosition(r.integer("E"), r.integer("u"), balances, subscription_id=sub, raw=r.d)


@dataclass(frozen=True)
class BalanceUpdate(UserEvent):
    """balanceUpdate: a delta from a deposit, withdrawal or transfer (not from trading)."""

    event_time: int  # E
    asset: str  # a
    delta: Decimal  # d
    clear_time: int  # T

    @property
    def dedupe_key(self) -> tuple[str, int, int, Decimal]:
        return (self.asset, self.event_time, self.clear_time, self.delta)


def _balance_update(r: _Reader, sub: int | None) -> BalanceUpdate:
    return BalanceUpdate(r.integer("E"), r.name("a"), r.dec("d"), r.integer("T"),
                         subscription_id=sub, raw=r.d)


@dataclass(frozen=True)
class ListenKeyExpired(UserEvent):
    event_time: int
    # A bearer token for the stream: kept out of repr; do not log ``raw`` for this event either.
    listen_key: str = field(repr=False)


def _listen_key_expired(r: _Reader, sub: int | None) -> ListenKeyExpired:
    return ListenKeyExpired(r.integer("E"), r.text("listenKey"), subscription_id=sub, raw=r.d)


@dataclass(frozen=True)
class EventStreamTerminated(UserEvent):
    """The WS API subscription ended (unsubscribe or logout): resubscribe and gap-fill."""

    event_time: int


def _event_stream_terminated(r: _Reader, sub: int | None) -> EventStreamTerminated:
    return EventStreamTerminated(r.integer("E"), subscription_id=sub, raw=r.d)


@dataclass(frozen=True)
class UnknownEvent(UserEvent):
    """An event type this version does not model; kept so it can be logged and stored."""

    event_type: str
    event_time: int | None


# --- futures events --------------------------------------------------------------------


@dataclass(frozen=True)
class FuturesOrderUpdate(UserEvent):
    """USDⓈ-M ORDER_TRADE_UPDATE (top-level E/T plus the ``o`` object)."""

    event_time: int  # E
    transaction_time: int  # T
    symbol: str  # o.s
    client_order_id: str  # o.c
    side: Side  # o.S
    order_type: str  # o.o
    time_in_force: str  # o.f
    quantity: Decimal  # o.q
    price: Decimal  # o.p
    avg_price: Decimal  # o.ap
    execution_type: str  # o.x
    status: OrderStatus  # o.X
    order_id: int  # o.i
    last_qty: Decimal  # o.l
    cum_qty: Decimal  # o.z
    last_price: Decimal  # o.L
    commission_asset: str | None  # o.N
    commission: Decimal  # o.n (0 when absent)
    trade_time: int  # o.T
    trade_id: int  # o.t
    is_maker: bool  # o.m
    reduce_only: bool  # o.R
    position_side: str  # o.ps
    realized_profit: Decimal | None = None  # o.rp
    stop_price: Decimal | None = None  # o.sp
    original_type: str | None = None  # o.ot
    expiry_reason: str | None = None  # o.er

    @property
    def cum_quote(self) -> Decimal:
        """Futures sends no cumulative quote; average price times cumulative quantity."""
        return exact_mul(self.avg_price, self.cum_qty)

    @property
    def dedupe_key(self) -> tuple[str, int, str]:
        # Futures events carry no execution id; these fields together identify one.
        return (self.symbol, self.order_id,
                f"{self.execution_type}:{self.status}:{self.trade_time}:{self.trade_id}:{self.cum_qty}")

    @property
    def fill(self) -> Fill | None:
        # CALCULATED is a liquidation fill.
        if self.execution_type not in ("TRADE", "CALCULATED") or self.trade_id < 0 or self.last_qty <= 0:
            return None
        return Fill(self.symbol, self.trade_id, self.order_id, self.side, self.last_price, self.last_qty,
                    exact_mul(self.last_price, self.last_qty), self.commission, self.commission_asset,
                    self.is_maker, self.trade_time, FillSource.STREAM, self.client_order_id, Venue.USDM)

    def observation(self) -> Observation:
        return Observation(self.status, self.cum_qty, self.cum_quote, self.order_id)


def _futures_order_update(r: _Reader, sub: int | None) -> FuturesOrderUpdate:
    o = r.sub("o")
    return FuturesOrderUpdate(
        event_time=r.integer("E"), transaction_time=r.integer("T"), symbol=o.name("s"),
        client_order_id=o.text("c"),
        side=o.side("S"), order_type=o.name("o"), time_in_force=o.text("f"), quantity=o.dec("q"),
        price=o.dec("p"), avg_price=o.dec("ap"), execution_type=o.name("x"), status=o.status("X"),
        order_id=o.integer("i"), last_qty=o.dec("l"), cum_qty=o.dec("z"), last_price=o.dec("L"),
        commission_asset=o.opt_text("N"), commission=o.opt_dec("n") or Decimal(0), trade_time=o.integer("T"),
        trade_id=o.integer("t"), is_maker=o.flag("m"), reduce_only=o.flag("R"), position_side=o.text("ps"),
        realized_profit=o.opt_dec("rp"), stop_price=o.opt_dec("sp"), original_type=o.opt_text("ot"),
        expiry_reason=o.opt_text("er"), subscription_id=sub, raw=r.d)


@dataclass(frozen=True)
class FuturesBalance:
    asset: str  # a
    wallet_balance: Decimal  # wb
    cross_wallet_balance: Decimal | None  # cw
    balance_change: Decimal | None  # bc


@dataclass(frozen=True)
class FuturesPosition:
    symbol: str  # s
    amount: Decimal  # pa
    entry_price: Decimal | None  # ep
    breakeven_price: Decimal | None  # bep
    accumulated_realized: Decimal | None  # cr
    unrealized_pnl: Decimal | None  # up
    margin_type: str | None  # mt
    isolated_wallet: Decimal | None  # iw
    position_side: str | None  # ps


@dataclass(frozen=True)
class FuturesAccountUpdate(UserEvent):
    """USDⓈ-M ACCOUNT_UPDATE; only changed balances/positions are listed."""

    event_time: int  # E
    transaction_time: int  # T
    reason: str  # a.m
    balances: tuple[FuturesBalance, ...]  # a.B
    positions: tuple[FuturesPosition, ...]  # a.P


def _futures_account_update(r: _Reader, sub: int | None) -> FuturesAccountUpdate:
    a = r.sub("a")
    balances = tuple(FuturesBalance(b.name("a"), b.dec("wb"), b.opt_dec("cw"), b.opt_dec("bc"))
                     for b in a.items("B"))
    positions = tuple(
        FuturesPosition(p.name("s"), p.dec("pa"), p.opt_dec("ep"), p.opt_dec("bep"), p.opt_dec("cr"),
                        p.opt_dec("up"), p.opt_text("mt"), p.opt_dec("iw"), p.opt_text("ps"))
        for p in (a.items("P") if a.d.get("P") is not None else []))
    return FuturesAccountUpdate(r.integer("E"), r.integer("T"), a.name("m"), balances, positions,
                                subscription_id=sub, raw=r.d)


Event = (ExecutionReport | AccountPosition | BalanceUpdate | ListenKeyExpired | EventStreamTerminated
         | FuturesOrderUpdate | FuturesAccountUpdate | UnknownEvent)

_PARSERS = {
    "executionReport": _execution_report,
    "outboundAccountPosition": _account_position,
    "balanceUpdate": _balance_update,
    "listenKeyExpired": _listen_key_expired,
    "eventStreamTerminated": _event_stream_terminated,
    "ORDER_TRADE_UPDATE": _futures_order_update,
    "ACCOUNT_UPDATE": _futures_account_update,
}


# --- executionReport fast path ---------------------------------------------------------
#
# executionReports are most of the user stream (one per order change and per trade), and
# the generic reader above costs ~30 us each: a method call and checks per field, and a
# frozen dataclass __init__ that goes through object.__setattr__ 31 times. The fast path
# reads the fields directly, accepts only exact JSON types (a subset of what the strict
# parser accepts, with the same values), and on ANY doubt returns None so the strict parser
# decides and names the field. It never raises.

_SIDE_BY_TEXT = {"BUY": Side.BUY, "SELL": Side.SELL}


def _exchange_statuses() -> dict[str, OrderStatus]:
    out = {}
    for text in (*(s.value for s in OrderStatus), "PENDING_NEW"):
        try:
            out[text] = parse_status(text)
        except ValueError:
            continue  # a local status (PENDING_SEND, SENT, UNKNOWN, NOT_FOUND, NOT_PLACED): not on the wire
    return out


_STATUS_BY_TEXT = _exchange_statuses()
_ER_FIELDS = ("subscription_id", "raw", "event_time", "symbol", "client_order_id", "orig_client_order_id",
              "order_id", "order_list_id", "side", "order_type", "time_in_force", "quantity", "price",
              "execution_type", "status", "reject_reason", "last_qty", "cum_qty", "last_price", "commission",
              "commission_asset", "transaction_time", "trade_id", "execution_id", "is_maker", "on_book",
              "cum_quote", "last_quote", "order_time", "working_time", "expiry_reason")
if tuple(f.name for f in fields(ExecutionReport)) != _ER_FIELDS:  # pragma: no cover - a guard for editors
    raise RuntimeError("ExecutionReport changed: update _ER_FIELDS and _fast_execution_report")
# Eight comma-joined money texts, each plain decimal notation (money.is_plain_decimal) of 1 to
# MAX_DECIMAL_TEXT characters (the lookahead bounds each one; a comma inside a value would
# make a ninth element and fail the match).
_ONE_DECIMAL = rf"(?=[^,]{{1,{MAX_DECIMAL_TEXT}}}(?:,|\Z)){PLAIN_DECIMAL_PATTERN}"
_eight_plain_decimals = re.compile(",".join([_ONE_DECIMAL] * 8), re.ASCII).fullmatch


def _fast_execution_report(obj: object) -> ExecutionReport | None:
    """The executionReport in ``obj`` (bare or WS API-wrapped) if it is plainly well-formed, else None."""
    if type(obj) is not dict:
        return None
    sub = None
    if "e" not in obj:
        d = obj.get("event")
        if type(d) is not dict:
            return None
        sub = obj.get("subscriptionId")
        if sub is not None and type(sub) is not int:
            return None
    else:
        d = obj
    try:
        if d["e"] != "executionReport":
            return None
        e_time, symbol, cid, orig_cid, order_id = d["E"], d["s"], d["c"], d["C"], d["i"]
        side, status = _SIDE_BY_TEXT[d["S"]], _STATUS_BY_TEXT[d["X"]]
        otype, tif, xtype, reject = d["o"], d["f"], d["x"], d["r"]
        t_time, trade_id, exec_id, o_time, maker, on_book = d["T"], d["t"], d["I"], d["O"], d["m"], d["w"]
        q, p, last, cum, last_px, comm, cum_quote, last_quote = (
            d["q"], d["p"], d["l"], d["z"], d["L"], d["n"], d["Z"], d["Y"])
    except (KeyError, TypeError):  # TypeError: an unhashable S or X
        return None
    g, asset, w_time, expiry = d.get("g"), d.get("N"), d.get("W"), d.get("eR")
    if not (type(e_time) is int and type(order_id) is int and type(t_time) is int and type(trade_id) is int
            and type(exec_id) is int and type(o_time) is int and type(maker) is bool
            and type(on_book) is bool and type(symbol) is str and symbol and type(otype) is str and otype
            and type(xtype) is str and xtype and type(cid) is str and type(orig_cid) is str
            and type(tif) is str and type(reject) is str
            and (g is None or type(g) is int) and (asset is None or type(asset) is str)
            and (w_time is None or type(w_time) is int) and (expiry is None or type(expiry) is str)):
        return None
    try:  # one regex over all eight money fields (a non-string makes join raise)
        if not _eight_plain_decimals(",".join((q, p, last, cum, last_px, comm, cum_quote, last_quote))):
            return None
    except TypeError:
        return None
    ev = _new_object(ExecutionReport)
    _set_attr(ev, "__dict__", {
        "subscription_id": sub, "raw": d, "event_time": e_time, "symbol": symbol, "client_order_id": cid,
        "orig_client_order_id": orig_cid, "order_id": order_id, "order_list_id": -1 if g is None else g,
        "side": side, "order_type": otype, "time_in_force": tif, "quantity": Decimal(q), "price": Decimal(p),
        "execution_type": xtype, "status": status, "reject_reason": reject, "last_qty": Decimal(last),
        "cum_qty": Decimal(cum), "last_price": Decimal(last_px), "commission": Decimal(comm),
        "commission_asset": asset, "transaction_time": t_time, "trade_id": trade_id, "execution_id": exec_id,
        "is_maker": maker, "on_book": on_book, "cum_quote": Decimal(cum_quote),
        "last_quote": Decimal(last_quote), "order_time": o_time, "working_time": w_time,
        "expiry_reason": expiry})
    return ev


def parse_user_event(obj: object) -> Event:
    """Parse a decoded user-data event, bare or inside the WS API ``{subscriptionId, event}``."""
    fast = _fast_execution_report(obj)
    if fast is not None:
        return fast
    return parse_user_event_strict(obj)


def parse_user_event_strict(obj: object) -> Event:
    """``parse_user_event`` without the executionReport fast path: the reference behaviour
    (and the one that names the offending field when a payload is malformed)."""
    sub: int | None = None
    if isinstance(obj, Mapping) and "event" in obj and "e" not in obj:
        wrapper = _Reader(obj, "frame")
        sub = wrapper.opt_integer("subscriptionId")
        obj = obj["event"]
    r = _Reader(obj, "event")
    kind = r.name("e")
    r.where = kind
    parser = _PARSERS.get(kind)
    if parser is None:
        raw_time = r.d.get("E")
        time = raw_time if isinstance(raw_time, int) and not isinstance(raw_time, bool) else None
        return UnknownEvent(kind, time, subscription_id=sub, raw=r.d)
    return parser(r, sub)


def parse_user_frame(frame: bytes | str) -> Event:
    """Decode one WebSocket text frame and parse it (``MalformedEvent`` on bad JSON too)."""
    try:
        obj = orjson.loads(frame)
    except (orjson.JSONDecodeError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MalformedEvent(f"frame: not valid JSON ({first})") from None
    return parse_user_event(obj)


# --- REST shapes -----------------------------------------------------------------------


@dataclass(frozen=True)
class OrderSnapshot:
    """An order as a REST call reported it: placement (ACK/RESULT/FULL), GET order, an
    openOrders row, or a cancel response. ACK responses carry identity only (status None)."""

    symbol: str
    order_id: int
    order_list_id: int
    client_order_id: str  # on a cancel response: the cancel request's id
    orig_client_order_id: str | None  # cancel responses only: the order's own id
    status: OrderStatus | None
    side: Side | None
    order_type: str | None
    time_in_force: str | None
    price: Decimal | None
    orig_qty: Decimal | None
    executed_qty: Decimal
    cum_quote: Decimal
    time_ms: int | None  # transactTime, else updateTime, else time
    fills: tuple[Fill, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def original_client_id(self) -> str:
        return self.orig_client_order_id or self.client_order_id

    def observation(self) -> Observation:
        """ACK means accepted: the order exists, nothing more is known yet."""
        return Observation(self.status or OrderStatus.NEW, self.executed_qty, self.cum_quote, self.order_id)


def parse_order_snapshot(obj: object) -> OrderSnapshot:
    r = _Reader(obj, "order")
    symbol, order_id = r.name("symbol"), r.integer("orderId")
    status = r.status("status") if "status" in r.d else None
    side = r.side("side") if "side" in r.d else None
    time_ms = r.opt_integer("transactTime")
    if time_ms is None:
        time_ms = r.opt_integer("updateTime")
    if time_ms is None:
        time_ms = r.opt_integer("time")
    executed = r.dec("executedQty") if status is not None else Decimal(0)
    # Spot spells it "cummulativeQuoteQty"; USDⓈ-M futures order queries say "cumQuote".
    spot_key = "cummulativeQuoteQty"
    quote_key = "cumQuote" if "cumQuote" in r.d and spot_key not in r.d else spot_key
    cum_quote = r.dec(quote_key) if status is not None else Decimal(0)
    fills: list[Fill] = []
    if "fills" in r.d:
        if side is None or time_ms is None:
            raise MalformedEvent("order.fills: present without side and transactTime")
        client_id = r.text("clientOrderId")
        for f in r.items("fills"):
            price, qty = f.dec("price"), f.dec("qty")
            # Fills in the placement response matched on arrival: this order was the taker.
            fills.append(Fill(symbol, f.integer("tradeId"), order_id, side, price, qty, exact_mul(price, qty),
                              f.dec("commission"), f.opt_text("commissionAsset"), False, time_ms,
                              FillSource.ORDER_RESPONSE, client_id))
    return OrderSnapshot(
        symbol=symbol, order_id=order_id, order_list_id=r.integer_or("orderListId", -1),
        client_order_id=r.text("clientOrderId"), orig_client_order_id=r.opt_text("origClientOrderId"),
        status=status, side=side, order_type=r.opt_text("type"), time_in_force=r.opt_text("timeInForce"),
        price=r.opt_dec("price"), orig_qty=r.opt_dec("origQty"), executed_qty=executed,
        cum_quote=cum_quote, time_ms=time_ms, fills=tuple(fills), raw=r.d)


def parse_my_trade(obj: object, source: FillSource = FillSource.GAP_FILL) -> Fill:
    """A ``GET /api/v3/myTrades`` row as a ``Fill`` (no client order id in that shape)."""
    r = _Reader(obj, "myTrades")
    side = Side.BUY if r.flag("isBuyer") else Side.SELL
    return Fill(r.name("symbol"), r.integer("id"), r.integer("orderId"), side, r.dec("price"), r.dec("qty"),
                r.dec("quoteQty"), r.dec("commission"), r.opt_text("commissionAsset"), r.flag("isMaker"),
                r.integer("time"), source)


def parse_account_balances(obj: object) -> tuple[AssetBalance, ...]:
    """``GET /api/v3/account`` -> its balances."""
    r = _Reader(obj, "account")
    return tuple(AssetBalance(b.name("asset"), b.dec("free"), b.dec("locked")) for b in r.items("balances"))
