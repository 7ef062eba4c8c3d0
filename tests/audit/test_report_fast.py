"""The report's fast paths give exactly the plain results: the inlined slippage equals
``executor.core.pnl.slippage_bps``; PnL in the forked worker equals PnL in one process."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executor.audit.query import AuditDB, Scope
from executor.audit.report import _slip
from executor.core.orders import Side
from executor.core.pnl import slippage_bps
from tests.audit.scenario import Built

_price = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1000000"), places=8)


@given(st.sampled_from([Side.BUY, Side.SELL]), _price, _price, st.booleans())
def test_slip_matches_slippage_bps(side: Side, price: Decimal, ref: Decimal, mid: bool) -> None:
    if mid:
        ref = (ref + price) / 2  # a mid, as the report computes it
    fast, slow = _slip(side, price, ref), slippage_bps(side, price, ref)
    assert fast == slow and str(fast) == str(slow)


@pytest.mark.parametrize("scope", [Scope(), Scope(run_id=1), Scope(symbol="BTCUSDT")])
async def test_parallel_report_same_as_serial(
    scenario: Built, scope: Scope, monkeypatch: pytest.MonkeyPatch
) -> None:
    import executor.audit.report as report

    with AuditDB(scenario.path) as db:
        serial = report.build_report(db, scope, keep_rows=True)
    monkeypatch.setattr(report, "PARALLEL_MIN_FILLS", 1)
    with AuditDB(scenario.path) as db:
        parallel = report.build_report(db, scope, keep_rows=True)
    parallel.generated_ms = serial.generated_ms
    assert parallel == serial
    assert repr(parallel) == repr(serial)  # the exponents of every Decimal too
