"""The strategy context and the parameter reader."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from executor.core.orders import OrderStatus, Side
from executor.market.state import MarketState
from executor.strategy.base import ParamError, Params, Strategy, StrategyContext
from tests.strategy.fakes import FakeClock, World, make_rules

D = Decimal


def test_open_orders_filters_by_symbol_side_and_finality() -> None:
    w = World()
    a = w.order("BTCUSDT", Side.BUY)
    b = w.order("BTCUSDT", Side.SELL, status=OrderStatus.PENDING_SEND)
    c = w.order("ETHUSDT", Side.BUY, status=OrderStatus.PARTIALLY_FILLED)
    for status in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.NOT_PLACED, OrderStatus.REJECTED):
        w.order(status=status)
    assert w.ctx.open_orders() == [a, b, c]
    assert w.ctx.open_orders("BTCUSDT") == [a, b]
    assert w.ctx.open_orders(side=Side.BUY) == [a, c]
    assert w.ctx.open_orders("BTCUSDT", Side.SELL) == [b]


def test_order_view_age_and_remaining() -> None:
    w = World()
    o = w.order(qty="0.003", filled="0.001", age=2.5)
    assert o.remaining == D("0.002")
    assert o.age(w.clock()) == 2.5
    assert o.working


def test_context_reads_sources_live() -> None:
    clock = FakeClock(50.0)
    market = MarketState(["BTCUSDT"])
    held = {"BTC": D("0.1")}
    ctx = StrategyContext(market, {"BTCUSDT": make_rules()}, list, lambda a: held.get(a, D(0)),
                          stale_after_s=2, clock=clock)
    assert ctx.now == 50.0 and ctx.symbols == ["BTCUSDT"] and ctx.stale_after_s == 2
    assert ctx.inventory("BTC") == D("0.1") and ctx.inventory("ETH") == 0
    held["BTC"] = D("0.2")
    assert ctx.inventory("BTC") == D("0.2")
    assert ctx.is_stale("BTCUSDT")
    market.apply_book("BTCUSDT", 1, D(1), D(1), D(2), D(1), 50.0, 0.0)
    assert ctx.is_stale("BTCUSDT") and not ctx.is_stale("BTCUSDT", mark=False)
    market.apply_mark("BTCUSDT", 1, D("1.5"), None, None, None, None, 49.0, 0.0)
    assert not ctx.is_stale("BTCUSDT")
    clock.t = 51.5
    assert ctx.is_stale("BTCUSDT") and not ctx.is_stale("BTCUSDT", mark=False)
    st = ctx.market("BTCUSDT")
    assert st is not None and st.bid == 1 and st.mark == D("1.5")
    assert ctx.market("ETHUSDT") is None
    assert ctx.rules("BTCUSDT").base_asset == "BTC"
    with pytest.raises(KeyError):
        ctx.rules("ETHUSDT")
    assert World().ctx.inventory("XRP") == 0  # mapping form


def test_base_strategy_handlers_default_to_nothing() -> None:
    w = World()
    s = Strategy({"anything": 1})
    s.bind(w.ctx)
    assert s.ctx is w.ctx and s.params == {"anything": 1}
    o = w.order()
    assert s.on_book_ticker("BTCUSDT", w.ctx) == s.on_mark_price("BTCUSDT", w.ctx) == []
    assert s.on_order_update(o) == s.on_timer(w.clock()) == []


def test_params_reader() -> None:
    p = Params({"a": "1.5", "b": 2, "c": True, "d": "x"})
    assert p.decimal("a", min="1", max="2") == D("1.5")
    assert p.decimal("b", positive=True) == D(2)
    assert p.boolean("c") is True
    assert p.string("d") == "x"
    assert p.decimal("e", "7") == D(7) and p.boolean("f", False) is False and p.string("g", "z") == "z"
    p.finish()


@pytest.mark.parametrize(("params", "read", "message"), [
    ({"a": "0.5"}, lambda p: p.decimal("a", min="1"), "a: must be at least 1, got 0.5"),
    ({"a": "3"}, lambda p: p.decimal("a", max="2"), "a: must be at most 2, got 3"),
    ({"a": True}, lambda p: p.decimal("a"), "a: must be a decimal written as a string"),
    ({"a": "1,5"}, lambda p: p.decimal("a"), "a: not a decimal number: '1,5'"),
    ({"a": "Infinity"}, lambda p: p.decimal("a"), "a: must be finite"),
    ({"a": 1}, lambda p: p.boolean("a"), "a: must be true or false, got 1"),
    ({"a": 1}, lambda p: p.string("a"), "a: must be a string, got 1"),
    ({}, lambda p: p.string("a"), "a: missing"),
])
def test_params_errors(params: dict[str, object], read: Any, message: str) -> None:
    with pytest.raises(ParamError) as info:
        read(Params(params))
    assert str(info.value).startswith(message)
    assert info.value.key == "a"


def test_params_must_be_a_table() -> None:
    with pytest.raises(ParamError, match="params: must be a table"):
        Params(["a"])  # type: ignore[arg-type]
