"""Binance payloads as venue-neutral reports (``core.reports``): the adapter's translation.

Every Binance shape the reconciler needs ends here, and nothing Binance-shaped goes past:

* spot stream ``executionReport`` -> ``OrderStatusReport`` (with its trade as a
  ``FillReport`` when ``x == TRADE`` and ``t >= 0``; the order's own id is ``C`` on a
  cancel, else ``c``); ``outboundAccountPosition`` -> ``BalanceReport``;
  ``balanceUpdate`` -> ``BalanceDeltaReport``;
* futures ``ORDER_TRADE_UPDATE`` -> ``OrderStatusReport`` (venue USD-M; a TRADE or a
  liquidation's CALCULATED with ``l > 0`` carries a ``FillReport``); ``ACCOUNT_UPDATE`` ->
  ``AccountReport``;
* control events (``listenKeyExpired``, ``eventStreamTerminated``, unknown types) -> None:
  the streams act on them, the ledger has nothing to record;
* REST: order answers (``SPOT.order``; a row whose symbol carries the ledger's ``UM:``
  prefix, as ``LedgerFuturesGateway`` hands them over, is a USD-M order), ``myTrades``
  rows (``SPOT.trade``), ``GET /api/v3/account`` (``SPOT.account``); USD-M order rows,
  ``userTrades`` rows, ``GET /fapi/v2/account`` and income rows (``USDM.*``);
* the exchange's own closing orders on a USD-M position: Binance names a liquidation order
  ``autoclose-...`` and an auto-deleveraging one ``adl_autoclose...`` (its USD-M user data
  stream docs; forceOrders lists them). ``EXCHANGE_CLOSE_PREFIXES`` and ``exchange_close_kind``
  tell them apart, so the bot's position counts them (``core.positions``).

``user_event_report`` is the hot path (one call per executionReport): the report and its
fill are built straight into their ``__dict__`` from the already-validated event, with the
same values their constructors would store (guarded below against field changes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import fields
from decimal import Decimal
from typing import Any

from executor.core.money import exact_mul, format_decimal, parse_decimal
from executor.core.orders import OrderStatus, Side
from executor.core.reports import (
    FUTURES_PREFIX,
    AccountReport,
    AccountSnapshot,
    BalanceDeltaReport,
    BalanceReport,
    FillReport,
    FillSource,
    FuturesAccountSnapshot,
    IncomeReport,
    MalformedEvent,
    OrderStatusReport,
    PositionReport,
    PositionSnapshot,
    Report,
    Venue,
    WalletBalance,
    WalletSnapshot,
    balance_identity,
    ledger_symbol,
    wire_symbol,
)
from executor.exchange.binance_events import (
    AccountPosition,
    BalanceUpdate,
    ExecutionReport,
    FuturesAccountUpdate,
    FuturesOrderUpdate,
    OrderSnapshot,
    parse_account_balances,
    parse_my_trade,
    parse_order_snapshot,
    parse_user_event,
    parse_user_frame,
)

__all__ = [
    "EXCHANGE_CLOSE_PREFIXES",
    "SPOT",
    "USDM",
    "BinanceSpot",
    "BinanceUsdm",
    "account_update_report",
    "balance_report",
    "balance_update_report",
    "decode_user_payload",
    "exchange_close_kind",
    "execution_report",
    "futures_account_snapshot",
    "futures_order_report",
    "futures_trade_report",
    "income_report",
    "not_found_payload",
    "order_report",
    "spot_account_snapshot",
    "user_event_report",
]

# The exchange's own closing orders (see the module docstring), and what each one is.
_EXCHANGE_CLOSES = (("adl_autoclose", "ADL"), ("autoclose-", "liquidation"))
EXCHANGE_CLOSE_PREFIXES = tuple(prefix for prefix, _ in _EXCHANGE_CLOSES)


# Binance gives every ADL order the same client id: the ledger keys an order by its client
# id, so each one is named ``adl_autoclose-<orderId>`` there (still an ADL by its prefix).
_ADL_ID = "adl_autoclose"


def _ledger_client_id(client_order_id: str, order_id: int) -> str:
    return f"{_ADL_ID}-{order_id}" if client_order_id == _ADL_ID else client_order_id


def exchange_close_kind(client_order_id: str | None) -> str | None:
    """"liquidation" or "ADL" for the exchange's closing order's client id, else None."""
    if client_order_id:
        for prefix, kind in _EXCHANGE_CLOSES:
            if client_order_id.startswith(prefix):
                return kind
    return None


_new = object.__new__
_set = object.__setattr__
_REPORT_FIELDS = ("venue", "symbol", "order_id", "client_order_id", "status", "executed_qty", "cum_quote",
                  "side", "order_type", "time_in_force", "price", "quantity", "event_ms", "created_ms",
                  "reject_reason", "event_client_id", "execution_id", "execution_type", "trade_id",
                  "dedupe_key", "fills", "payload")
_FILL_FIELDS = ("symbol", "trade_id", "order_id", "side", "price", "qty", "quote_qty", "commission",
                "commission_asset", "is_maker", "time_ms", "source", "client_order_id", "venue")
if (tuple(f.name for f in fields(OrderStatusReport)) != _REPORT_FIELDS
        or tuple(f.name for f in fields(FillReport)) != _FILL_FIELDS):  # pragma: no cover - editors' guard
    raise RuntimeError("core.reports changed: update binance_reports' direct builders")


def _fill(symbol: str, trade_id: int, order_id: int, side: Side, price: Decimal, qty: Decimal, quote: Decimal,
          commission: Decimal, asset: str | None, maker: bool, time_ms: int, client_id: str | None,
          venue: Venue) -> FillReport:
    # FillReport(...) without __post_init__: side and venue are members already.
    fill = _new(FillReport)
    _set(fill, "__dict__", {"symbol": symbol, "trade_id": trade_id, "order_id": order_id, "side": side,
                            "price": price, "qty": qty, "quote_qty": quote, "commission": commission,
                            "commission_asset": asset, "is_maker": maker, "time_ms": time_ms,
                            "source": FillSource.STREAM, "client_order_id": client_id, "venue": venue})
    return fill


def _report(values: dict[str, Any]) -> OrderStatusReport:
    rep = _new(OrderStatusReport)
    _set(rep, "__dict__", values)
    return rep


# ---------------------------------------------------------------------- stream events


def execution_report(ev: ExecutionReport) -> OrderStatusReport:
    """A spot executionReport as an order status report (and its trade, if it is one)."""
    cid = ev.orig_client_order_id or ev.client_order_id
    trade_id = ev.trade_id
    fills: tuple[FillReport, ...] = ()
    if trade_id >= 0 and ev.execution_type == "TRADE":
        fills = (_fill(ev.symbol, trade_id, ev.order_id, ev.side, ev.last_price, ev.last_qty, ev.last_quote,
                       ev.commission, ev.commission_asset, ev.is_maker, ev.transaction_time, cid,
                       Venue.SPOT),)
    reject = ev.reject_reason if ev.reject_reason not in ("", "NONE") else ev.expiry_reason
    return _report({
        "venue": Venue.SPOT, "symbol": ev.symbol, "order_id": ev.order_id, "client_order_id": cid,
        "status": ev.status, "executed_qty": ev.cum_qty, "cum_quote": ev.cum_quote, "side": ev.side,
        "order_type": ev.order_type, "time_in_force": ev.time_in_force or None, "price": ev.price,
        "quantity": ev.quantity, "event_ms": ev.event_time, "created_ms": ev.order_time,
        "reject_reason": reject or None, "event_client_id": ev.client_order_id or None,
        "execution_id": ev.execution_id, "execution_type": ev.execution_type,
        "trade_id": trade_id if trade_id >= 0 else None, "dedupe_key": None, "fills": fills,
        "payload": ev.raw})


def futures_order_report(ev: FuturesOrderUpdate) -> OrderStatusReport:
    """A USD-M ORDER_TRADE_UPDATE as an order status report (and its trade, if it is one)."""
    fill = ev.fill  # venue USD-M, the wire symbol; a TRADE or CALCULATED (liquidation) with l > 0
    cid = _ledger_client_id(ev.client_order_id, ev.order_id)
    if fill is not None and cid != ev.client_order_id:
        fill = dataclasses.replace(fill, client_order_id=cid)
    fills: tuple[FillReport, ...] = () if fill is None else (fill,)
    # Futures events carry no execution id; the event's own identity keys its ledger row.
    _, order_id, identity = ev.dedupe_key
    expiry = ev.expiry_reason
    return OrderStatusReport(
        Venue.USDM, ev.symbol, ev.order_id, cid, ev.status, ev.cum_qty, ev.cum_quote,
        side=ev.side, order_type=ev.order_type, time_in_force=ev.time_in_force or None, price=ev.price,
        quantity=ev.quantity, event_ms=ev.event_time, created_ms=None,
        reject_reason=expiry if expiry not in (None, "", "0") else None, event_client_id=None,
        execution_id=None, execution_type=ev.execution_type,
        trade_id=ev.trade_id if ev.trade_id >= 0 else None,
        dedupe_key=f"fut:{ledger_symbol(ev.symbol)}:{order_id}:{identity}", fills=fills, payload=ev.raw)


def balance_report(ev: AccountPosition) -> BalanceReport:
    """outboundAccountPosition: absolute free/locked of the assets that may have changed."""
    return BalanceReport(Venue.SPOT, ev.balances, ev.last_update_time,
                         f"E={ev.event_time},u={ev.last_update_time},{balance_identity(ev.balances)}",
                         "outboundAccountPosition", ev.raw)


def balance_update_report(ev: BalanceUpdate) -> BalanceDeltaReport:
    """balanceUpdate: a deposit, withdrawal or transfer."""
    ref = f"E={ev.event_time},T={ev.clear_time},d={format_decimal(ev.delta)}"
    return BalanceDeltaReport(Venue.SPOT, ev.asset, ev.delta, ev.event_time, ref, "balanceUpdate", ev.raw)


def account_update_report(ev: FuturesAccountUpdate) -> AccountReport:
    """USD-M ACCOUNT_UPDATE: the wallet balances and positions it lists."""
    return AccountReport(
        Venue.USDM, ev.event_time, ev.transaction_time, ev.reason,
        tuple(WalletBalance(b.asset, b.wallet_balance, b.cross_wallet_balance, b.balance_change)
              for b in ev.balances),
        tuple(PositionReport(p.symbol, p.amount, p.entry_price, p.breakeven_price, p.accumulated_realized,
                             p.unrealized_pnl, p.margin_type, p.isolated_wallet, p.position_side)
              for p in ev.positions),
        ev.raw)


_BY_TYPE: dict[type, Callable[[Any], Report]] = {
    ExecutionReport: execution_report,
    FuturesOrderUpdate: futures_order_report,
    AccountPosition: balance_report,
    BalanceUpdate: balance_update_report,
    FuturesAccountUpdate: account_update_report,
}


def user_event_report(event: object) -> Report | None:
    """A parsed user event as a report; None for control events (nothing to record)."""
    translate = _BY_TYPE.get(type(event))
    return None if translate is None else translate(event)


def decode_user_payload(item: object) -> Report | None:
    """A user-stream payload in any form the streams see it (a text frame, a decoded object,
    a parsed event) as a report; ``MalformedEvent`` if it is not well-formed."""
    translate = _BY_TYPE.get(type(item))
    if translate is not None:
        return translate(item)
    if isinstance(item, bytes | str):
        return user_event_report(parse_user_frame(item))
    return user_event_report(parse_user_event(item))


# ---------------------------------------------------------------------- REST


def _snapshot_report(snap: OrderSnapshot) -> OrderStatusReport:
    venue, symbol = Venue.SPOT, snap.symbol
    if symbol.startswith(FUTURES_PREFIX):  # LedgerFuturesGateway's rows name the ledger symbol
        venue, symbol = Venue.USDM, wire_symbol(symbol)
    cid = snap.original_client_id
    if venue is Venue.USDM and cid:
        cid = _ledger_client_id(cid, snap.order_id)
    fills = tuple(FillReport(symbol, f.trade_id, f.order_id, f.side, f.price, f.qty, f.quote_qty,
                             f.commission, f.commission_asset, f.is_maker, f.time_ms, f.source, cid, venue)
                  for f in snap.fills)
    return OrderStatusReport(
        venue, symbol, snap.order_id, cid, snap.status or OrderStatus.NEW, snap.executed_qty, snap.cum_quote,
        side=snap.side, order_type=snap.order_type, time_in_force=snap.time_in_force or None,
        price=snap.price, quantity=snap.orig_qty, event_ms=snap.time_ms, created_ms=snap.time_ms,
        event_client_id=snap.client_order_id if snap.orig_client_order_id else None,
        fills=fills, payload=snap.raw)


def order_report(row: object) -> OrderStatusReport:
    """A REST order answer (placement ACK/RESULT/FULL, GET order, an openOrders row, a
    cancel answer) as a report. ACK means accepted: status NEW, nothing more known."""
    return _snapshot_report(parse_order_snapshot(row))


def spot_account_snapshot(account: object) -> AccountSnapshot:
    """``GET /api/v3/account`` -> every balance, and the account's ``updateTime``."""
    balances = parse_account_balances(account)
    raw_ms = account.get("updateTime") if isinstance(account, Mapping) else None
    update_ms = raw_ms if isinstance(raw_ms, int) and not isinstance(raw_ms, bool) and raw_ms > 0 else None
    return AccountSnapshot(Venue.SPOT, balances, update_ms,
                           f"updateTime={update_ms}" if update_ms is not None else None)


def futures_trade_report(row: Mapping[str, Any], source: FillSource = FillSource.GAP_FILL) -> FillReport:
    """A ``GET /fapi/v1/userTrades`` row as a USD-M fill."""
    price, qty = parse_decimal(row["price"], "userTrades.price"), parse_decimal(row["qty"], "userTrades.qty")
    side = Side(str(row["side"])) if "side" in row else (Side.BUY if row["buyer"] else Side.SELL)
    return FillReport(wire_symbol(str(row["symbol"])), int(row["id"]), int(row["orderId"]), side, price, qty,
                      exact_mul(price, qty), parse_decimal(row["commission"], "userTrades.commission"),
                      row.get("commissionAsset") or None, bool(row["maker"]), int(row["time"]), source,
                      venue=Venue.USDM)


def _time(row: Mapping[str, Any]) -> int:
    raw = row.get("updateTime", 0)
    return int(raw) if isinstance(raw, int | str) and str(raw).lstrip("-").isdigit() else 0


def futures_account_snapshot(account: Mapping[str, Any]) -> FuturesAccountSnapshot:
    """``GET /fapi/v2/account`` -> wallet balances and positions, each with its ``updateTime``.
    Money goes through the strict parser (a float is an error, never a rounded value)."""
    assets = list(account.get("assets", []))
    positions = list(account.get("positions", []))
    wallets = tuple(WalletSnapshot(str(a["asset"]), parse_decimal(a["walletBalance"], "walletBalance"),
                                   _time(a)) for a in assets)
    rows = tuple(PositionSnapshot(str(p["symbol"]), parse_decimal(p["positionAmt"], "positionAmt"),
                                  parse_decimal(p.get("entryPrice", "0"), "entryPrice"),
                                  parse_decimal(p.get("unrealizedProfit", "0"), "unrealizedProfit"), _time(p))
                 for p in positions)
    open_rows = tuple(p for p in positions if parse_decimal(p.get("positionAmt", "0"), "positionAmt"))
    return FuturesAccountSnapshot(Venue.USDM, "GET /fapi/v2/account", wallets, rows, tuple(assets), open_rows)


def income_report(row: Mapping[str, Any]) -> IncomeReport:
    """A ``GET /fapi/v1/income`` row."""
    return IncomeReport(Venue.USDM, int(row["tranId"]), str(row.get("symbol") or ""), str(row["incomeType"]),
                        parse_decimal(row["income"], "income.income"), str(row["asset"]), int(row["time"]),
                        str(row.get("tradeId") or "") or None, str(row.get("info") or "")[:64] or None)


def not_found_payload(client_order_id: str) -> dict[str, Any]:
    """Binance's -2013 answer for an order it does not know, as the ledger records it."""
    return {"code": -2013, "msg": "Order does not exist.", "origClientOrderId": client_order_id}


class _BinanceStreams:
    """What both markets' translators share: user-stream payloads (either market's events
    are told apart by their type) and Binance's -2013 answer."""

    @staticmethod
    def user_event(item: object) -> Report | None:
        return decode_user_payload(item)

    @staticmethod
    def absent(client_order_id: str) -> Mapping[str, Any]:
        return not_found_payload(client_order_id)


class BinanceSpot(_BinanceStreams):
    """The spot adapter's ``core.reports.Translator``."""

    venue = Venue.SPOT

    @staticmethod
    def order(row: object) -> OrderStatusReport:
        return order_report(row)

    @staticmethod
    def trade(row: object) -> FillReport:
        return parse_my_trade(row)

    @staticmethod
    def account(row: object) -> AccountSnapshot:
        return spot_account_snapshot(row)


class BinanceUsdm(_BinanceStreams):
    """The USD-M adapter's translations for the futures gap fill and account check."""

    venue = Venue.USDM

    @staticmethod
    def order(row: object) -> OrderStatusReport:
        rep = order_report(row)
        if rep.venue is Venue.USDM:
            return rep
        # A /fapi order row names the wire symbol: it is a USD-M order all the same.
        return OrderStatusReport(**{**{f.name: getattr(rep, f.name) for f in fields(rep)},
                                    "venue": Venue.USDM,
                                    "fills": tuple(_usdm_fill(f) for f in rep.fills)})

    @staticmethod
    def trade(row: object) -> FillReport:
        if not isinstance(row, Mapping):
            raise MalformedEvent(f"userTrades: expected an object, got {type(row).__name__}")
        return futures_trade_report(row)

    @staticmethod
    def account(row: object) -> FuturesAccountSnapshot:
        if not isinstance(row, Mapping):
            raise MalformedEvent(f"account: expected an object, got {type(row).__name__}")
        return futures_account_snapshot(row)

    @staticmethod
    def income(row: Mapping[str, Any]) -> IncomeReport:
        return income_report(row)


def _usdm_fill(f: FillReport) -> FillReport:
    return FillReport(f.symbol, f.trade_id, f.order_id, f.side, f.price, f.qty, f.quote_qty, f.commission,
                      f.commission_asset, f.is_maker, f.time_ms, f.source, f.client_order_id, Venue.USDM)


SPOT = BinanceSpot()
USDM = BinanceUsdm()
