from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from executor.core.ledger import Discrepancy, Ledger, compare_balances, fill_coverage, fill_deltas, totals_of
from executor.core.orders import Side
from executor.core.reports import AssetBalance, BalanceDeltaReport, Fill, FillSource, Venue

D = Decimal
PAIRS = {"BTCUSDT": ("BTC", "USDT"), "ETHBTC": ("ETH", "BTC")}


def BalanceUpdate(event_ms: int, asset: str, delta: Decimal, clear_ms: int) -> BalanceDeltaReport:
    """A deposit/transfer report as the adapter builds it (its ref is the event's identity)."""
    return BalanceDeltaReport(Venue.SPOT, asset, delta, event_ms, f"E={event_ms},T={clear_ms},d={delta}",
                              "balanceUpdate")


def fill(trade_id: int, side: Side, price: str, qty: str, fee: str = "0", fee_asset: str | None = None,
         symbol: str = "BTCUSDT", order_id: int = 1) -> Fill:
    p, q = D(price), D(qty)
    return Fill(symbol, trade_id, order_id, side, p, q, p * q, D(fee), fee_asset, False, trade_id,
                FillSource.STREAM)


def test_fill_deltas_by_side_and_fee_asset() -> None:
    assert fill_deltas(fill(1, Side.BUY, "60000", "0.002", "0.000002", "BTC"), "BTC", "USDT") == {
        "BTC": D("0.001998"), "USDT": D("-120")}
    assert fill_deltas(fill(2, Side.SELL, "60000", "0.002", "0.12", "USDT"), "BTC", "USDT") == {
        "BTC": D("-0.002"), "USDT": D("119.88")}
    assert fill_deltas(fill(3, Side.SELL, "60000", "0.002", "0.0003", "BNB"), "BTC", "USDT") == {
        "BTC": D("-0.002"), "USDT": D("120"), "BNB": D("-0.0003")}
    assert fill_deltas(fill(4, Side.BUY, "60000", "0.002"), "BTC", "USDT") == {
        "BTC": D("0.002"), "USDT": D(-120)}


def test_ledger_dedupes_and_compares() -> None:
    ledger = Ledger(PAIRS, {"USDT": D(1000), "BTC": D(0)})
    buy = fill(1, Side.BUY, "60000", "0.01", "0.00001", "BTC")
    assert ledger.apply_fill(buy) is True
    assert ledger.apply_fill(buy) is False  # same (symbol, tradeId): counted once
    assert ledger.apply_balance_update(BalanceUpdate(1, "USDT", D(50), 2)) is True
    assert ledger.apply_balance_update(BalanceUpdate(1, "USDT", D(50), 2)) is False
    assert ledger.totals == {"USDT": D(450), "BTC": D("0.00999")}
    assert ledger.fill_count == 1 and ledger.has_fill("BTCUSDT", 1)
    snapshot = totals_of([AssetBalance("USDT", D(400), D(50)), AssetBalance("BTC", D("0.00999"), D(0)),
                          AssetBalance("BNB", D("0.1"), D(0))])
    assert ledger.compare(snapshot) == [Discrepancy("BNB", D(0), D("0.1"))]
    assert ledger.compare(snapshot)[0].difference == D("0.1")


def test_unknown_symbol_is_a_clear_error() -> None:
    ledger = Ledger(PAIRS)
    try:
        ledger.apply_fill(fill(1, Side.BUY, "1", "1", symbol="XRPUSDT"))
    except ValueError as exc:
        assert "XRPUSDT" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_compare_balances_tolerance_and_order() -> None:
    assert compare_balances({"A": D(1), "B": D(2)}, {"B": D(2), "A": D("1.0001")}, tolerance=D("0.001")) == []
    diffs = compare_balances({"B": D(2), "A": D(1)}, {"C": D(3)})
    assert [d.asset for d in diffs] == ["A", "B", "C"]


def test_fill_coverage_detects_gaps_and_stale_events() -> None:
    stored = [fill(1, Side.BUY, "100", "1"), fill(2, Side.BUY, "101", "2")]
    ok = fill_coverage(stored + stored[:1], D(3), D(302))  # duplicates do not double-count
    assert ok.is_complete and not ok.has_gap and not ok.is_stale
    gap = fill_coverage(stored, D(4), D("402.5"))
    assert gap.has_gap and gap.missing_qty == D(1) and gap.missing_quote == D("100.5")
    stale = fill_coverage(stored, D(1), D(100))
    assert stale.is_stale and not stale.has_gap and stale.missing_qty == 0
    rounding = fill_coverage(stored, D(3), D("302.00000001"))
    assert not rounding.has_gap and rounding.quote_differs


fills_strategy = st.lists(
    st.builds(fill, trade_id=st.integers(1, 30), side=st.sampled_from([Side.BUY, Side.SELL]),
              price=st.sampled_from(["100", "0.5", "60000.01"]), qty=st.sampled_from(["1", "0.001", "2.5"]),
              fee=st.sampled_from(["0", "0.1"]), fee_asset=st.sampled_from(["BTC", "USDT", "BNB", None]),
              symbol=st.sampled_from(["BTCUSDT", "ETHBTC"])),
    max_size=25, unique_by=lambda f: f.key)
updates_strategy = st.lists(st.builds(BalanceUpdate, st.integers(1, 5), st.sampled_from(["BTC", "USDT"]),
                                      st.sampled_from([D(1), D("-0.5")]), st.integers(1, 5)),
                            max_size=5, unique_by=lambda u: (u.kind, u.ref))


@given(st.data())
def test_folding_is_order_and_duplicate_independent(data: st.DataObject) -> None:
    fills = data.draw(fills_strategy)
    updates = data.draw(updates_strategy)
    items: list = fills + updates
    reference = Ledger(PAIRS, {"USDT": D(10)})
    for item in items:
        (reference.apply_fill if isinstance(item, Fill) else reference.apply_balance_update)(item)
    noisy = data.draw(st.permutations(items + data.draw(st.lists(st.sampled_from(items), max_size=10))
                                      if items else []))
    ledger = Ledger(PAIRS, {"USDT": D(10)})
    for item in noisy:
        (ledger.apply_fill if isinstance(item, Fill) else ledger.apply_balance_update)(item)
    assert ledger.totals == reference.totals
    assert ledger.fill_count == len(fills)
    # and the totals are exactly the opening balance plus every distinct delta
    expected: dict[str, Decimal] = {"USDT": D(10)}
    for f in fills:
        for asset, amount in fill_deltas(f, *PAIRS[f.symbol]).items():
            expected[asset] = expected.get(asset, D(0)) + amount
    for u in updates:
        expected[u.asset] = expected.get(u.asset, D(0)) + u.delta
    assert compare_balances(expected, ledger.totals) == []


def test_fill_rebuilt_from_strings_keeps_its_side() -> None:
    row = Fill("BTCUSDT", 1, 1, "BUY", D(100), D(1), D(100), D(0), None, False, 1, "gap_fill")  # type: ignore[arg-type]
    assert row.side is Side.BUY and row.source is FillSource.GAP_FILL
    assert fill_deltas(row, "BTC", "USDT") == {"BTC": D(1), "USDT": D(-100)}
