"""``presorted=True`` (the audit's fast path: rows already unique and in (time, trade id)
order) gives exactly the result of the dedupe-and-sort path, on generated fill sequences with
position flips and fees in base, quote and a third asset."""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from executor.core.orders import Side
from executor.core.pnl import average_cost_pnl, fifo_pnl
from executor.core.reports import Fill, FillSource

D = Decimal

_fill = st.tuples(
    st.integers(0, 50),  # time
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(1, 100_000).map(lambda c: D(c) / 100),  # price
    st.integers(1, 500_000).map(lambda u: D(u) / 100_000),  # qty
    st.integers(0, 5_000).map(lambda u: D(u) / 10**8),  # fee
    st.sampled_from([None, "BTC", "USDT", "BNB"]),
)


def _convert(asset: str, amount: Decimal, fill: object) -> Decimal:
    return amount * D("612.5")


def _fills(raw: list[tuple]) -> list[Fill]:
    return [
        Fill(
            "BTCUSDT", i + 1, 1, side, p, q, p * q, fee if asset else D(0), asset, False, t, FillSource.STREAM
        )
        for i, (t, side, p, q, fee, asset) in enumerate(raw)
    ]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_fill, max_size=40), st.integers(-3, 3).map(lambda q: D(q) / 2), st.sampled_from([D(0), D(95)])
)
def test_presorted_is_identical(raw: list[tuple], open_q: Decimal, open_p: Decimal) -> None:
    fills = _fills(raw)
    ordered = sorted(fills, key=lambda f: (f.time_ms, f.trade_id))
    for fn in (fifo_pnl, average_cost_pnl):
        slow = fn(list(reversed(fills)), "BTCUSDT", "BTC", "USDT", _convert, open_q, open_p)
        fast = fn(ordered, "BTCUSDT", "BTC", "USDT", _convert, open_q, open_p, presorted=True)
        assert fast == slow
        # Decimal equality ignores exponents; the report prints them, so compare the text too.
        assert repr(fast) == repr(slow)
