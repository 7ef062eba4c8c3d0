from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executor.core.filters import LotSize, PriceFilter, SymbolRules
from executor.core.orders import Side

D = Decimal


@pytest.fixture
def btc(fx: dict[str, Any]) -> SymbolRules:
    return SymbolRules.from_exchange_info(fx["exchangeInfo_symbol_BTCUSDT"])


def names(violations: list) -> list[str]:
    return [v.filter for v in violations]


def test_parses_fixture(btc: SymbolRules) -> None:
    assert (btc.symbol, btc.status, btc.base_asset, btc.quote_asset) == ("BTCUSDT", "TRADING", "BTC", "USDT")
    assert btc.price_filter == PriceFilter(D("0.01"), D("1000000"), D("0.01"))
    assert btc.lot_size == LotSize(D("0.00001"), D("9000"), D("0.00001"))
    assert btc.market_lot_size == LotSize(D(0), D(80), D(0))
    assert btc.notional is not None
    assert btc.notional.min_notional == 5 and btc.notional.max_notional == 9000000
    assert btc.notional.apply_min_to_market and not btc.notional.apply_max_to_market
    assert btc.min_notional is None
    assert btc.max_num_orders == 200
    assert btc.percent_price_by_side is not None and btc.percent_price_by_side.bid_up == 5
    assert "LIMIT_MAKER" in btc.order_types


def test_rounding_is_passive(btc: SymbolRules) -> None:
    assert btc.round_price(D("60000.129"), Side.BUY) == D("60000.12")
    assert btc.round_price(D("60000.121"), Side.SELL) == D("60000.13")
    assert btc.round_price(D("60000.12"), Side.SELL) == D("60000.12")
    assert btc.round_qty(D("0.123456789")) == D("0.12345")
    assert btc.round_qty(D("0.000009")) == 0  # below the first step: 0, which check refuses


def test_valid_limit_order_passes(btc: SymbolRules) -> None:
    assert btc.check(Side.BUY, "LIMIT", D("60000.12"), D("0.001")) == []


def test_each_filter_is_named_like_binance(btc: SymbolRules) -> None:
    v = btc.check(Side.BUY, "LIMIT", D("60000.123"), D("0.001"))
    assert names(v) == ["PRICE_FILTER"] and v[0].message == "Filter failure: PRICE_FILTER"
    assert names(btc.check(Side.BUY, "LIMIT", D("60000"), D("0.0010001"))) == ["LOT_SIZE"]
    assert names(btc.check(Side.BUY, "LIMIT", D("60000"), D("9001"))) == ["LOT_SIZE", "NOTIONAL"]
    assert names(btc.check(Side.BUY, "LIMIT", D("1000"), D("0.001"))) == ["NOTIONAL"]  # 1 USDT < 5
    # below minPrice and off the tick grid: both reported
    assert names(btc.check(Side.BUY, "LIMIT", D("0.001"), D("1"))) == [
        "PRICE_FILTER", "PRICE_FILTER", "NOTIONAL"]
    assert names(btc.check(Side.BUY, "LIMIT", D("2000000"), D("1"))) == ["PRICE_FILTER"]
    assert names(btc.check(Side.BUY, "LIMIT", D("60000"), D("0"))) == ["LOT_SIZE"]
    assert names(btc.check(Side.BUY, "LIMIT", None, D("1"))) == ["PRICE_FILTER"]


def test_market_orders(btc: SymbolRules) -> None:
    assert names(btc.check(Side.SELL, "MARKET", None, D("81"), ref_price=D("60000"))) == ["MARKET_LOT_SIZE"]
    # applyMinToMarket: a tiny market order is refused when the reference price is known...
    assert names(btc.check(Side.SELL, "MARKET", None, D("0.00001"), ref_price=D("60000"))) == ["NOTIONAL"]
    # ...and cannot be evaluated without one.
    assert btc.check(Side.SELL, "MARKET", None, D("0.00001")) == []
    # applyMaxToMarket is false: a huge market order is not capped by maxNotional.
    assert btc.check(Side.BUY, "MARKET", None, D("80"), ref_price=D("200000")) == []


def test_percent_price_by_side(btc: SymbolRules) -> None:
    assert names(btc.check(Side.BUY, "LIMIT", D("300001"), D("0.001"), ref_price=D("60000"))) == [
        "PERCENT_PRICE_BY_SIDE"]
    assert names(btc.check(Side.SELL, "LIMIT", D("11999"), D("0.001"), ref_price=D("60000"))) == [
        "PERCENT_PRICE_BY_SIDE"]
    assert btc.check(Side.SELL, "LIMIT", D("12000"), D("0.001"), ref_price=D("60000")) == []


def test_max_num_orders_status_and_type(btc: SymbolRules, fx: dict[str, Any]) -> None:
    assert btc.check(Side.BUY, "LIMIT", D("60000"), D("0.001"), open_orders=199) == []
    assert names(btc.check(Side.BUY, "LIMIT", D("60000"), D("0.001"), open_orders=200)) == ["MAX_NUM_ORDERS"]
    assert names(btc.check(Side.BUY, "STOP_LOSS_LIMIT_X", D("60000"), D("0.001"))) == ["ORDER_TYPE"]
    info = fx["exchangeInfo_symbol_BTCUSDT"] | {"status": "CANCEL_ONLY"}
    halted = SymbolRules.from_exchange_info(info)
    v = halted.check(Side.BUY, "LIMIT", D("60000"), D("0.001"))
    assert names(v) == ["SYMBOL_STATUS"] and "CANCEL_ONLY" in v[0].message


def test_zero_disables_and_legacy_min_notional(fx: dict[str, Any]) -> None:
    info = fx["exchangeInfo_symbol_BTCUSDT"]
    info["filters"] = [
        {"filterType": "PRICE_FILTER", "minPrice": "0", "maxPrice": "0", "tickSize": "0"},
        {"filterType": "LOT_SIZE", "minQty": "0", "maxQty": "0", "stepSize": "0"},
        {"filterType": "MIN_NOTIONAL", "minNotional": "10", "applyToMarket": False, "avgPriceMins": 5},
    ]
    rules = SymbolRules.from_exchange_info(info)
    assert rules.check(Side.BUY, "LIMIT", D("0.123456789"), D("123456.789")) == []
    assert rules.round_price(D("1.23456789"), Side.BUY) == D("1.23456789")
    assert names(rules.check(Side.BUY, "LIMIT", D("1"), D("9"))) == ["MIN_NOTIONAL"]
    assert rules.check(Side.BUY, "MARKET", None, D("9"), ref_price=D(1)) == []  # applyToMarket false


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda d: d.pop("symbol"), "'symbol'"),
    (lambda d: d.update(quoteAsset=5), "'quoteAsset'"),
    (lambda d: d["filters"][0].update(tickSize=0.01), "PRICE_FILTER.tickSize"),
    (lambda d: d["filters"][1].update(stepSize="abc"), "LOT_SIZE.stepSize"),
    (lambda d: d["filters"][6].update(applyMinToMarket="yes"), "NOTIONAL.applyMinToMarket"),
    (lambda d: d["filters"][7].update(maxNumOrders="200"), "MAX_NUM_ORDERS.maxNumOrders"),
    (lambda d: d.update(filters={}), "filters"),
    (lambda d: d["filters"][0].update(minPrice="-1"), "PRICE_FILTER.minPrice: must not be negative"),
])
def test_bad_exchange_info_names_the_field(fx: dict[str, Any], mutate: Any, needle: str) -> None:
    info = fx["exchangeInfo_symbol_BTCUSDT"]
    mutate(info)
    with pytest.raises(ValueError) as exc:
        SymbolRules.from_exchange_info(info)
    assert needle in str(exc.value)


# --- properties -----------------------------------------------------------------------

steps = st.builds(lambda m, k: D(m).scaleb(-k), st.integers(1, 50), st.integers(0, 10))


@st.composite
def price_case(draw: st.DrawFn) -> tuple[SymbolRules, Decimal]:
    tick = draw(steps)
    min_price = draw(st.sampled_from([D(0), tick, tick * 3, D("0.005")]))
    offset = draw(st.decimals(min_value=0, max_value=10**6, places=12, allow_nan=False, allow_infinity=False))
    price = min_price + offset  # a valid price exists at or below it
    rules = SymbolRules("X", "TRADING", "A", "B", price_filter=PriceFilter(min_price, D(0), tick))
    return rules, price


@given(price_case(), st.sampled_from([Side.BUY, Side.SELL]))
def test_rounded_price_passes_is_passive_and_idempotent(case: tuple[SymbolRules, Decimal],
                                                        side: Side) -> None:
    rules, price = case
    assert rules.price_filter is not None
    rounded = rules.round_price(price, side)
    assert rules.price_filter.violations(rounded) == []
    if side is Side.BUY:
        assert price - rules.price_filter.tick_size < rounded <= price
    else:
        assert price <= rounded < price + rules.price_filter.tick_size
    assert rules.round_price(rounded, side) == rounded


@st.composite
def qty_case(draw: st.DrawFn) -> tuple[SymbolRules, Decimal]:
    step = draw(steps)
    min_qty = draw(st.sampled_from([D(0), step, step * 7]))
    market_max = draw(st.sampled_from([D(0), D(10**9)]))
    qty = draw(st.decimals(min_value=min_qty + step, max_value=10**6, places=12,
                           allow_nan=False, allow_infinity=False))
    rules = SymbolRules("X", "TRADING", "A", "B", lot_size=LotSize(min_qty, D(0), step),
                        market_lot_size=LotSize(D(0), market_max, D(0)))
    return rules, qty


@given(qty_case(), st.booleans())
def test_rounded_qty_passes_is_never_more_and_idempotent(case: tuple[SymbolRules, Decimal],
                                                         market: bool) -> None:
    rules, qty = case
    assert rules.lot_size is not None
    rounded = rules.round_qty(qty, market=market)
    assert rules.lot_size.violations(rounded) == []
    assert qty - rules.lot_size.step_size < rounded <= qty
    assert rules.round_qty(rounded, market=market) == rounded
    order_type = "MARKET" if market else "LIMIT"
    price = None if market else D(1)
    assert rules.check(Side.BUY, order_type, price, rounded) == []


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(), st.text(max_size=8),
                      st.sampled_from(["0", "0.01", "-1", "NaN", "PRICE_FILTER", "LOT_SIZE", "TRADING"]))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)


@given(st.data())
def test_garbage_exchange_info_raises_only_value_error(data: st.DataObject) -> None:
    from .conftest import load_fixtures

    info = load_fixtures()["exchangeInfo_symbol_BTCUSDT"]
    filters = info["filters"]
    for _ in range(data.draw(st.integers(1, 3))):
        target = data.draw(st.sampled_from(["top", "filter"] if filters else ["top"]))
        obj = info if target == "top" else data.draw(st.sampled_from(filters))
        if not isinstance(obj, dict) or not obj:
            continue
        key = data.draw(st.sampled_from(sorted(obj)))
        obj[key] = data.draw(json_value)
        if target == "top" and key == "filters":
            filters = info["filters"] if isinstance(info["filters"], list) else []
    try:
        rules = SymbolRules.from_exchange_info(info)
    except ValueError as exc:
        assert "\n" not in str(exc)
    else:
        rules.check(Side.BUY, "LIMIT", D("1.5"), D("0.5"), ref_price=D(1), open_orders=1)
        rules.round_price(D("1.234"), Side.SELL)
        rules.round_qty(D("1.234"), market=True)
