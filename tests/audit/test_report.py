"""The report on the hand-computed scenario (tests/audit/scenario.py): every number below is
worked out by hand in the comments."""

from __future__ import annotations

from decimal import Decimal as D

from executor.audit.query import AuditDB, Scope
from executor.audit.report import build_report, order_outcome, percentile
from tests.audit.scenario import T0, Built


def _btc(built: Built, scope: Scope | None = None):
    with AuditDB(built.path) as db:
        rep = build_report(db, scope or Scope())
    return rep, next(r for r in rep.symbols if r.symbol == "BTCUSDT")


async def test_pnl_fees_and_volume_match_hand_computation(scenario: Built) -> None:
    rep, btc = _btc(scenario)
    assert (btc.base, btc.quote) == ("BTC", "USDT")
    assert btc.fills == 5
    # bought 1.0 + 0.4 + 0.6 = 2.0 BTC for 100 + 0.4*128 (51.2) + 0.6*128 (76.8) = 228 USDT
    assert (btc.bought_qty, btc.bought_quote) == (D("2.0"), D("228"))
    # sold 1.5 + 0.2 = 1.7 BTC for 1.5*160 (240) + 0.2*100 (20) = 260 USDT
    assert (btc.sold_qty, btc.sold_quote) == (D("1.7"), D("260"))
    # fees in their asset: USDT 0.1; BNB 0.0004 + 0.0006 + 0.0003 = 0.0013; BTC 0.002
    assert btc.fees_by_asset == {"BNB": D("0.0013"), "BTC": D("0.002"), "USDT": D("0.1")}
    # in quote: 0.1 + BNB at 600 (0.24 + 0.36 + 0.18) + BTC at the fill price 0.002*160 (0.32) = 1.20
    assert btc.fees_quote == D("1.20")
    assert btc.fees_unconverted == {}
    # FIFO. Inventory after the buys: lots 1.0@100, 0.4@128, 0.6@128 (fees were not in BTC).
    # SELL 1.5 with a 0.002 BTC fee removes 1.502: 1.0*(160-100)=60 + 0.4*(160-128)=12.8
    #   + 0.102*(160-128)=3.264 -> 76.064; left 0.498@128.
    # SELL 0.2 @100: 0.2*(100-128) = -5.6 -> gross 70.464; net 70.464 - 1.20 = 69.264.
    assert btc.realized_fifo_gross == D("70.464")
    assert btc.realized_fifo == D("69.264")
    # Average cost: 2.0 BTC for 228 -> 114. Close 1.502: 1.502*(160-114) = 69.092;
    # close 0.2: 0.2*(100-114) = -2.8 -> gross 66.292; net 66.292 - 1.20 = 65.092.
    assert btc.realized_avg_gross == D("66.292")
    assert btc.realized_avg == D("65.092")
    # Closing inventory 2.0 - 1.502 - 0.2 = 0.298 BTC; FIFO cost 0.298*128 = 38.144, avg 0.298*114 = 33.972.
    assert btc.position_qty == D("0.298")
    assert btc.position_cost_fifo == D("38.144")
    assert btc.position_cost_avg == D("33.972")
    # Marked to the last fill price, 100: value 29.8;
    # unrealized 29.8-38.144 = -8.344 (FIFO) and 29.8-33.972 = -4.172 (average).
    assert (btc.mark_price, btc.mark_ms, btc.mark_source) == (D("100"), T0 + 4035, "last fill")
    assert btc.market_value == D("29.8")
    assert btc.unrealized_fifo == D("-8.344")
    assert btc.unrealized_avg == D("-4.172")
    assert rep.totals_by_quote["USDT"]["realized_fifo"] == D("69.264")


async def test_slippage_matches_hand_computation(scenario: Built) -> None:
    _, btc = _btc(scenario)
    # vs mid (bps, cost positive): A buy 100 vs 100 -> 0; B buys 128 vs 125 -> 3/125*1e4 = 240 (twice);
    # C sell 160 vs 160 -> 0; D sell 100 vs 102.4 -> 2.4/102.4*1e4 = 234.375.
    m = btc.slippage_mid_bps
    assert m.n == 5
    assert m.mean == D("142.875")  # (0 + 240 + 240 + 0 + 234.375) / 5 = 714.375 / 5
    assert (m.p50, m.p99) == (D("234.375"), D("240"))  # sorted 0,0,234.375,240,240: ranks 3 and 5
    # vs touch: A 100 vs ask 102.4 -> -2.4/102.4*1e4 = -234.375; B 128 vs ask 128 -> 0 (twice);
    # C 160 vs bid 156.25 -> (156.25-160)/156.25*1e4 = -240; D 100 vs bid 100 -> 0.
    t = btc.slippage_touch_bps
    assert t.n == 5
    assert t.mean == D("-94.875")  # -474.375 / 5
    assert (t.p50, t.p99) == (D("0"), D("0"))  # sorted -240,-234.375,0,0,0


async def test_orders_latency_fill_ratio_and_maker_share(scenario: Built) -> None:
    rep, btc = _btc(scenario)
    assert btc.orders == {
        "filled": 3,
        "partly filled": 1,
        "cancelled": 0,
        "expired": 0,
        "rejected": 1,
        "never placed": 1,
        "open": 0,
        "unresolved": 0,
    }
    assert btc.orders_total == 6
    assert btc.resolved_from_unknown == 1  # C: UNKNOWN, then FILLED from a REST query
    # accepted orders A, B, C, D: executed 1.0 + 1.0 + 1.5 + 0.2 = 3.7 of 1.0 + 1.0 + 1.5 + 0.5 = 4.0
    assert btc.fill_ratio == D("0.925")
    # maker fills A (100 USDT) and C (240 USDT) of 488 USDT traded
    assert btc.maker_fills == 2
    assert btc.maker_share == D(340) / D(488)
    # decision -> ack: E 20, A 10, B 30, C 100 (the REST query that resolved it), D 5 -> 5,10,20,30,100
    a = btc.latency_ack_ms
    assert (a.n, a.p50, a.p99) == (5, 20, 100)
    # decision -> first fill received: A 20, B 50, C 90, D 40 -> 20,40,50,90
    f = btc.latency_first_fill_ms
    assert (f.n, f.p50, f.p99) == (4, 40, 90)
    bnb = next(r for r in rep.symbols if r.symbol == "BNBUSDT")
    assert bnb.orders["never placed"] == 1 and bnb.fills == 0
    assert len(rep.reconciliations) == 1
    assert rep.reconciliations[0]["discrepancies"][0]["client_order_id"] == "C"


async def test_filters_scope_the_rows(scenario: Built) -> None:
    # Only fills from T0+3000 on: C and D. Trades there: SELL 1.5 and SELL 0.2 with no inventory in scope.
    _, btc = _btc(scenario, Scope(since_ms=T0 + 3000))
    assert btc.fills == 2
    assert btc.sold_qty == D("1.7") and btc.bought_qty == 0
    _, btc = _btc(scenario, Scope(until_ms=T0 + 2000))
    assert btc.fills == 1 and btc.orders_total == 3  # E, F, A
    with AuditDB(scenario.path) as db:
        rep = build_report(db, Scope(symbol="BNBUSDT"))
    assert [r.symbol for r in rep.symbols] == ["BNBUSDT"]


def test_outcomes_and_percentiles() -> None:
    assert order_outcome("CANCELED", D("0")) == "cancelled"
    assert order_outcome("CANCELED", D("0.1")) == "partly filled"
    assert order_outcome("EXPIRED_IN_MATCH", D("0")) == "expired"
    assert order_outcome("UNKNOWN", D("0")) == "unresolved"
    assert order_outcome("PARTIALLY_FILLED", D("1")) == "open"
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([], 50) is None
