"""The report's fold: its inlined slippage equals ``executor.core.pnl.slippage_bps``."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from executor.audit.fold import _slip
from executor.core.orders import Side
from executor.core.pnl import slippage_bps

_price = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1000000"), places=8)


@given(st.sampled_from([Side.BUY, Side.SELL]), _price, _price, st.booleans())
def test_slip_matches_slippage_bps(side: Side, price: Decimal, ref: Decimal, mid: bool) -> None:
    if mid:
        ref = (ref + price) / 2  # a mid, as the report computes it
    fast, slow = _slip(side, price, ref), slippage_bps(side, price, ref)
    assert fast == slow and str(fast) == str(slow)
