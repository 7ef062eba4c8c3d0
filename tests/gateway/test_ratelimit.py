"""Weight/order budget and the global ban gate, on time the tests control."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.exchange.ratelimit import (
    ORDERS,
    WEIGHT,
    BanGate,
    Cost,
    WeightBudget,
    parse_limit_headers,
)
from tests.gateway.fakes import ManualTime, until

T0 = 1_700_000_020.0  # 40 s into a UTC minute


def budget(t: ManualTime, weight_limit: int = 100) -> WeightBudget:
    return WeightBudget(now=t.now, limits=((WEIGHT, 60, weight_limit), (ORDERS, 10, 10)))


def test_parse_limit_headers_any_case_and_interval() -> None:
    parsed = parse_limit_headers({
        "X-MBX-USED-WEIGHT-1M": "42", "x-mbx-order-count-10s": "3", "X-MBX-ORDER-COUNT-1D": "77",
        "X-MBX-USED-WEIGHT-1H": "x", "Content-Type": "json",
    })
    assert parsed == {(WEIGHT, 60): 42, (ORDERS, 10): 3, (ORDERS, 86400): 77}


def test_under_soft_fraction_sends_immediately() -> None:
    t = ManualTime(T0)
    b = budget(t)
    b.settle(Cost(0), {"X-MBX-USED-WEIGHT-1M": "60"})
    assert b.delay(Cost(5)) == 0


def test_header_is_authoritative_over_local_estimate() -> None:
    t = ManualTime(T0)
    b = budget(t)
    b.reserve(Cost(20))
    b.settle(Cost(20), {"X-MBX-USED-WEIGHT-1M": "3"})  # e.g. a weight-0 successful order
    assert b.used(WEIGHT, 60) == 3
    b.reserve(Cost(20))
    b.settle(Cost(20), None)  # no header: assume it counted
    assert b.used(WEIGHT, 60) == 23


def test_past_hard_fraction_waits_for_the_next_window() -> None:
    t = ManualTime(T0)
    b = budget(t)
    b.settle(Cost(0), {"X-MBX-USED-WEIGHT-1M": "88"})
    assert b.delay(Cost(5)) == pytest.approx(20.0)  # 40 s into the minute: 20 s left
    t.advance(20.0)
    assert b.delay(Cost(5)) == 0 and b.used(WEIGHT, 60) == 0


def test_between_soft_and_hard_requests_are_spaced_out() -> None:
    t = ManualTime(T0)
    b = budget(t)
    b.settle(Cost(0), {"X-MBX-USED-WEIGHT-1M": "75"})
    b.reserve(Cost(1))
    b.settle(Cost(1), {"X-MBX-USED-WEIGHT-1M": "76"})
    first = b.delay(Cost(1))
    assert 0 < first < 20.0
    t.advance(first)
    assert b.delay(Cost(1)) == 0  # spacing is relative to the previous send, not forever


def test_in_flight_requests_count_before_their_answer() -> None:
    t = ManualTime(T0)
    b = budget(t)
    for _ in range(9):
        b.reserve(Cost(10))
    assert b.used(WEIGHT, 60) == 90
    assert b.delay(Cost(10)) == pytest.approx(20.0)


def test_order_count_window_paces_orders_only() -> None:
    t = ManualTime(1_700_000_000.0)
    b = budget(t)
    b.settle(Cost(0), {"X-MBX-ORDER-COUNT-10S": "9"})
    assert b.delay(Cost(weight=1, orders=1)) == pytest.approx(10.0)
    assert b.delay(Cost(weight=4)) == 0


def test_empty_window_admits_a_heavy_request() -> None:
    t = ManualTime(T0)
    b = budget(t, weight_limit=50)
    assert b.delay(Cost(80)) == 0


def test_configure_from_exchange_info() -> None:
    b = WeightBudget(limits=())
    b.configure([
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300000},
    ])
    snap = b.snapshot()
    assert snap["REQUEST_WEIGHT/60s"]["limit"] == 1200 and snap["ORDERS/10s"]["limit"] == 50
    assert len(snap) == 2


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        WeightBudget(soft_fraction=0.95, hard_fraction=0.9)
    with pytest.raises(ValueError):
        WeightBudget(limits=((WEIGHT, 60, 0),))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 25), st.floats(0, 3)), min_size=1, max_size=150),
       st.integers(0, 59))
def test_following_the_budget_never_reaches_the_limit(requests: list[tuple[int, float]], phase: int) -> None:
    """An exchange counting weight per UTC minute never sees the limit exceeded."""
    limit = 200
    t = ManualTime(1_700_000_000.0 + phase)
    b = WeightBudget(now=t.now, limits=((WEIGHT, 60, limit),))
    exchange_window, exchange_used = -1, 0
    for weight, gap in requests:
        t.advance(gap)
        while (d := b.delay(Cost(weight))) > 0:
            t.advance(d)
        b.reserve(Cost(weight))
        window = int(t.now() // 60)
        if window != exchange_window:
            exchange_window, exchange_used = window, 0
        exchange_used += weight
        assert exchange_used <= limit
        b.settle(Cost(weight), {"X-MBX-USED-WEIGHT-1M": str(exchange_used)})


async def test_gate_blocks_every_sender_until_retry_after() -> None:
    t = ManualTime()
    gate = BanGate(now=t.now, sleep=t.sleep)
    await gate.wait()  # open: returns at once
    gate.trip(7.0, banned=False)
    passed: list[int] = []

    async def sender(i: int) -> None:
        await gate.wait()
        passed.append(i)

    tasks = [asyncio.create_task(sender(i)) for i in range(3)]
    await until(lambda: len(t.sleepers) == 3)
    t.advance(6.9)
    await until(lambda: len(t.sleepers) == 3)
    assert passed == []
    t.advance(0.1)
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert sorted(passed) == [0, 1, 2]


async def test_gate_extension_while_waiting_is_honoured() -> None:
    t = ManualTime()
    gate = BanGate(now=t.now, sleep=t.sleep)
    gate.trip(2.0, banned=False)
    waiter = asyncio.create_task(gate.wait())
    await until(lambda: len(t.sleepers) == 1)
    gate.trip(10.0, banned=True)
    gate.trip(1.0, banned=False)  # a shorter later 429 never shortens the close
    t.advance(2.0)
    await until(lambda: len(t.sleepers) == 1)
    assert not waiter.done() and gate.remaining() == pytest.approx(8.0)
    t.advance(8.0)
    await asyncio.wait_for(waiter, 2)
    assert gate.is_open


def test_ban_is_logged_loudly(caplog: pytest.LogCaptureFixture) -> None:
    gate = BanGate(now=ManualTime().now)
    with caplog.at_level(logging.WARNING, logger="executor.exchange.ratelimit"):
        gate.trip(120.0, banned=True, source="order.place")
    assert any(r.levelno == logging.CRITICAL and "418" in r.getMessage() for r in caplog.records)
