from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executor.core.filters import SymbolRules
from executor.core.ids import ClientIdFactory
from executor.core.intents import (
    Cancel,
    OrderRejected,
    OrderRequest,
    OrderType,
    Place,
    Replace,
    TimeInForce,
    build_order_request,
)
from executor.core.orders import Side

from .conftest import load_fixtures

D = Decimal
RULES = SymbolRules.from_exchange_info(load_fixtures()["exchangeInfo_symbol_BTCUSDT"])
IDS = ClientIdFactory("bx", "abc")


def test_limit_order_is_rounded_passively_and_formatted() -> None:
    place = Place("BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.0012345"), D("60000.129"), reason="basis 12bps")
    req = build_order_request(place, RULES, "bx-abc-o1")
    assert req == OrderRequest("bx-abc-o1", "BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.00123"), D("60000.12"),
                               TimeInForce.GTC, "basis 12bps", D("0.0012345"), D("60000.129"))
    assert req.params() == {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.00123",
                            "price": "60000.12", "timeInForce": "GTC", "newClientOrderId": "bx-abc-o1"}


def test_post_only_becomes_limit_maker_without_tif() -> None:
    place = Place("BTCUSDT", Side.SELL, OrderType.LIMIT, D("0.001"), D("60000.121"), post_only=True)
    req = build_order_request(place, RULES, IDS.next_order_id())
    assert req.type is OrderType.LIMIT_MAKER and req.time_in_force is None and req.price == D("60000.13")
    assert "timeInForce" not in req.params()


def test_ioc_and_market() -> None:
    ioc = build_order_request(Place("BTCUSDT", "BUY", "LIMIT", D("0.001"), D(60000), tif="IOC"), RULES, "x")
    assert ioc.params()["timeInForce"] == "IOC" and ioc.side is Side.BUY
    market = build_order_request(Place("BTCUSDT", Side.SELL, OrderType.MARKET, D("0.001")), RULES, "y",
                                 ref_price=D(60000))
    assert market.params() == {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.001",
                               "newClientOrderId": "y"}


def test_rejections_list_binance_filters() -> None:
    tiny = Place("BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.00001"), D(60000))
    with pytest.raises(OrderRejected) as exc:
        build_order_request(tiny, RULES, "bx-abc-o2")
    assert [v.filter for v in exc.value.violations] == ["NOTIONAL"]
    assert "NOTIONAL" in str(exc.value) and exc.value.place is tiny
    dust = Place("BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.000001"), D(60000))  # rounds to 0
    with pytest.raises(OrderRejected, match="LOT_SIZE"):
        build_order_request(dust, RULES, "bx-abc-o3")
    with pytest.raises(OrderRejected, match="MAX_NUM_ORDERS"):
        build_order_request(Place("BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.001"), D(60000)), RULES, "z",
                            open_orders=200)


def test_bad_requests() -> None:
    ok = Place("BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.001"), D(60000))
    with pytest.raises(ValueError, match="36"):
        build_order_request(ok, RULES, "x" * 37)
    with pytest.raises(ValueError, match="ETHUSDT"):
        build_order_request(Place("ETHUSDT", Side.BUY, OrderType.LIMIT, D(1), D(1)), RULES, "x")


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"qty": 0.001}, "qty"),
    ({"qty": D(0)}, "qty"),
    ({"price": None}, "price"),
    ({"price": D(-1)}, "price"),
    ({"type": "STOP"}, "STOP"),
    ({"side": "buy"}, "buy"),
    ({"type": OrderType.MARKET}, "MARKET"),
    ({"type": OrderType.LIMIT_MAKER, "tif": TimeInForce.IOC}, "LIMIT_MAKER"),
    ({"post_only": True, "tif": TimeInForce.IOC}, "post_only"),
])
def test_place_validates(kwargs: dict[str, Any], needle: str) -> None:
    base: dict[str, Any] = {"symbol": "BTCUSDT", "side": Side.BUY, "type": OrderType.LIMIT, "qty": D("0.001"),
                            "price": D(60000)}
    with pytest.raises(ValueError, match=needle):
        Place(**(base | kwargs))


def test_cancel_and_replace_are_plain_values() -> None:
    place = Place("BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.001"), D(60000))
    assert Replace("bx-abc-o1", place, "requote").place is place
    assert Cancel("bx-abc-o1", "stale") == Cancel("bx-abc-o1", "stale")


@given(qty=st.decimals(min_value=D("0.0001"), max_value=D(80), places=10),
       price=st.decimals(min_value=D(1000), max_value=D(200000), places=6),
       side=st.sampled_from([Side.BUY, Side.SELL]), post_only=st.booleans())
def test_built_requests_always_pass_the_filters(qty: Decimal, price: Decimal, side: Side,
                                                post_only: bool) -> None:
    place = Place("BTCUSDT", side, OrderType.LIMIT, qty, price, post_only=post_only)
    try:
        req = build_order_request(place, RULES, "bx-abc-o9")
    except OrderRejected as exc:
        assert {v.filter for v in exc.violations} <= {"NOTIONAL"}
        return
    assert req.price is not None
    assert RULES.check(side, req.type.value, req.price, req.quantity) == []
    assert req.quantity <= qty and (req.price <= price if side is Side.BUY else req.price >= price)
    assert D(req.params()["quantity"]) == req.quantity and "E" not in req.params()["price"]
