import contextlib
import copy
import json
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.core.orders import Observation, OrderStatus, Side
from executor.core.reports import Venue
from executor.exchange.binance_events import (
    AccountPosition,
    AssetBalance,
    BalanceUpdate,
    EventStreamTerminated,
    ExecutionReport,
    Fill,
    FillSource,
    FuturesAccountUpdate,
    FuturesOrderUpdate,
    ListenKeyExpired,
    MalformedEvent,
    UnknownEvent,
    parse_account_balances,
    parse_my_trade,
    parse_order_snapshot,
    parse_user_event,
    parse_user_frame,
)

from .conftest import load_fixtures

D = Decimal
USER_EVENT_FIXTURES = ["executionReport_NEW", "executionReport_TRADE_partial", "executionReport_TRADE_fill",
                       "executionReport_CANCELED", "outboundAccountPosition", "balanceUpdate",
                       "listenKeyExpired", "ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"]


def test_execution_report_new(fx: dict[str, Any]) -> None:
    ev = parse_user_event(fx["executionReport_NEW"])
    assert isinstance(ev, ExecutionReport)
    assert ev.subscription_id == 0
    assert (ev.symbol, ev.client_order_id, ev.order_id, ev.side, ev.order_type) == (
        "BTCUSDT", "bot-20260801-0001", 4293153, Side.BUY, "LIMIT")
    assert ev.quantity == D("0.002") and ev.price == D("60000") and ev.status is OrderStatus.NEW
    assert ev.execution_type == "NEW" and ev.trade_id == -1 and ev.fill is None
    assert ev.commission_asset is None and ev.on_book and ev.working_time == 1785571200000
    assert ev.original_client_id == "bot-20260801-0001"
    assert ev.dedupe_key == ("BTCUSDT", 4293153, 8641984)
    assert ev.observation() == Observation(OrderStatus.NEW, D(0), D(0), 4293153)
    assert ev.raw["e"] == "executionReport"


def test_execution_report_trades_give_fills(fx: dict[str, Any]) -> None:
    part = parse_user_event(fx["executionReport_TRADE_partial"])
    full = parse_user_event(fx["executionReport_TRADE_fill"])
    assert isinstance(part, ExecutionReport) and isinstance(full, ExecutionReport)
    assert part.fill == Fill("BTCUSDT", 5123456789, 4293153, Side.BUY, D("60000"), D("0.0008"), D("48"),
                             D("0.0000008"), "BTC", True, 1785571260100, FillSource.STREAM,
                             "bot-20260801-0001")
    assert full.fill is not None and full.fill.key == (Venue.SPOT, "BTCUSDT", 5123456801)
    assert full.observation() == Observation(OrderStatus.FILLED, D("0.002"), D("120"), 4293153)
    # cumulative z/Z equal the running sums of l/Y
    assert part.last_qty + full.last_qty == full.cum_qty
    assert part.last_quote + full.last_quote == full.cum_quote


def test_cancel_links_to_the_original_client_id(fx: dict[str, Any]) -> None:
    ev = parse_user_event(fx["executionReport_CANCELED"])
    assert isinstance(ev, ExecutionReport)
    assert ev.client_order_id == "cancel-bot-0002"  # the cancel request's id
    assert ev.original_client_id == "bot-20260801-0002"
    assert ev.status is OrderStatus.CANCELED and ev.fill is None


def test_account_events(fx: dict[str, Any]) -> None:
    pos = parse_user_event(fx["outboundAccountPosition"])
    assert pos == AccountPosition(1564034571105, 1564034571073, (AssetBalance("ETH", D(10000), D(0)),),
                                  subscription_id=0)
    bal = parse_user_event(fx["balanceUpdate"])
    assert isinstance(bal, BalanceUpdate) and bal.delta == D(100) and bal.asset == "BTC"
    assert bal.clear_time == 1573200697068 and bal.subscription_id == 0


def test_listen_key_expired_hides_the_key(fx: dict[str, Any]) -> None:
    ev = parse_user_event(fx["listenKeyExpired"])
    assert isinstance(ev, ListenKeyExpired) and ev.subscription_id is None
    assert ev.listen_key.startswith("OfYGbUzi") and "OfYGbUzi" not in repr(ev)


def test_event_stream_terminated_and_unknown() -> None:
    ev = parse_user_event({"subscriptionId": 3, "event": {"e": "eventStreamTerminated", "E": 1}})
    assert ev == EventStreamTerminated(1, subscription_id=3)
    unknown = parse_user_event({"e": "listStatus", "E": 5, "s": "BTCUSDT"})
    assert isinstance(unknown, UnknownEvent)
    assert unknown.event_type == "listStatus" and unknown.event_time == 5
    assert unknown.raw["s"] == "BTCUSDT"


def test_futures_order_update(fx: dict[str, Any]) -> None:
    ev = parse_user_event(fx["ORDER_TRADE_UPDATE"])
    assert isinstance(ev, FuturesOrderUpdate)
    assert ev.status is OrderStatus.FILLED and ev.side is Side.SELL and ev.cum_qty == D("0.01")
    assert ev.cum_quote == D("601") and ev.realized_profit == D(1)
    fill = ev.fill
    assert fill is not None and fill.key == (Venue.USDM, "BTCUSDT", 712345678) and fill.quote_qty == D("601")
    assert fill.commission == D("0.1202") and fill.commission_asset == "USDT" and fill.is_maker
    assert ev.observation().status is OrderStatus.FILLED
    assert ev.dedupe_key[:2] == ("BTCUSDT", 8886774)


def test_futures_account_update(fx: dict[str, Any]) -> None:
    ev = parse_user_event(fx["ACCOUNT_UPDATE"])
    assert isinstance(ev, FuturesAccountUpdate) and ev.reason == "ORDER"
    assert ev.balances[0].asset == "USDT" and ev.balances[0].wallet_balance == D("1000.88")
    assert ev.positions[0].symbol == "BTCUSDT" and ev.positions[0].accumulated_realized == D(1)
    # funding-fee updates are abbreviated: optional fields may be absent
    del fx["ACCOUNT_UPDATE"]["a"]["P"]
    del fx["ACCOUNT_UPDATE"]["a"]["B"][0]["cw"]
    short = parse_user_event(fx["ACCOUNT_UPDATE"])
    assert isinstance(short, FuturesAccountUpdate) and short.positions == ()
    assert short.balances[0].cross_wallet_balance is None


def test_frames_bytes_and_str(fx: dict[str, Any]) -> None:
    for name in USER_EVENT_FIXTURES:
        as_bytes = parse_user_frame(orjson.dumps(fx[name]))
        as_str = parse_user_frame(json.dumps(fx[name]))
        assert as_bytes == as_str == parse_user_event(fx[name])


@pytest.mark.parametrize(("frame", "message"), [
    (b"{not json", "frame: not valid JSON"),
    (b"[1,2]", "event: expected an object, got list"),
    (b'{"E": 1}', "event.e: missing"),
    (b'{"subscriptionId": "x", "event": {}}', "frame.subscriptionId: expected an integer"),
    (b'{"subscriptionId": 1, "event": 5}', "event: expected an object, got int"),
    (b'{"e": "balanceUpdate", "E": 1, "a": "BTC", "d": 1.5, "T": 1}', "balanceUpdate.d: expected a decimal"),
    (b'{"e": "balanceUpdate", "E": 1, "a": "BTC", "d": "NaN", "T": 1}',
     "balanceUpdate.d: not a plain decimal"),
])
def test_malformed_frames_name_the_field(frame: bytes, message: str) -> None:
    with pytest.raises(MalformedEvent) as exc:
        parse_user_frame(frame)
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_malformed_execution_report_names_the_field(fx: dict[str, Any]) -> None:
    event = fx["executionReport_TRADE_fill"]["event"]
    event["z"] = 0.002
    with pytest.raises(MalformedEvent, match=r"^executionReport\.z: expected a decimal string, got float"):
        parse_user_event(event)
    event["z"] = "0.002"
    event["X"] = "DONE"
    with pytest.raises(MalformedEvent, match=r"^executionReport\.X: unknown order status 'DONE'"):
        parse_user_event(event)
    del event["I"]
    event["X"] = "FILLED"
    with pytest.raises(MalformedEvent, match=r"^executionReport\.I: missing"):
        parse_user_event(event)


# --- REST shapes ----------------------------------------------------------------------


def test_order_response_full(fx: dict[str, Any]) -> None:
    snap = parse_order_snapshot(fx["order_response_FULL"])
    assert snap.status is OrderStatus.FILLED and snap.side is Side.SELL and snap.order_type == "MARKET"
    assert snap.executed_qty == D(10) and snap.time_ms == 1507725176595
    assert [f.trade_id for f in snap.fills] == [56, 57, 58, 59, 60]
    first = snap.fills[0]
    assert first == Fill("BTCUSDT", 56, 28, Side.SELL, D(4000), D(1), D(4000), D(4), "USDT", False,
                         1507725176595, FillSource.ORDER_RESPONSE, "6gCrw2kRUAF9CvJDGP16IP")
    assert sum(f.qty for f in snap.fills) == snap.executed_qty
    assert snap.observation() == Observation(OrderStatus.FILLED, D(10), D(10), 28)


def test_order_response_ack(fx: dict[str, Any]) -> None:
    snap = parse_order_snapshot(fx["order_response_ACK"])
    assert snap.status is None and snap.fills == () and snap.order_id == 28
    assert snap.observation() == Observation(OrderStatus.NEW, D(0), D(0), 28)


def test_get_order_and_cancel_response() -> None:
    query = {"symbol": "BTCUSDT", "orderId": 5, "orderListId": -1, "clientOrderId": "bx-abc-o1",
             "price": "60000.00", "origQty": "0.002", "executedQty": "0.001", "cummulativeQuoteQty": "60",
             "status": "PARTIALLY_FILLED", "timeInForce": "GTC", "type": "LIMIT", "side": "BUY",
             "stopPrice": "0", "icebergQty": "0", "time": 10, "updateTime": 20, "isWorking": True,
             "workingTime": 10, "origQuoteOrderQty": "0", "selfTradePreventionMode": "NONE"}
    snap = parse_order_snapshot(query)
    assert snap.time_ms == 20 and snap.status is OrderStatus.PARTIALLY_FILLED and snap.cum_quote == 60
    assert snap.original_client_id == "bx-abc-o1"
    cancel = query | {"origClientOrderId": "bx-abc-o1", "clientOrderId": "bx-abc-c1", "status": "CANCELED",
                      "transactTime": 30}
    del cancel["time"], cancel["updateTime"]
    snap = parse_order_snapshot(cancel)
    assert snap.client_order_id == "bx-abc-c1" and snap.original_client_id == "bx-abc-o1"
    assert snap.time_ms == 30


def test_my_trades_row() -> None:
    row = {"symbol": "BNBBTC", "id": 28457, "orderId": 100234, "orderListId": -1, "price": "4.00000100",
           "qty": "12.00000000", "quoteQty": "48.000012", "commission": "10.10000000",
           "commissionAsset": "BNB", "time": 1499865549590, "isBuyer": True, "isMaker": False,
           "isBestMatch": True}
    fill = parse_my_trade(row)
    assert fill == Fill("BNBBTC", 28457, 100234, Side.BUY, D("4.000001"), D(12), D("48.000012"), D("10.1"),
                        "BNB", False, 1499865549590, FillSource.GAP_FILL)
    with pytest.raises(MalformedEvent, match=r"^myTrades\.isBuyer: expected true/false"):
        parse_my_trade(row | {"isBuyer": "true"})


def test_account_balances(fx: dict[str, Any]) -> None:
    balances = parse_account_balances(fx["account_response"])
    assert balances[0] == AssetBalance("BTC", D("4723846.89208129"), D(0))
    with pytest.raises(MalformedEvent, match=r"^account\.balances\[1\]\.free"):
        fx["account_response"]["balances"][1]["free"] = None
        parse_account_balances(fx["account_response"])


# --- robustness: nothing but MalformedEvent escapes -----------------------------------

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                      st.text(max_size=12),
                      st.sampled_from(["NaN", "1E5", "-1", "BUY", "FILLED", "TRADE", ""]))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=8)
ALL = load_fixtures()
PARSEABLE = [*USER_EVENT_FIXTURES, "order_response_FULL", "order_response_ACK", "account_response"]


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _parse_any(name: str, obj: Any) -> object:
    if name.startswith("order_response"):
        return parse_order_snapshot(obj)
    if name == "account_response":
        return parse_account_balances(obj)
    return parse_user_event(obj)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_fixtures_raise_only_malformed_event(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(PARSEABLE))
    obj = copy.deepcopy(ALL[name])
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(obj)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()):
            parent[path[-1]] = data.draw(json_value)
        elif isinstance(parent, dict):
            del parent[path[-1]]
    try:
        _parse_any(name, obj)
    except MalformedEvent as exc:
        assert "\n" not in str(exc)


@given(json_value)
def test_arbitrary_json_raises_only_malformed_event(obj: Any) -> None:
    for parse in (parse_user_event, parse_order_snapshot, parse_my_trade, parse_account_balances):
        with contextlib.suppress(MalformedEvent):
            parse(obj)


@given(st.one_of(st.binary(max_size=64), st.text(max_size=64)))
def test_arbitrary_frames_raise_only_malformed_event(frame: bytes | str) -> None:
    with contextlib.suppress(MalformedEvent):
        parse_user_frame(frame)


def test_futures_order_query_uses_cum_quote() -> None:
    row = {"symbol": "BTCUSDT", "orderId": 8886774, "clientOrderId": "bx-abc-o3", "price": "60100",
           "origQty": "0.010", "executedQty": "0.010", "cumQuote": "601.00", "avgPrice": "60100",
           "status": "FILLED", "timeInForce": "GTC", "type": "LIMIT", "side": "SELL", "updateTime": 7}
    snap = parse_order_snapshot(row)
    assert snap.cum_quote == D(601) and snap.status is OrderStatus.FILLED and snap.order_list_id == -1
