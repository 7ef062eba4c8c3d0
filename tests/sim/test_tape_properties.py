"""Property tests of the trade tape: klines of every interval and time zone agree with the
trades (open/high/low/close, volumes, trade count, first/last id per candle), and aggregate
trades are exactly the runs of fills by one taker at one price and time."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from executor.sim.exchange import SimExchange
from executor.sim.tape import INTERVALS, Tape, TapeTrade

EX = SimExchange.for_tests(symbols=("BTCUSDT",), book_update_hz=0)
DAY = 86_400_000


def reference_open(interval: str, t: int, offset_min: int) -> int:
    """Candle open time by calendar arithmetic (independent of the tape's formulas)."""
    tz = dt.timezone(dt.timedelta(minutes=offset_min))
    local = dt.datetime.fromtimestamp(t / 1000, tz)
    if interval == "1M":
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    elif interval == "1w":
        monday = local - dt.timedelta(days=local.weekday())
        start = monday.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        size = INTERVALS[interval] // 1000
        start = dt.datetime.fromtimestamp((int(local.timestamp()) + offset_min * 60) // size * size
                                          - offset_min * 60, tz)
    return int(start.timestamp() * 1000)


trade_steps = st.lists(
    st.tuples(st.integers(0, 5 * DAY // 2),               # gap to the previous trade, ms
              st.integers(1, 400),                         # price in ticks around 100
              st.integers(1, 50),                          # quantity in steps
              st.booleans(),                               # buyer was the maker
              st.integers(0, 2)),                          # 0: same taker as before (if possible)
    min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(start=st.integers(1_600_000_000_000, 1_900_000_000_000), steps=trade_steps,
       interval=st.sampled_from(sorted(INTERVALS)),
       offset_min=st.sampled_from([0, 60, -60, 480, 345, -720, 840]))
def test_klines_agree_with_the_trades(start: int, steps: list[tuple[int, int, int, bool, int]], interval: str,
                                      offset_min: int) -> None:
    next_id = iter(range(1000, 10_000))
    tape = Tape(EX.clock, EX.market, lambda _s: next(next_id), trades_per_update=0, max_minutes=10**6)
    t = start
    trades: list[TapeTrade] = []
    for gap, ticks, steps_q, maker, taker in steps:
        t += gap
        trades.append(tape.record_fill("BTCUSDT", next(next_id), Decimal(100) + Decimal(ticks) / 100,
                                       Decimal(steps_q) / 1000, t, maker, taker))
    got = tape.candles("BTCUSDT", interval, offset_min * 60_000, limit=1000)
    groups: dict[int, list[TapeTrade]] = {}
    for tr in trades:
        groups.setdefault(reference_open(interval, tr.time, offset_min), []).append(tr)
    assert [c.open_time for c in got] == sorted(groups)
    for c in got:
        rows = groups[c.open_time]
        assert (c.open, c.close) == (rows[0].price, rows[-1].price)
        assert (c.high, c.low) == (max(r.price for r in rows), min(r.price for r in rows))
        assert c.volume == sum(r.qty for r in rows) and c.count == len(rows)
        assert c.quote_volume == sum(r.price * r.qty for r in rows)
        assert c.taker_buy_base == sum(r.qty for r in rows if not r.buyer_maker)
        assert (c.first_id, c.last_id) == (rows[0].id, rows[-1].id)
        assert c.open_time <= rows[-1].time <= c.close_time


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(1, 9), st.booleans(),
                                st.integers(0, 1)), min_size=1, max_size=60))
def test_agg_trades_are_runs_of_one_taker_at_one_price_and_time(
        steps: list[tuple[int, int, int, bool, int]]) -> None:
    next_id = iter(range(1, 10_000))
    tape = Tape(EX.clock, EX.market, lambda _s: next(next_id), trades_per_update=0)
    t = 1_700_000_000_000
    takers: list[Any] = []
    trades: list[TapeTrade] = []
    for gap, price, qty, maker, new_taker in steps:
        t += gap
        if new_taker or not takers:
            takers.append(("taker", len(takers)))
        trades.append(tape.record_fill("BTCUSDT", next(next_id), Decimal(price + 100), Decimal(qty), t, maker,
                                       takers[-1]))
    aggs = tape.agg_trades("BTCUSDT", limit=1000)
    assert sum(a.qty for a in aggs) == sum(tr.qty for tr in trades)
    assert [a.id for a in aggs] == list(range(aggs[0].id, aggs[0].id + len(aggs)))
    by_id = {tr.id: (tr, takers_of) for tr, takers_of in zip(trades, _takers(steps), strict=True)}
    covered: list[int] = []
    for a in aggs:
        ids = list(range(a.first_id, a.last_id + 1))
        covered += ids
        members = [by_id[i] for i in ids]
        assert {(m.price, m.time, k) for m, k in members} == {(a.price, a.time, members[0][1])}
        assert sum(m.qty for m, _ in members) == a.qty
    assert covered == [tr.id for tr in trades]
    # Maximal runs: two neighbouring aggregates never share taker, price and time.
    for left, right in itertools.pairwise(aggs):
        key_left = (left.price, left.time, by_id[left.last_id][1])
        assert key_left != (right.price, right.time, by_id[right.first_id][1])


def _takers(steps: list[tuple[int, int, int, bool, int]]) -> list[int]:
    out: list[int] = []
    n = -1
    for *_, new_taker in steps:
        if new_taker or n < 0:
            n += 1
        out.append(n)
    return out
