"""Holding stream events during a gap fill, releasing them in arrival order, and keeping
gap fills from overlapping. The REST side is a scripted fake so the tests control when a
gap fill is "in the middle"."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from executor.exchange.binance_reports import SPOT
from executor.persistence.store import Store
from executor.reconcile import HoldingBuffer, Reconciler
from tests.reconcile.conftest import PREFIX, Updates

ORDER1 = "bot-20260801-0001"


def test_buffer_keeps_order_and_refuses_to_stop_while_full() -> None:
    buf: HoldingBuffer[int] = HoldingBuffer()
    assert buf.offer(1) is False and len(buf) == 0  # not holding: the caller applies it
    buf.hold()
    for i in range(5):
        assert buf.offer(i)
    buf.hold()  # idempotent: nothing lost
    assert buf.take(2) == [0, 1]
    with pytest.raises(RuntimeError):
        buf.stop_holding()
    assert buf.release() == [2, 3, 4]
    assert not buf.holding and buf.held_total == 5 and buf.max_depth == 5


def test_take_where_keeps_the_rest_in_order_and_loses_nothing_on_error() -> None:
    buf: HoldingBuffer[int] = HoldingBuffer()
    buf.hold()
    for i in (5, 1, 7, 2, 3, 9):
        buf.offer(i)
    assert buf.take_where(lambda i: i <= 5, limit=2) == [5, 1]
    assert list(buf) == [7, 2, 3, 9]

    def broken(i: int) -> bool:
        if i == 3:
            raise ValueError("unreadable")
        return i < 5

    with pytest.raises(ValueError):
        buf.take_where(broken)
    assert list(buf) == [7, 2, 3, 9]  # nothing taken: a failing check loses no event
    assert buf.take_where(lambda i: i <= 5) == [2, 3]
    assert buf.release() == [7, 9] and not buf.holding


class FakeGateway:
    """Answers a gap fill with nothing; ``open_orders`` can be made to wait."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.calls: list[str] = []
        self.orders: dict[str, dict[str, Any] | None] = {}
        self.update_time = 1

    async def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        self.calls.append("open_orders")
        self.entered.set()
        await self.gate.wait()
        return []

    async def get_order(self, symbol: str, client_id: str) -> dict[str, Any] | None:
        self.calls.append(f"get_order:{client_id}")
        return self.orders.get(client_id)

    async def my_trades(self, symbol: str, from_id: int | None = None, limit: int = 500) -> list[Any]:
        self.calls.append("my_trades")
        return []

    async def order_trades(self, symbol: str, order_id: int) -> list[Any]:
        self.calls.append(f"order_trades:{order_id}")
        return []

    async def account(self) -> dict[str, Any]:
        self.calls.append("account")
        return {"updateTime": self.update_time, "balances": []}


@pytest.fixture
def gw() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def grec(store: Store, gw: FakeGateway, updates: Updates) -> Reconciler:
    return Reconciler(store, gw, prefix=PREFIX, translate=SPOT, symbols=["BTCUSDT"], on_order_update=updates)


async def test_events_during_a_gap_fill_are_held_then_applied_in_arrival_order(
        store: Store, grec: Reconciler, gw: FakeGateway, updates: Updates, fx: dict[str, Any]) -> None:
    await store.record_order_intent(ORDER1, "BTCUSDT", "BUY", "LIMIT", quantity=Decimal("0.002"),
                                    price=Decimal("60000"), time_in_force="GTC")
    await grec.start()
    gw.gate.clear()
    run = asyncio.create_task(grec.gap_fill("stream_gap"))
    await asyncio.wait_for(gw.entered.wait(), 2)
    names = ["executionReport_NEW", "executionReport_TRADE_partial", "executionReport_TRADE_fill"]
    for n in names:
        grec.submit(fx[n])
    await asyncio.sleep(0.05)  # the writer gets every chance to (wrongly) apply them
    assert len(grec.holding) == 3
    assert await store.order_events(ORDER1) == []
    gw.gate.set()
    report = await asyncio.wait_for(run, 5)
    assert report.counts["events_released"] == 3
    events = await store.order_events(ORDER1)
    assert [e["execution_id"] for e in events] == [8641984, 8641990, 8642001]  # arrival order
    # Released together in one commit: one update per order, with everything new in it.
    assert [(u.status, len(u.fills)) for u in updates] == [("FILLED", 2)]
    assert not grec.holding.holding
    grec.submit(fx["balanceUpdate"])  # after the run: applied directly again
    await grec.drain()
    assert len(grec.holding) == 0 and grec.queued == 0
    await grec.stop()


async def test_gap_fill_requests_during_a_run_coalesce_into_one_follow_up(
        store: Store, grec: Reconciler, gw: FakeGateway) -> None:
    gw.gate.clear()
    first = asyncio.create_task(grec.gap_fill("start"))
    await asyncio.wait_for(gw.entered.wait(), 2)
    waiting = [asyncio.create_task(grec.gap_fill(f"stream_gap_{i}")) for i in range(3)]
    await asyncio.sleep(0.02)
    assert gw.calls.count("open_orders") == 1  # nothing overlaps the running one
    gw.gate.set()
    reports = await asyncio.wait_for(asyncio.gather(first, *waiting), 5)
    runs = await store.reconciliation_runs()
    assert [r["reason"] for r in runs] == ["start", "stream_gap_0+stream_gap_1+stream_gap_2"]
    assert all(r["outcome"] == "ok" for r in runs)
    assert reports[1] is reports[2] is reports[3]  # one follow-up served every request


async def test_unknown_order_not_found_becomes_not_placed_and_is_never_resent(
        store: Store, gw: FakeGateway, updates: Updates) -> None:
    # Grace over (0 ms here): the first reconciliation marks it NOT_FOUND (it still counts
    # against the limits), a later one confirms the absence: NOT_PLACED.
    grec = Reconciler(store, gw, prefix=PREFIX, translate=SPOT, symbols=["BTCUSDT"], on_order_update=updates,
                      not_found_grace_ms=0)
    cid = f"{PREFIX}-r1-o1"
    await store.record_order_intent(cid, "BTCUSDT", "BUY", "LIMIT", quantity=Decimal("0.001"),
                                    price=Decimal("50000"), time_in_force="GTC")
    await store.mark_order_sent(cid)
    await store.update_order_status(cid, "UNKNOWN", source="local")
    first = await grec.gap_fill("start")
    order = await store.get_order_by_client_id(cid)
    assert order is not None and order.status == "NOT_FOUND" and not order.is_final
    assert first.counts["orders_marked_not_found"] == 1 and first.counts["orders_not_placed"] == 0
    report = await grec.gap_fill("periodic")
    order = await store.get_order_by_client_id(cid)
    assert order is not None and order.status == "NOT_PLACED" and order.resolved_from_unknown
    assert report.counts["orders_not_placed"] == 1
    assert gw.calls.count(f"get_order:{cid}") == 2
    assert [(u.client_order_id, u.status) for u in updates] == [(cid, "NOT_FOUND"), (cid, "NOT_PLACED")]
    runs = await store.reconciliation_runs()
    assert runs[-1]["counts"]["orders_not_placed"] == 1


async def test_start_up_applies_the_grace_to_an_order_left_unknown(
        store: Store, grec: Reconciler, gw: FakeGateway) -> None:
    # A crash a moment ago left this order UNKNOWN: the start-up run gives it the same grace
    # (it may still be in flight inside the exchange), so nothing is concluded yet.
    cid = f"{PREFIX}-r1-o3"
    await store.record_order_intent(cid, "BTCUSDT", "BUY", "LIMIT", quantity=Decimal("0.001"),
                                    price=Decimal("50000"), time_in_force="GTC")
    await store.mark_order_sent(cid)
    await store.update_order_status(cid, "UNKNOWN", source="local")
    report = await grec.gap_fill("start")
    order = await store.get_order_by_client_id(cid)
    assert order is not None and order.status == "UNKNOWN"
    assert report.counts["orders_deferred"] == 1


async def test_a_recent_send_is_not_judged_by_a_not_found(store: Store, gw: FakeGateway) -> None:
    # A -2013 soon after the outcome became unknown may just mean "still in flight".
    rec = Reconciler(store, gw, prefix=PREFIX, translate=SPOT, not_found_grace_ms=60_000)
    cid = f"{PREFIX}-r1-o2"
    await store.record_order_intent(cid, "BTCUSDT", "BUY", "LIMIT", quantity=Decimal("0.001"),
                                    price=Decimal("50000"), time_in_force="GTC")
    await store.mark_order_sent(cid)
    report = await rec.gap_fill("stream_gap")
    order = await store.get_order_by_client_id(cid)
    assert order is not None and order.status == "SENT"
    assert report.counts["orders_deferred"] == 1


async def test_failed_gap_fill_is_recorded_and_releases_held_events(
        store: Store, grec: Reconciler, gw: FakeGateway, fx: dict[str, Any]) -> None:
    async def broken(symbol: str | None = None) -> list[Any]:
        grec.submit(fx["balanceUpdate"])  # arrives while the run holds events
        raise ConnectionError("exchange unreachable")

    gw.open_orders = broken  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await grec.gap_fill("stream_gap")
    (run,) = await store.reconciliation_runs()
    assert run["outcome"] == "error" and "unreachable" in run["error"]
    assert not grec.holding.holding and len(grec.holding) == 0
    assert run["counts"]["events_released"] == 1
