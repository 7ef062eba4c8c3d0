"""Positions from fills: commissions in the base asset are deducted, quote (and third-asset)
commissions are not, and the tracker's running figure equals the ledger-derived one."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from executor.core.orders import Side
from executor.core.positions import fill_delta, positions
from executor.core.reports import Fill, FillSource
from executor.orders.tracker import OrderTracker
from executor.persistence.records import PositionRow

D = Decimal
BASES = {"BTCUSDT": "BTC", "ETHUSDT": "ETH", "ETHBTC": "ETH"}


def fill(trade_id: int, side: Side, qty: str, commission: str = "0", asset: str | None = None,
         symbol: str = "BTCUSDT") -> Fill:
    return Fill(symbol, trade_id, 1, side, D("60000"), D(qty), D(qty) * 60000, D(commission), asset, False, 0,
                FillSource.STREAM)


def test_a_buy_commission_in_the_base_asset_is_deducted() -> None:
    # The paper run in issue #11: the tracker counted 0.00664, the exchange held 0.00662672.
    assert fill_delta(Side.BUY, D("0.00664"), D("0.00001328"), "BTC", "BTC") == D("0.00662672")
    assert fill_delta(Side.BUY, D("0.001"), D("0.06"), "USDT", "BTC") == D("0.001")
    assert fill_delta(Side.SELL, D("0.001"), D("0.06"), "USDT", "BTC") == D("-0.001")
    assert fill_delta(Side.BUY, D("0.001"), D("0.0001"), "BNB", "BTC") == D("0.001")
    # BNB paying the fee of a BNB pair: the base asset, whichever the side.
    assert fill_delta(Side.SELL, D("1"), D("0.00075"), "BNB", "BNB") == D("-1.00075")


def test_positions_per_base_asset_skip_untraded_symbols_and_sideless_fills() -> None:
    rows = [PositionRow("BTCUSDT", 1, Side.BUY, D("0.002"), D("0.000002"), "BTC"),
            PositionRow("BTCUSDT", 2, Side.SELL, D("0.001"), D("0.06"), "USDT"),
            PositionRow("ETHBTC", 3, Side.BUY, D("0.1"), D("0.0001"), "ETH"),
            PositionRow("ETHUSDT", 4, Side.SELL, D("0.05"), D("0.15"), "USDT"),
            PositionRow("XRPUSDT", 5, Side.BUY, D("10"), D("0"), None),
            PositionRow("BTCUSDT", 6, None, D("5"), D("0"), None)]
    assert positions(rows, BASES.get) == {"BTC": D("0.000998"), "ETH": D("0.0499")}


sides = st.sampled_from([Side.BUY, Side.SELL])
qtys = st.integers(1, 10_000).map(lambda n: D(n) / 100_000)
fee_assets = st.sampled_from(["BTC", "USDT", "BNB", None])
fills_st = st.lists(st.tuples(sides, qtys, st.integers(0, 50).map(lambda n: D(n) / 10**8), fee_assets),
                    max_size=30)


@settings(max_examples=150, deadline=None)
@given(fills_st, st.data())
def test_the_tracker_counts_fill_by_fill_what_the_ledger_derives(spec: list, data: st.DataObject) -> None:
    fills = [fill(i, side, str(q), str(c), a) for i, (side, q, c, a) in enumerate(spec)]
    derived = positions(fills, BASES.get)
    t = OrderTracker(BASES)
    order = data.draw(st.permutations(fills))
    t.add_fills(order)
    t.add_fills(order[: len(order) // 2])  # a replay counts nothing
    assert t.inventory("BTC") == derived.get("BTC", D(0))
    # A load from the ledger replaces the running figure with the same number, and the
    # fills it covered are not counted again when reported late.
    t2 = OrderTracker(BASES)
    t2.replace_positions(fills, [(f.symbol, f.trade_id) for f in fills])  # the ledger's keys
    t2.add_fills(fills)
    assert t2.inventories() == t.inventories() or not fills
