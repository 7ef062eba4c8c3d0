"""Property tests: event faults never lose an event, futures accounting is exact."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from executor.sim.faults import EventFaults
from executor.sim.futures_account import TAKER_FEE, FuturesSide
from executor.sim.futures_market import FUNDING_CLAMP, INTEREST_RATE, FuturesMarket, funding_rate


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 30), dup=st.integers(0, 10), reorder=st.integers(0, 10), delay=st.integers(0, 10))
def test_event_faults_lose_nothing(n: int, dup: int, reorder: int, delay: int) -> None:
    faults = EventFaults(duplicate=dup, reorder=reorder, delay=delay, delay_ms=1000)
    events = [{"i": i} for i in range(n)]
    delivered: list[dict[str, Any]] = []
    for ev in events:
        delivered += faults.apply("a", "spot", ev, now_ms=0)
    delivered += [e for _, _, e in faults.due(0, flush=True)]
    ids = [e["i"] for e in delivered]
    assert sorted(set(ids)) == list(range(n))                       # every event arrives
    assert len(ids) - n == sum(1 for i in range(n) if ids.count(i) == 2)   # only duplicates extra
    assert all(ids.count(i) <= 2 for i in range(n))


@given(premium=st.decimals(min_value=Decimal("-0.05"), max_value=Decimal("0.05"), places=8))
def test_funding_rate_formula(premium: Decimal) -> None:
    rate = funding_rate(premium)
    assert abs(rate - premium) <= FUNDING_CLAMP
    if abs(INTEREST_RATE - premium) <= FUNDING_CLAMP:
        assert rate == INTEREST_RATE


trades = st.lists(st.tuples(st.sampled_from(["BUY", "SELL"]),
                            st.integers(1, 50).map(lambda q: Decimal(q) / 1000),
                            st.integers(59_000, 61_000).map(Decimal)), min_size=1, max_size=20)


@settings(max_examples=100, deadline=None)
@given(trades=trades)
def test_futures_fills_account_exactly(trades: list[tuple[str, Decimal, Decimal]]) -> None:
    market = FuturesMarket(lambda: 0, lambda s: Decimal(60000), ["BTCUSDT"])
    side = FuturesSide(lambda: 0, lambda *a: None, market)
    side.wallet("a").balances["USDT"] = Decimal(0)
    cash = Decimal(0)                                  # signed notional flow
    position = Decimal(0)
    fees = Decimal(0)
    for direction, qty, price in trades:
        side.fill("a", "BTCUSDT", direction, qty, price, client_order_id="x")
        signed = qty if direction == "BUY" else -qty
        position += signed
        cash -= signed * price
        fees += (qty * price * TAKER_FEE).quantize(Decimal("0.00000001"))
    pos = side.wallet("a").positions["BTCUSDT"]
    assert pos.amount == position
    # Wallet = realized PnL - fees; realized + the open position's value at entry = cash flow.
    assert side.wallet("a").balance("USDT") == pos.realized - fees
    assert abs(pos.realized - (cash + position * pos.entry_price)) < Decimal("0.0001")
