"""The Binance adapter's translation: every documented payload the reconciler needs becomes the
venue-neutral report it should (``executor.exchange.binance_reports``), the executionReport
fast path gives exactly the strict path's report, and control events give nothing."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.core.orders import OrderStatus, Side
from executor.core.reports import (
    AccountReport,
    AssetBalance,
    BalanceDeltaReport,
    BalanceReport,
    FillReport,
    FillSource,
    MalformedEvent,
    OrderStatusReport,
    PositionReport,
    Venue,
    WalletBalance,
    balance_identity,
)
from executor.exchange.binance_events import parse_user_event, parse_user_event_strict
from executor.exchange.binance_reports import (
    SPOT,
    USDM,
    decode_user_payload,
    futures_account_snapshot,
    futures_trade_report,
    income_report,
    order_report,
    spot_account_snapshot,
    user_event_report,
)
from tests.fixtures import load, load_futures

D = Decimal


@pytest.fixture
def fx() -> dict[str, Any]:
    return load()


def test_execution_report_new(fx: dict[str, Any]) -> None:
    rep = decode_user_payload(fx["executionReport_NEW"])
    assert isinstance(rep, OrderStatusReport)
    ev = fx["executionReport_NEW"]["event"]
    assert (rep.venue, rep.symbol, rep.order_id, rep.client_order_id) == (
        Venue.SPOT, ev["s"], ev["i"], ev["c"])
    assert rep.status is OrderStatus.NEW and rep.side is Side(ev["S"]) and rep.fills == ()
    assert (rep.executed_qty, rep.cum_quote) == (D(ev["z"]), D(ev["Z"]))
    assert (rep.order_type, rep.time_in_force, rep.price, rep.quantity) == (
        ev["o"], ev["f"], D(ev["p"]), D(ev["q"]))
    assert (rep.event_ms, rep.created_ms, rep.execution_id, rep.execution_type) == (
        ev["E"], ev["O"], ev["I"], "NEW")
    assert rep.trade_id is None and rep.dedupe_key is None and rep.reject_reason is None
    assert rep.event_client_id == ev["c"] and rep.payload is ev


def test_execution_report_trade_carries_its_fill(fx: dict[str, Any]) -> None:
    ev = fx["executionReport_TRADE_partial"]["event"]
    rep = decode_user_payload(fx["executionReport_TRADE_partial"])
    assert isinstance(rep, OrderStatusReport) and rep.status is OrderStatus.PARTIALLY_FILLED
    assert rep.trade_id == ev["t"]
    assert rep.fills == (FillReport("BTCUSDT", 5123456789, 4293153, Side.BUY, D("60000"), D("0.0008"),
                                    D("48"), D("0.0000008"), "BTC", True, 1785571260100, FillSource.STREAM,
                                    "bot-20260801-0001", Venue.SPOT),)
    assert rep.fills[0].key == (Venue.SPOT, "BTCUSDT", 5123456789)


def test_a_cancel_names_the_order_not_the_cancel_request(fx: dict[str, Any]) -> None:
    rep = decode_user_payload(fx["executionReport_CANCELED"])
    assert isinstance(rep, OrderStatusReport) and rep.status is OrderStatus.CANCELED
    assert rep.client_order_id == "bot-20260801-0002"      # C: the order
    assert rep.event_client_id == "cancel-bot-0002"        # c: the cancel request
    assert rep.fills == () and rep.trade_id is None


def test_balance_reports(fx: dict[str, Any]) -> None:
    pos = decode_user_payload(fx["outboundAccountPosition"])
    eth = AssetBalance("ETH", D(10000), D(0))
    assert pos == BalanceReport(Venue.SPOT, (eth,), 1564034571073,
                                f"E=1564034571105,u=1564034571073,{balance_identity([eth])}",
                                "outboundAccountPosition")
    upd = decode_user_payload(fx["balanceUpdate"])
    assert upd == BalanceDeltaReport(Venue.SPOT, "BTC", D(100), 1573200697110,
                                     "E=1573200697110,T=1573200697068,d=100", "balanceUpdate")


def test_futures_order_update(fx: dict[str, Any]) -> None:
    rep = decode_user_payload(fx["ORDER_TRADE_UPDATE"])
    assert isinstance(rep, OrderStatusReport)
    assert (rep.venue, rep.symbol, rep.ledger_symbol) == (Venue.USDM, "BTCUSDT", "UM:BTCUSDT")
    assert rep.status is OrderStatus.FILLED and rep.side is Side.SELL
    assert (rep.executed_qty, rep.cum_quote) == (D("0.01"), D("601"))  # avg price x cum qty
    assert rep.execution_id is None and rep.dedupe_key is not None
    assert rep.dedupe_key.startswith("fut:UM:BTCUSDT:")
    assert rep.reject_reason is None  # "er": "0" is no reason
    (fill,) = rep.fills
    assert fill.key == (Venue.USDM, "BTCUSDT", 712345678)
    assert (fill.qty, fill.quote_qty, fill.commission, fill.is_maker) == (
        D("0.01"), D("601"), D("0.1202"), True)


def test_futures_account_update(fx: dict[str, Any]) -> None:
    rep = decode_user_payload(fx["ACCOUNT_UPDATE"])
    assert rep == AccountReport(
        Venue.USDM, 1785571320210, 1785571320200, "ORDER",
        (WalletBalance("USDT", D("1000.88"), D("1000.88"), D(0)),),
        (PositionReport("BTCUSDT", D(0), D(0), D(0), D(1), D(0), "cross", D(0), "BOTH"),))


def test_control_events_carry_nothing_to_record(fx: dict[str, Any]) -> None:
    assert decode_user_payload(fx["listenKeyExpired"]) is None
    assert decode_user_payload({"e": "eventStreamTerminated", "E": 1}) is None
    assert decode_user_payload({"e": "somethingNew", "E": 1}) is None


def test_frames_and_parsed_events_give_the_same_report(fx: dict[str, Any]) -> None:
    for name in ("executionReport_TRADE_fill", "outboundAccountPosition", "balanceUpdate",
                 "ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"):
        want = decode_user_payload(fx[name])
        assert decode_user_payload(orjson.dumps(fx[name])) == want
        assert decode_user_payload(orjson.dumps(fx[name]).decode()) == want
        assert user_event_report(parse_user_event(fx[name])) == want


def test_malformed_payloads_raise_malformed_event(fx: dict[str, Any]) -> None:
    bad = fx["executionReport_NEW"]
    bad["event"]["z"] = 0.5
    with pytest.raises(MalformedEvent, match=r"executionReport\.z"):
        decode_user_payload(bad)
    with pytest.raises(MalformedEvent):
        decode_user_payload(b"{not json")


def test_order_answers(fx: dict[str, Any]) -> None:
    full = order_report(fx["order_response_FULL"])
    assert (full.venue, full.symbol, full.order_id, full.client_order_id) == (
        Venue.SPOT, "BTCUSDT", 28, "6gCrw2kRUAF9CvJDGP16IP")
    assert full.status is OrderStatus.FILLED and full.executed_qty == D(10)
    assert [f.trade_id for f in full.fills] == [r["tradeId"]
                                                for r in fx["order_response_FULL"]["fills"]]
    assert all(f.source is FillSource.ORDER_RESPONSE and f.client_order_id == full.client_order_id
               and f.venue is Venue.SPOT for f in full.fills)
    ack = order_report(fx["order_response_ACK"])
    assert ack.status is OrderStatus.NEW and ack.side is None and ack.fills == ()  # accepted, nothing more
    # A row as LedgerFuturesGateway hands it over names the ledger symbol: a USD-M order.
    fut = order_report(fx["order_response_ACK"] | {"symbol": "UM:BTCUSDT"})
    assert (fut.venue, fut.symbol, fut.ledger_symbol) == (Venue.USDM, "BTCUSDT", "UM:BTCUSDT")
    # The USD-M translator reads a /fapi row (wire symbol, cumQuote) as a USD-M order.
    row = {"symbol": "BTCUSDT", "orderId": 7, "clientOrderId": "bx-f-o1", "status": "FILLED", "side": "SELL",
           "type": "MARKET", "timeInForce": "GTC", "price": "0", "origQty": "0.004", "executedQty": "0.004",
           "cumQuote": "240.4", "avgPrice": "60100", "updateTime": 5}
    rep = USDM.order(row)
    assert (rep.venue, rep.ledger_symbol, rep.cum_quote, rep.event_ms) == (
        Venue.USDM, "UM:BTCUSDT", D("240.4"), 5)


def test_cancel_answer(fx: dict[str, Any]) -> None:
    row = {"symbol": "BTCUSDT", "origClientOrderId": "bx-a-o1", "orderId": 4, "orderListId": -1,
           "clientOrderId": "bx-a-c1", "transactTime": 9, "price": "1", "origQty": "1", "executedQty": "0",
           "cummulativeQuoteQty": "0", "status": "CANCELED", "timeInForce": "GTC", "type": "LIMIT",
           "side": "BUY"}
    rep = SPOT.order(row)
    assert (rep.client_order_id, rep.event_client_id, rep.status) == (
        "bx-a-o1", "bx-a-c1", OrderStatus.CANCELED)


def test_trade_rows_are_separate_namespaces_per_venue() -> None:
    spot = SPOT.trade({"symbol": "BTCUSDT", "id": 1, "orderId": 2, "orderListId": -1, "price": "60000",
                       "qty": "0.1", "quoteQty": "6000", "commission": "0", "commissionAsset": "BTC",
                       "time": 3, "isBuyer": True, "isMaker": False, "isBestMatch": True})
    fut = futures_trade_report({"symbol": "BTCUSDT", "id": 1, "orderId": 2, "side": "SELL", "price": "60000",
                                "qty": "0.1", "realizedPnl": "0", "marginAsset": "USDT", "quoteQty": "6000",
                                "commission": "2.4", "commissionAsset": "USDT", "time": 3,
                                "positionSide": "BOTH", "buyer": False, "maker": False})
    assert spot.key == (Venue.SPOT, "BTCUSDT", 1) and fut.key == (Venue.USDM, "BTCUSDT", 1)
    assert spot.key != fut.key
    assert fut.side is Side.SELL and fut.quote_qty == D(6000) and fut.source is FillSource.GAP_FILL


def test_accounts(fx: dict[str, Any]) -> None:
    snap = spot_account_snapshot(fx["account_response"])
    assert snap.venue is Venue.SPOT and snap.update_ms == fx["account_response"]["updateTime"]
    assert snap.ref == f"updateTime={snap.update_ms}"
    assert {b.asset for b in snap.balances} == {b["asset"] for b in fx["account_response"]["balances"]}
    fut = futures_account_snapshot(
        {"assets": [{"asset": "USDT", "walletBalance": "100.5", "updateTime": 7}],
         "positions": [{"symbol": "BTCUSDT", "positionAmt": "-0.004", "entryPrice": "60000",
                        "unrealizedProfit": "-1.2", "updateTime": 8},
                       {"symbol": "ETHUSDT", "positionAmt": "0", "updateTime": 0}]})
    assert [(w.asset, w.wallet_balance, w.update_ms) for w in fut.wallets] == [("USDT", D("100.5"), 7)]
    assert [(p.symbol, p.amount, p.update_ms) for p in fut.positions] == [("BTCUSDT", D("-0.004"), 8),
                                                                          ("ETHUSDT", D(0), 0)]
    assert [p["symbol"] for p in fut.raw_open_positions] == ["BTCUSDT"]
    with pytest.raises(ValueError, match="float"):
        futures_account_snapshot({"assets": [{"asset": "USDT", "walletBalance": 0.1, "updateTime": 1}]})


def test_income_row() -> None:
    rep = income_report({"symbol": "BTCUSDT", "incomeType": "FUNDING_FEE", "income": "-0.0123",
                         "asset": "USDT", "info": "FUNDING_FEE", "time": 11, "tranId": 99, "tradeId": ""})
    assert (rep.venue, rep.tran_id, rep.symbol, rep.amount, rep.trade_id) == (Venue.USDM, 99, "BTCUSDT",
                                                                              D("-0.0123"), None)
    transfer = income_report({"symbol": "", "incomeType": "TRANSFER", "income": "5", "asset": "USDT",
                              "time": 12, "tranId": 100})
    assert transfer.symbol == "" and transfer.info is None


def test_futures_fixture_symbols_read_as_usdm_ledger_symbols() -> None:
    symbol = load_futures()["bookTicker"]["s"]
    rep = order_report({"symbol": f"UM:{symbol}", "orderId": 1, "clientOrderId": "x"})
    assert rep.venue is Venue.USDM and rep.ledger_symbol == f"UM:{symbol}"


money = st.decimals(min_value=0, max_value=10**6, places=8, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(x=st.sampled_from(["NEW", "TRADE", "CANCELED", "EXPIRED", "REPLACED", "TRADE_PREVENTION"]),
       status=st.sampled_from(["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED", "REJECTED"]),
       trade_id=st.integers(-1, 2**40), last=money, cum=money, quote=money, cancel=st.booleans(),
       reject=st.sampled_from(["NONE", "", "INSUFFICIENT_BALANCE"]), expiry=st.sampled_from([None, "STP"]))
def test_fast_and_strict_paths_give_the_same_report(x: str, status: str, trade_id: int, last: D, cum: D,
                                                    quote: D, cancel: bool, reject: str,
                                                    expiry: str | None) -> None:
    ev = load()["executionReport_TRADE_partial"]
    e = ev["event"]
    e.update({"x": x, "X": status, "t": trade_id, "l": f"{last:f}", "z": f"{cum:f}", "Z": f"{quote:f}",
              "r": reject, "C": "bot-own-1" if cancel else "", "c": "cancel-1" if cancel else e["c"]})
    if expiry is not None:
        e["eR"] = expiry
    fast = decode_user_payload(ev)
    strict = user_event_report(parse_user_event_strict(ev))
    assert isinstance(fast, OrderStatusReport) and fast == strict
    assert dataclasses.asdict(fast) == dataclasses.asdict(strict)
    assert fast.executed_qty == cum and fast.cum_quote == quote
    assert fast.client_order_id == ("bot-own-1" if cancel else e["c"])
    assert bool(fast.fills) == (x == "TRADE" and trade_id >= 0)
    assert fast.trade_id == (trade_id if trade_id >= 0 else None)
    want_reject = reject if reject not in ("", "NONE") else expiry
    assert fast.reject_reason == want_reject
