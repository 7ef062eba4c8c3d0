"""CSV exports round-trip exactly; --out writes the files; JSON keeps exact decimals; charts."""

from __future__ import annotations

import io
import json
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.audit.query import AuditDB, FillRow, Scope
from executor.audit.render import (
    read_fills_csv,
    read_orders_csv,
    render_csv,
    render_json,
    render_table,
    write_fills_csv,
    write_orders_csv,
    write_out_dir,
)
from executor.audit.report import build_report
from executor.core.orders import Side
from tests.audit.scenario import T0, Built


def _report(built: Built):
    with AuditDB(built.path) as db:
        return build_report(db, Scope(), keep_rows=True)


async def test_orders_and_fills_csv_round_trip(scenario: Built) -> None:
    rep = _report(scenario)
    assert len(rep.orders) == 7 and len(rep.fills) == 5
    buf = io.StringIO()
    write_orders_csv(rep.orders, buf)
    buf.seek(0)
    assert read_orders_csv(buf) == rep.orders
    buf = io.StringIO()
    write_fills_csv(rep.fills, buf, rep.fill_slippage)
    buf.seek(0)
    back = read_fills_csv(buf)
    assert back == rep.fills
    # Exact text, exponent included: "1.0" stays "1.0", not "1" or "1.00".
    assert [str(f.qty) for f in back] == [str(f.qty) for f in rep.fills]
    assert "240" in buf.getvalue().splitlines()[2]  # B's first fill: slippage vs mid 240 bps


_dec = st.decimals(allow_nan=False, allow_infinity=False, places=12, min_value=D("-1e9"), max_value=D("1e9"))


@settings(max_examples=60, deadline=None)
@given(
    price=_dec,
    qty=_dec,
    fee=_dec,
    maker=st.sampled_from([None, True, False]),
    asset=st.sampled_from([None, "BNB", "USDT"]),
    side=st.sampled_from([None, Side.BUY, Side.SELL]),
)
def test_fill_csv_round_trips_any_decimal(
    price: D, qty: D, fee: D, maker: bool | None, asset: str | None, side: Side | None
) -> None:
    row = FillRow(
        7,
        "BTCUSDT",
        123456789012,
        None,
        "bx-1",
        99,
        side,
        price,
        qty,
        price * qty,
        fee,
        asset,
        maker,
        1_767_225_600_123,
        "stream",
        1_767_225_600_200,
        3,
    )
    buf = io.StringIO()
    write_fills_csv([row], buf)
    buf.seek(0)
    (back,) = read_fills_csv(buf)
    assert back == row
    assert [str(x) for x in back] == [str(x) for x in row]


async def test_out_dir_and_formats(scenario: Built, tmp_path: Path) -> None:
    rep = _report(scenario)
    files = write_out_dir(rep, tmp_path / "out")
    assert {p.name for p in files} == {"orders.csv", "fills.csv", "summary.csv", "report.json", "report.txt"}
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    btc = next(s for s in data["symbols"] if s["symbol"] == "BTCUSDT")
    # Exact decimal strings (compared as Decimals: the exponent is whatever the arithmetic gave).
    assert D(btc["realized_fifo"]) == D("69.264") and D(btc["fees_by_asset"]["BNB"]) == D("0.0013")
    assert D(btc["slippage_mid_bps"]["p99"]) == 240
    assert D(json.loads(render_json(rep))["totals_by_quote"]["USDT"]["fees"]) == D("1.20")
    lines = render_csv(rep).splitlines()
    assert lines[0] == "group,symbol,metric,value"
    assert any(line.startswith("all,BTCUSDT,realized_avg,65.092") for line in lines)
    text = render_table(rep)
    for needle in (
        "BY SYMBOL",
        "realized FIFO",
        "69.2640",
        "65.0920",
        "partly filled",
        "234.38 / 240.00",
        "RECONCILIATION RUNS (1)",
        "UNKNOWN resolved to FILLED",
    ):
        assert needle in text, needle


async def test_chart_png_is_written(scenario: Built, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from executor.audit.plot import equity_at_mark, plot_symbols
    from executor.audit.report import PriceSeries

    rep = _report(scenario)
    with AuditDB(scenario.path) as db:
        files = plot_symbols(rep, db, Scope(), tmp_path)
        context = db.market_context("BTCUSDT", Scope())
        btc = [f for f in rep.fills if f.symbol == "BTCUSDT"]
        curve = {t - T0: v for t, v in equity_at_mark(btc, context, "BTC", "USDT", PriceSeries(db))}
    assert [p.name for p in files] == ["ledger-BTCUSDT.png"]  # BNBUSDT has no fills
    assert files[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The market recorded with the orders: A, B, C, D (E and F have no decision quotes).
    assert [(t - T0, b, a) for t, b, a, _ in context] == [
        (1000, D("97.6"), D("102.4")), (2000, D("122"), D("128")), (3000, D("156.25"), D("163.75")),
        (4000, D("100"), D("104.8"))]
    # After A: cash -100 - 0.1 fee, 1 BTC at the mid 100 -> -0.1; at B's decision the mid is 125: 24.9
    assert (curve[1015], curve[2000]) == (D("-0.1"), D("24.9"))
    # B's BNB fees at 600 (0.24 + 0.36): cash -228.7, 2 BTC at 125 -> 21.3
    assert curve[2055] == D("21.3")
    # The end: cash 31.12, 0.298 BTC at the mid 102.4 = realized 69.264 + unrealized 0.298 x (102.4 - 128)
    assert curve[4035] == D("61.6352") == D("69.264") + D("0.298") * (D("102.4") - D("128"))


def test_plot_without_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from executor.audit import plot

    real_import = builtins.__import__

    def fake_import(name: str, *a: object, **kw: object) -> object:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real_import(name, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(plot.PlotUnavailable, match=r"pip install -e '\.\[plot\]'"):
        plot.require_matplotlib()
