"""``audit carry``: carry positions folded from spot and perpetual fills (pure), and the CLI."""

from __future__ import annotations

from decimal import Decimal as D

from executor.audit.carry import CarryFill, fold_carry, render_carry


def fill(perp: bool, side: str, price: str, qty: str, t: int, fee: str = "0", asset: str | None = "USDT",
         basis: str | None = None) -> CarryFill:
    return CarryFill("BTCUSDT", perp, side, D(price), D(qty), D(fee), asset, t,
                     None if basis is None else D(basis))


def test_open_close_and_an_open_position() -> None:
    fills = [
        fill(False, "BUY", "100", "2", 1, "0.002", "BTC", basis="30"),   # base fee: 0.002 x 100 = 0.2
        fill(True, "SELL", "101", "2", 2, "0.08", basis="30"),
        fill(False, "SELL", "102", "2", 10, "0.2", basis="-5"),
        fill(True, "BUY", "101.5", "2", 11, "0.08", basis="-5"),
        fill(False, "BUY", "103", "1", 20, "0.1"),                       # a second one, still open
    ]
    first, second = fold_carry(fills, [("BTCUSDT", 5, D("0.5")), ("BTCUSDT", 30, D("0.25"))])
    # The spot leg is held net of the commission taken in the base asset (as the ledger's
    # positions count it since positions-from-the-ledger): 2 bought less the 0.002 BTC fee.
    assert (first.opened_ms, first.closed_ms, first.max_spot) == (1, 11, D("1.998"))
    assert (first.spot_pnl, first.perp_pnl, first.funding, first.fees) == (D(4), D(-1), D("0.5"), D("0.56"))
    assert first.net == D("2.94")
    assert (first.entry_basis_bps, first.exit_basis_bps) == (D(30), D(-5))
    assert second.closed_ms is None and second.spot_qty == D(1) and second.funding == D("0.25")
    assert second.exit_basis_bps is None
    table = render_carry([first, second])
    assert "open" in table and "2.9400" in table
    assert render_carry([]).startswith("no carry positions")
