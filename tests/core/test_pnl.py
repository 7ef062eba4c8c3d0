from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executor.core.orders import Side
from executor.core.pnl import average_cost_pnl, fifo_pnl
from executor.core.reports import Fill, FillSource

D = Decimal
BUY, SELL = Side.BUY, Side.SELL


def f(t: int, side: Side, price: str, qty: str, fee: str = "0", asset: str | None = None) -> Fill:
    p, q = D(price), D(qty)
    return Fill("BTCUSDT", t, 1, side, p, q, p * q, D(fee), asset, False, 1000 + t, FillSource.STREAM)


SCENARIO = [f(1, BUY, "100", "1", "0.1", "USDT"), f(2, BUY, "110", "1", "0.11", "USDT"),
            f(3, SELL, "120", "1.5", "0.18", "USDT")]


def test_fifo_hand_computed() -> None:
    r = fifo_pnl(SCENARIO, "BTCUSDT", "BTC", "USDT")
    # 1 @100 -> 120: +20; 0.5 @110 -> 120: +5
    assert r.realized_gross == D(25) and r.fees == D("0.39") and r.realized == D("24.61")
    assert r.position_qty == D("0.5") and r.position_cost == D(55) and r.avg_entry_price == D(110)
    assert r.unrealized(D(130)) == D(10) and r.market_value(D(130)) == D(65)
    assert (r.bought_qty, r.sold_qty, r.bought_quote, r.sold_quote) == (D(2), D("1.5"), D(210), D(180))
    assert r.fees_by_asset == {"USDT": D("0.39")} and r.fill_count == 3 and r.method == "fifo"


def test_average_cost_hand_computed() -> None:
    r = average_cost_pnl(SCENARIO, "BTCUSDT", "BTC", "USDT")
    # average 105; 1.5 sold at 120: +22.5; 0.5 left at 105
    assert r.realized_gross == D("22.5") and r.realized == D("22.11")
    assert r.position_qty == D("0.5") and r.position_cost == D("52.5")
    assert r.unrealized(D(130)) == D("12.5")


def test_methods_agree_on_total_pnl() -> None:
    fifo = fifo_pnl(SCENARIO, "BTCUSDT", "BTC", "USDT")
    avg = average_cost_pnl(SCENARIO, "BTCUSDT", "BTC", "USDT")
    assert fifo.realized + fifo.unrealized(D(130)) == avg.realized + avg.unrealized(D(130)) == D("34.61")


def test_base_fee_reduces_inventory_and_cash_balances() -> None:
    fills = [f(1, BUY, "100", "1", "0.001", "BTC"), f(2, SELL, "110", "0.999", "0.1099", "USDT")]
    for method in (fifo_pnl, average_cost_pnl):
        r = method(fills, "BTCUSDT", "BTC", "USDT")
        assert r.position_qty == 0 and r.position_cost == 0
        assert r.realized_gross == D("9.99") and r.fees == D("0.2099")
        # cash: paid 100, received 109.89 - 0.1099
        assert r.realized == D("109.89") - D("0.1099") - D(100)
        assert r.fees_by_asset == {"BTC": D("0.001"), "USDT": D("0.1099")}


def test_sell_side_base_fee_takes_extra_inventory() -> None:
    fills = [f(1, BUY, "100", "2"), f(2, SELL, "110", "1", "0.01", "BTC")]
    r = fifo_pnl(fills, "BTCUSDT", "BTC", "USDT")
    assert r.position_qty == D("0.99")
    # 1.01 units leave at 110 (1 sold, 0.01 fee): gross 10.1, fee 1.1 -> net 9 = 110 received - 101 cost
    assert r.realized_gross == D("10.1") and r.fees == D("1.1") and r.realized == D(9)


def test_third_asset_fee_needs_conversion() -> None:
    fills = [f(1, BUY, "100", "1", "0.01", "BNB"), f(2, SELL, "101", "1", "0.01", "BNB")]
    with pytest.raises(ValueError, match="BNB"):
        fifo_pnl(fills, "BTCUSDT", "BTC", "USDT")
    r = fifo_pnl(fills, "BTCUSDT", "BTC", "USDT", convert=lambda asset, amount, fill: amount * 300)
    assert r.realized_gross == 1 and r.fees == 6 and r.realized == -5 and r.position_qty == 0
    assert r.fees_by_asset == {"BNB": D("0.02")}


def test_short_and_crossing_through_zero() -> None:
    fills = [f(1, BUY, "100", "1"), f(2, SELL, "110", "3"), f(3, BUY, "105", "2")]
    for method in (fifo_pnl, average_cost_pnl):
        r = method(fills, "BTCUSDT", "BTC", "USDT")
        assert r.realized_gross == 20 and r.position_qty == 0 and r.position_cost == 0


def test_opening_inventory() -> None:
    for method in (fifo_pnl, average_cost_pnl):
        r = method([f(1, SELL, "60", "1")], "BTCUSDT", "BTC", "USDT", opening_qty=D(2), opening_price=D(50))
        assert r.realized_gross == 10 and r.position_qty == 1 and r.position_cost == 50


def test_other_symbols_are_ignored() -> None:
    other = Fill("ETHUSDT", 9, 1, BUY, D(1), D(1), D(1), D(0), None, False, 1, FillSource.STREAM)
    with_other = fifo_pnl([*SCENARIO, other], "BTCUSDT", "BTC", "USDT")
    assert with_other == fifo_pnl(SCENARIO, "BTCUSDT", "BTC", "USDT")


fill_lists = st.lists(
    st.builds(f, t=st.integers(1, 40), side=st.sampled_from([BUY, SELL]),
              price=st.sampled_from(["99", "100.5", "101"]),
              qty=st.sampled_from(["1", "0.25", "2"]), fee=st.sampled_from(["0", "0.01"]),
              asset=st.sampled_from(["USDT", "BTC"])),
    max_size=20, unique_by=lambda x: x.trade_id)


@given(st.data())
def test_input_order_and_duplicates_do_not_matter(data: st.DataObject) -> None:
    fills = data.draw(fill_lists)
    noisy = data.draw(st.permutations(fills + fills[: len(fills) // 2]))
    for method in (fifo_pnl, average_cost_pnl):
        assert method(noisy, "BTCUSDT", "BTC", "USDT") == method(fills, "BTCUSDT", "BTC", "USDT")
    fifo = fifo_pnl(fills, "BTCUSDT", "BTC", "USDT")
    avg = average_cost_pnl(fills, "BTCUSDT", "BTC", "USDT")
    # same inventory either way, and total PnL (realized + unrealized) agrees at any mark
    assert fifo.position_qty == avg.position_qty
    mark = D("100")
    # average cost divides, so allow for the last digits of a 50-digit context
    assert abs((fifo.realized + fifo.unrealized(mark)) - (avg.realized + avg.unrealized(mark))) < D("1e-20")


def test_slippage_bps() -> None:
    from executor.core.pnl import slippage_bps

    assert slippage_bps(BUY, D("100.05"), D(100)) == D(5)
    assert slippage_bps(SELL, D("99.95"), D(100)) == D(5)
    assert slippage_bps(SELL, D("100.1"), D(100)) == D(-10)  # sold above the mid: improvement
    assert slippage_bps("BUY", D(100), D(100)) == 0  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reference"):
        slippage_bps(BUY, D(1), D(0))
