"""The figures room: PnL per period equals core.pnl's FIFO over the same fills (batch or one
at a time, in any arrival order), positions net of base-asset commissions, balances and
equity at mark, open orders and last fills."""

from __future__ import annotations

import random
from decimal import Decimal
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from executor.core.orders import Side
from executor.core.pnl import fifo_pnl
from executor.figures import (
    PnlFold,
    balances,
    equity_at_mark,
    last_fills,
    open_orders,
    period_start_ms,
    pnl,
    positions,
)
from executor.persistence.records import FillRow, OrderRecord

D = Decimal
PAIRS = {"BTCUSDT": ("BTC", "USDT"), "ETHUSDT": ("ETH", "USDT"), "ETHBTC": ("ETH", "BTC")}


def fill(i: int, t: int, side: Side, price: str, qty: str, fee: str = "0", asset: str | None = None,
         symbol: str = "BTCUSDT", run: int = 1) -> FillRow:
    p, q = D(price), D(qty)
    return FillRow(i, symbol, 100 + i, None, f"bx-o{i}", None, side, p, q, p * q, D(fee), asset, False, t,
                   "stream", t + 1, run)


def test_hand_computed_run_day_all() -> None:
    fills = [fill(1, 1_000, Side.BUY, "100", "1", "0.001", "BTC", run=1),
             fill(2, 2_000, Side.BUY, "110", "1", "0.11", "USDT", run=2),
             fill(3, 86_400_000 + 5, Side.SELL, "120", "1.5", "0.18", "USDT", run=2)]
    marks = {"BTCUSDT": D("130")}
    all_ = pnl(fills, marks, PAIRS)
    # FIFO: 0.999 @100 -> 120 = +19.98; 0.501 @110 -> 120 = +5.01; fees 0.1 + 0.11 + 0.18
    s = all_.symbols[0]
    assert s.realized_gross == D("24.99") and s.fees == D("0.39") and s.realized == D("24.60")
    assert s.position == D("0.499") and s.unrealized == D("0.499") * (D(130) - D(110))
    assert all_.totals["USDT"]["total"] == s.realized + s.unrealized and all_.fills == 3
    run2 = pnl(fills, marks, PAIRS, period="run", run_id=2)
    # run 2 alone: 1 @110 closed at 120 (+10), then 0.5 short at 120; fees 0.29
    r2 = run2.symbols[0]
    assert run2.fills == 2 and (r2.realized_gross, r2.realized) == (D(10), D("9.71"))
    assert (r2.position, r2.position_cost, r2.unrealized) == (D("-0.5"), D(-60), D(-5))
    day2 = pnl(fills, marks, PAIRS, period="day", since_ms=period_start_ms("day", 86_400_000 + 99))
    assert day2.since_ms == 86_400_000 and day2.fills == 1
    assert day2.symbols[0].position == D("-1.5")  # a period sees only its own fills: a short
    assert period_start_ms("run", 5) is None


def test_third_asset_fee_converted_at_mark_or_listed() -> None:
    fills = [fill(1, 1, Side.BUY, "0.05", "1", "0.001", "BNB", symbol="ETHBTC")]
    with_mark = pnl(fills, {"BNBBTC": D("0.01")}, PAIRS)
    assert with_mark.symbols[0].fees == D("0.00001") and not with_mark.symbols[0].fees_unconverted
    without = pnl(fills, {}, PAIRS)
    assert without.symbols[0].fees == 0 and without.symbols[0].fees_unconverted == {"BNB": D("0.001")}
    assert without.symbols[0].unrealized is None  # holding ETH with no ETHBTC mark: unknown, not 0


fills_st = st.lists(
    st.tuples(st.integers(0, 50), st.sampled_from([Side.BUY, Side.SELL]), st.integers(90, 110),
              st.integers(1, 30), st.sampled_from(["BTC", "USDT"]), st.sampled_from(["BTCUSDT", "ETHUSDT"])),
    min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(fills_st, st.randoms(use_true_random=False))
def test_fold_in_any_arrival_order_equals_core_fifo(rows: list, rnd: random.Random) -> None:
    fills = []
    for i, (t, side, price, qty, fee_asset, symbol) in enumerate(rows):
        base = PAIRS[symbol][0]
        fills.append(fill(i + 1, t, side, str(price), str(D(qty) / 10), "0.001",
                          base if fee_asset == "BTC" else "USDT", symbol=symbol))
    marks = {"BTCUSDT": D("101.5"), "ETHUSDT": D("99")}
    batch = pnl(fills, marks, PAIRS)
    for s in batch.symbols:
        ref = fifo_pnl(fills, s.symbol, s.base, s.quote)
        assert (s.realized, s.fees, s.position) == (ref.realized, ref.fees, ref.position_qty)
        assert s.unrealized == ref.unrealized(marks[s.symbol])
    # One at a time in arrival order: a late (older) fill is refused, and folding afresh
    # (what the live watch does then) gives the batch figures again.
    shuffled = list(fills)
    rnd.shuffle(shuffled)
    fold = PnlFold(PAIRS)
    taken: list[FillRow] = []
    for f in shuffled:
        taken.append(f)
        if not fold.add(f, marks):
            fold = PnlFold(PAIRS)
            for g in sorted(taken, key=lambda x: (x.time_ms, x.trade_id)):
                assert fold.add(g, marks)
    assert fold.figures(marks) == batch


def test_positions_net_of_base_commission() -> None:
    fills = [fill(1, 1, Side.BUY, "100", "1", "0.001", "BTC"),
             fill(2, 2, Side.SELL, "100", "0.5", "0.0005", "BTC"),
             fill(3, 3, Side.BUY, "10", "2", "0.02", "USDT", symbol="ETHUSDT"),
             fill(3, 3, Side.BUY, "10", "2", "0.02", "USDT", symbol="ETHUSDT")]  # the same trade twice
    assert positions(fills, PAIRS) == {"BTC": D("0.4985"), "ETH": D("2")}


def test_balances_equity_orders_and_fills() -> None:
    rows = {a: SimpleNamespace(asset=a, free=D(f), locked=D(lk))
            for a, f, lk in (("USDT", "100", "5"), ("BTC", "0.5", "0"), ("DOGE", "10", "0"),
                             ("XRP", "0", "0"))}
    figs = balances(rows)
    assert [(b.asset, b.total) for b in figs] == [("BTC", D("0.5")), ("DOGE", D(10)), ("USDT", D(105))]
    value, unpriced = equity_at_mark(figs, {"BTCUSDT": D(60000)}, "USDT")
    assert value == D(30105) and unpriced == ["DOGE"]

    def order(i: int, status: str, external: bool = False) -> OrderRecord:
        return OrderRecord(i, f"bx-o{i}", i, 1, "BTCUSDT", "BUY", "LIMIT", "GTC", D(1), D(1), None,
                           status, "stream", D(0), D(0), i, i, i, i, i, None, None, None, i, None, external,
                           False, None)

    got = open_orders([order(1, "FILLED"), order(2, "NEW"), order(3, "UNKNOWN"), order(4, "NEW", True)])
    assert [o.id for o in got] == [4, 3, 2]
    assert [o.id for o in open_orders([order(4, "NEW", True), order(2, "NEW")], ours_only=True)] == [2]
    fills = [fill(i, t, Side.BUY, "1", "1") for i, t in ((1, 10), (2, 30), (3, 20))]
    assert [f.id for f in last_fills(fills, 2)] == [2, 3]
    assert [f.id for f in last_fills(fills, 10, since_ms=20)] == [2, 3]
