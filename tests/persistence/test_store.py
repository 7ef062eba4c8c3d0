"""The repository: record-before-send, monotonic status, exactly-once fills and events,
balances, runs, cancels, reconciliation runs and risk refusals."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.persistence.models import STATUS_RANK
from executor.persistence.store import (
    DuplicateClientOrderId,
    FillIn,
    OrderEventIn,
    StatusUpdateIn,
    Store,
    StoreError,
    _OrderState,
    merge_status,
)
from tests.persistence.conftest import FakeClock

D = Decimal


async def _placed(store: Store, cid: str = "bx-1-1", symbol: str = "BTCUSDT", side: str = "BUY") -> None:
    await store.record_order_intent(
        cid,
        symbol,
        side,
        "LIMIT",
        quantity="0.002",
        price="60000.00",
        time_in_force="GTC",
        decision_bid="59999.99",
        decision_ask="60000.01",
        decision_mark="60010.5",
        reason="basis 4.2 bps",
    )


def _exec_report(
    cid: str,
    order_id: int,
    exec_id: int,
    x: str,
    status: str,
    z: str,
    cum_quote: str,
    trade_id: int = -1,
    symbol: str = "BTCUSDT",
) -> dict[str, Any]:
    return {
        "e": "executionReport",
        "s": symbol,
        "c": cid,
        "i": order_id,
        "I": exec_id,
        "x": x,
        "X": status,
        "z": z,
        "Z": cum_quote,
        "t": trade_id,
        "E": 1000 + exec_id,
    }


# ---------------------------------------------------------------- orders


async def test_order_intent_is_recorded_before_send_with_decision_context(store: Store) -> None:
    run_id = await store.start_run("0.1.0", "sim", "abc")
    rec = await store.record_order_intent(
        "bx-1-1",
        "BTCUSDT",
        "BUY",
        "LIMIT",
        quantity="0.002",
        price=D("60000.00"),
        time_in_force="GTC",
        decision_bid=D("59999.99"),
        decision_ask="60000.01",
        decision_mark=D("60010.5"),
        decision_ms=5,
        reason="ask 4.2 bps under mark",
    )
    assert rec.status == "PENDING_SEND" and rec.run_id == run_id and not rec.external
    got = await store.get_order_by_client_id("bx-1-1")
    assert got == rec
    assert got.price == D("60000.00") and str(got.price) == "60000.00"
    assert got.decision_mark == D("60010.5") and got.reason == "ask 4.2 bps under mark"
    with pytest.raises(DuplicateClientOrderId, match="bx-1-1"):
        await _placed(store)
    assert await store.mark_order_sent("bx-1-1") is True
    sent = await store.get_order_by_client_id("bx-1-1")
    assert sent is not None and sent.status == "SENT" and sent.sent_ms is not None
    assert await store.mark_order_sent("bx-1-1") is False  # already moved on
    with pytest.raises(StoreError, match="no order"):
        await store.mark_order_sent("nope")


async def test_bad_order_input_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="BUY or SELL"):
        await store.record_order_intent("a", "BTCUSDT", "buy", "LIMIT")
    with pytest.raises(TypeError, match="float"):
        await store.record_order_intent("b", "BTCUSDT", "BUY", "LIMIT", price=60000.0)
    await _placed(store)
    with pytest.raises(StoreError, match="unknown order status"):
        await store.update_order_status("bx-1-1", "DONE", source="stream")
    assert await store.get_order_by_client_id("a") is None


async def test_status_never_regresses(store: Store) -> None:
    await _placed(store)
    await store.mark_order_sent("bx-1-1")
    ch = await store.update_order_status(
        "bx-1-1", "NEW", source="order_response", exchange_order_id=77, executed_qty="0", cum_quote_qty="0"
    )
    assert ch.applied and ch.previous_status == "SENT" and ch.status == "NEW"
    ch = await store.update_order_status(
        "bx-1-1", "PARTIALLY_FILLED", source="stream", executed_qty="0.001", cum_quote_qty="60.00000000"
    )
    assert ch.applied and ch.executed_qty == D("0.001")
    # A late NEW (reordered stream frame) changes nothing.
    ch = await store.update_order_status("bx-1-1", "NEW", source="stream", executed_qty="0")
    assert not ch.applied and ch.stale and ch.status == "PARTIALLY_FILLED"
    ch = await store.update_order_status(
        "bx-1-1", "FILLED", source="stream", executed_qty="0.002", cum_quote_qty="120.00000000"
    )
    assert ch.applied and ch.status == "FILLED"
    # Nothing moves a final order back, nor lowers its quantity; a contradicting final is flagged.
    ch = await store.update_order_status(
        "bx-1-1", "PARTIALLY_FILLED", source="gap_fill", executed_qty="0.001"
    )
    assert not ch.applied and ch.stale
    ch = await store.update_order_status("bx-1-1", "CANCELED", source="rest_query", executed_qty="0.002")
    assert not ch.applied and ch.conflict and "FILLED" in ch.conflict
    rec = await store.get_order_by_client_id("bx-1-1")
    assert rec is not None
    assert (rec.status, rec.executed_qty, rec.cum_quote_qty) == ("FILLED", D("0.002"), D("120.00000000"))
    assert rec.exchange_order_id == 77 and rec.acked_ms is not None and rec.status_source == "stream"
    assert rec.is_final


async def test_same_quantity_update_can_raise_quote_only(store: Store) -> None:
    await _placed(store)
    await store.update_order_status(
        "bx-1-1", "PARTIALLY_FILLED", source="stream", executed_qty="1", cum_quote_qty="10"
    )
    ch = await store.update_order_status(
        "bx-1-1", "PARTIALLY_FILLED", source="stream", executed_qty="1", cum_quote_qty="10"
    )
    assert not ch.applied  # exact duplicate


async def test_unknown_then_resolved_is_flagged(store: Store) -> None:
    await _placed(store)
    await store.mark_order_sent("bx-1-1")
    assert (await store.update_order_status("bx-1-1", "UNKNOWN", source="local")).applied
    ch = await store.update_order_status("bx-1-1", "NEW", source="rest_query", exchange_order_id=9)
    assert ch.resolved_from_unknown
    rec = await store.get_order_by_client_id("bx-1-1")
    assert rec is not None and rec.resolved_from_unknown and rec.status == "NEW"


async def test_not_placed_can_be_overruled_by_the_exchange(store: Store) -> None:
    await _placed(store)
    await store.update_order_status("bx-1-1", "UNKNOWN", source="local")
    await store.update_order_status("bx-1-1", "NOT_PLACED", source="rest_query", reject_reason="-2013")
    ch = await store.update_order_status(
        "bx-1-1", "FILLED", source="stream", exchange_order_id=5, executed_qty="0.002"
    )
    assert ch.applied and ch.status == "FILLED"


async def test_exchange_id_conflict_is_not_written(store: Store) -> None:
    await _placed(store)
    await store.update_order_status("bx-1-1", "NEW", source="order_response", exchange_order_id=1)
    ch = await store.update_order_status("bx-1-1", "FILLED", source="stream", exchange_order_id=2)
    assert ch.conflict and not ch.applied
    rec = await store.get_order_by_client_id("bx-1-1")
    assert rec is not None and rec.exchange_order_id == 1 and rec.status == "NEW"


async def test_update_by_exchange_id_and_missing_order(store: Store) -> None:
    await _placed(store)
    await store.update_order_status("bx-1-1", "NEW", source="order_response", exchange_order_id=31)
    ch = await store.update_order_status(
        None, "CANCELED", source="stream", symbol="BTCUSDT", exchange_order_id=31
    )
    assert ch.applied and ch.status == "CANCELED"
    missing = await store.update_order_status("nobody", "NEW", source="stream")
    assert not missing.found and not missing.applied


async def test_orders_not_final(store: Store) -> None:
    for i, status in enumerate(["NEW", "FILLED", "UNKNOWN", "CANCELED", None]):
        cid = f"bx-1-{i}"
        await _placed(store, cid)
        if status:
            await store.update_order_status(cid, status, source="stream")
    open_ids = [o.client_order_id for o in await store.orders_not_final()]
    assert open_ids == ["bx-1-0", "bx-1-2", "bx-1-4"]
    assert await store.orders_not_final(symbol="ETHUSDT") == []


@settings(max_examples=200, deadline=None)
@given(st.permutations(range(6)))
def test_merge_is_order_independent(perm: list[int]) -> None:
    """Whatever order the observations arrive in, the order ends in the same state."""
    updates = [
        StatusUpdateIn("c", "SENT", "local"),
        StatusUpdateIn("c", "NEW", "stream", executed_qty=D(0), cum_quote_qty=D(0), exchange_order_id=1),
        StatusUpdateIn("c", "PARTIALLY_FILLED", "stream", executed_qty=D(1), cum_quote_qty=D(10)),
        StatusUpdateIn("c", "PARTIALLY_FILLED", "stream", executed_qty=D(2), cum_quote_qty=D("20.5")),
        StatusUpdateIn("c", "FILLED", "stream", executed_qty=D(3), cum_quote_qty=D("31.5")),
        StatusUpdateIn("c", "PARTIALLY_FILLED", "gap_fill", executed_qty=D(1), cum_quote_qty=D(10)),
    ]
    st_ = _OrderState(
        1, "c", "S", "BUY", None, "PENDING_SEND", "local", D(0), D(0), None, None, False, None, 0
    )
    seen_rank, seen_qty = 0, D(0)
    for i in perm:
        merge_status(st_, updates[i], 1)
        assert STATUS_RANK[st_.status] >= seen_rank and st_.executed_qty >= seen_qty
        seen_rank, seen_qty = STATUS_RANK[st_.status], st_.executed_qty
    assert (st_.status, st_.executed_qty, st_.cum_quote_qty, st_.exchange_order_id) == (
        "FILLED",
        3,
        D("31.5"),
        1,
    )


# ---------------------------------------------------------------- events and fills


async def test_order_events_deduplicate(store: Store) -> None:
    await _placed(store)
    ev = _exec_report("bx-1-1", 77, 1, "NEW", "NEW", "0", "0")
    kw = dict(
        exchange_order_id=77, client_order_id="bx-1-1", execution_id=1, execution_type="NEW", event_ms=1001
    )
    assert await store.add_order_event("BTCUSDT", "NEW", "stream", ev, **kw) is True
    assert await store.add_order_event("BTCUSDT", "NEW", "stream", ev, **kw) is False
    # The same executionId on another order of the same symbol is another event.
    assert (
        await store.add_order_event("BTCUSDT", "NEW", "stream", ev, **{**kw, "exchange_order_id": 78}) is True
    )
    # REST observations dedupe on the observed state; 0.5 and 0.50000000 are the same state.
    rest = {"status": "PARTIALLY_FILLED", "executedQty": "0.50000000", "updateTime": 5}
    obs = dict(exchange_order_id=77, client_order_id="bx-1-1", executed_qty="0.50000000", event_ms=5)
    assert await store.add_order_event("BTCUSDT", "PARTIALLY_FILLED", "rest_query", rest, **obs) is True
    assert (
        await store.add_order_event(
            "BTCUSDT", "PARTIALLY_FILLED", "gap_fill", rest, **{**obs, "executed_qty": D("0.5")}
        )
        is False
    )
    assert (
        await store.add_order_event("BTCUSDT", "FILLED", "rest_query", rest, **{**obs, "executed_qty": "1"})
        is True
    )
    events = await store.order_events("bx-1-1")
    assert [e["source"] for e in events] == ["stream", "stream", "rest_query", "rest_query"]
    assert events[0]["order_id"] is not None
    assert '"I":1' in events[0]["payload"]  # raw payload kept
    with pytest.raises(StoreError, match="exchange order id"):
        await store.add_order_event("BTCUSDT", "NEW", "stream", {}, execution_id=3)


async def test_raw_payload_text_is_kept_verbatim(store: Store) -> None:
    raw = '{"e":"executionReport","p":"60000.10000000","i":5,"I":9}'
    await store.add_order_event("BTCUSDT", "NEW", "stream", raw, exchange_order_id=5, execution_id=9)
    async with store.engine.connect() as conn:
        stored = (await conn.execute(sa.text("SELECT payload FROM order_events"))).scalar()
    assert stored == raw


async def test_fills_are_unique_per_symbol_and_trade_id_across_sources(store: Store) -> None:
    await _placed(store)
    await store.update_order_status("bx-1-1", "NEW", source="order_response", exchange_order_id=77)
    first = dict(
        commission="0.00000200",
        commission_asset="BTC",
        is_maker=False,
        trade_ms=10,
        client_order_id="bx-1-1",
        exchange_order_id=77,
    )
    assert await store.add_fill("BTCUSDT", 500, "60000.00", "0.001", "order_response", **first) is True
    assert await store.add_fill("BTCUSDT", 500, "60000.00", "0.001", "stream", **first) is False
    assert (
        await store.add_fill("BTCUSDT", 500, "60000.00", "0.001", "gap_fill", exchange_order_id=77) is False
    )
    assert await store.add_fill("ETHUSDT", 500, "3000", "0.1", "gap_fill") is True  # trade ids are per symbol
    assert (
        await store.add_fill(
            "BTCUSDT",
            501,
            "60001",
            "0.001",
            "gap_fill",
            exchange_order_id=77,
            quote_qty="60.001",
            trade_ms=11,
        )
        is True
    )
    fills = await store.fills_for_order("bx-1-1")
    assert [(f.trade_id, f.source) for f in fills] == [(500, "order_response"), (501, "gap_fill")]
    assert fills[0].side == "BUY" and fills[1].client_order_id == "bx-1-1"  # linked through the exchange id
    assert fills[0].quote_qty == D("60.00000") and fills[0].commission == D("0.00000200")
    assert await store.last_trade_id("BTCUSDT") == 501
    assert await store.last_trade_id("ETHUSDT") == 500
    assert await store.last_trade_id("BNBUSDT") is None
    # A fill received after a stream gap began does not move the gap-fill starting point.
    gap_start = store.clock()
    await store.add_fill("BTCUSDT", 900, "60002", "0.001", "stream")
    assert await store.last_trade_id("BTCUSDT") == 900
    assert await store.last_trade_id("BTCUSDT", received_before_ms=gap_start) == 501
    with pytest.raises(StoreError, match="source"):
        await store.add_fill("BTCUSDT", 600, "1", "1", "websocket")
    with pytest.raises(StoreError, match="not a trade"):
        await store.add_fill("BTCUSDT", -1, "1", "1", "stream")
    async with store.engine.connect() as conn:
        n = (await conn.execute(sa.text("SELECT count(*) FROM fills WHERE symbol='BTCUSDT'"))).scalar()
    assert n == 3


async def test_concurrent_writers_store_each_fill_once(db_url: str) -> None:
    """Two stores (two engines, as two processes would) racing on the same trades."""
    a, b = await Store.open(db_url), await Store.open(db_url, upgrade=False)
    try:

        async def feed(s: Store, source: str) -> int:
            added = 0
            for t in range(60):
                added += await s.add_fill("BTCUSDT", t, "1", "1", source)
            return added

        got = await asyncio.wait_for(
            asyncio.gather(feed(a, "stream"), feed(b, "gap_fill"), feed(a, "order_response")), timeout=30
        )
        assert sum(got) == 60
        assert len(await a.fills(symbol="BTCUSDT")) == 60
    finally:
        await a.close()
        await b.close()


_REPORTS = [  # (execution id, x, X, z, Z, trade id) of one order's life
    (1, "NEW", "NEW", "0", "0", -1),
    (2, "TRADE", "PARTIALLY_FILLED", "1", "10", 11),
    (3, "TRADE", "PARTIALLY_FILLED", "2", "20.5", 12),
    (4, "TRADE", "FILLED", "3", "31.5", 13),
]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order=st.lists(st.sampled_from(range(len(_REPORTS))), min_size=1, max_size=12), split=st.integers(1, 4)
)
async def test_shuffled_duplicated_reports_converge(store: Store, order: list[int], split: int) -> None:
    """Any arrival order, with duplicates, in any batching, ends in the one true state."""
    cid = f"bx-h-{next(_ids)}"
    xid = next(_ids)
    await _placed(store, cid)
    seq = order + list(range(len(_REPORTS)))  # everything arrives at least once eventually
    for start in range(0, len(seq), split):
        async with store.batch() as b:
            for k in seq[start : start + split]:
                eid, x, status, z, cum, tid = _REPORTS[k]
                rep = _exec_report(cid, xid, eid, x, status, z, cum, trade_id=tid)
                b.add_order_event(
                    "BTCUSDT",
                    status,
                    "stream",
                    rep,
                    exchange_order_id=xid,
                    client_order_id=cid,
                    execution_id=eid,
                    execution_type=x,
                    trade_id=tid if tid > 0 else None,
                )
                if tid > 0:
                    b.add_fill("BTCUSDT", tid + xid * 100, "10", "1", "stream", client_order_id=cid)
                b.update_order_status(
                    cid,
                    status,
                    source="stream",
                    exchange_order_id=xid,
                    executed_qty=D(z),
                    cum_quote_qty=D(cum),
                )
    rec = await store.get_order_by_client_id(cid)
    assert rec is not None
    assert (rec.status, rec.executed_qty, rec.cum_quote_qty) == ("FILLED", D(3), D("31.5"))
    assert len(await store.fills_for_order(cid)) == 3
    assert len(await store.order_events(cid)) == len(_REPORTS)


_ids = iter(range(1000, 10**9))


# ---------------------------------------------------------------- batches


async def test_batch_commits_together_and_reports(store: Store) -> None:
    await _placed(store)
    await store.update_order_status("bx-1-1", "NEW", source="order_response", exchange_order_id=77)
    async with store.batch() as b:
        for i in range(1, 201):
            rep = _exec_report("bx-1-1", 77, i, "TRADE", "PARTIALLY_FILLED", str(i), str(i * 10), trade_id=i)
            for _ in range(2):  # every frame twice
                b.add_order_event(
                    "BTCUSDT",
                    "PARTIALLY_FILLED",
                    "stream",
                    rep,
                    exchange_order_id=77,
                    client_order_id="bx-1-1",
                    execution_id=i,
                    execution_type="TRADE",
                    trade_id=i,
                )
                b.add_fill("BTCUSDT", i, "10", "1", "stream", exchange_order_id=77, client_order_id="bx-1-1")
                b.update_order_status(
                    "bx-1-1", "PARTIALLY_FILLED", source="stream", executed_qty=D(i), cum_quote_qty=D(i * 10)
                )
    r = b.result
    assert r.events_added == 200 and r.events_duplicate == 200
    assert len(r.fills_added) == 200 and r.fills_duplicate == 200
    assert sum(c.applied for c in r.status_changes) == 200
    rec = await store.get_order_by_client_id("bx-1-1")
    assert rec is not None and rec.executed_qty == 200 and rec.cum_quote_qty == 2000
    assert len(await store.fills_for_order("bx-1-1")) == 200
    # Replaying the whole batch is a no-op.
    again = await store.apply_batch(b.items)
    assert (
        again.events_added == 0 and not again.fills_added and not any(c.applied for c in again.status_changes)
    )


async def test_batch_is_all_or_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.batch() as b:
            b.add_fill("BTCUSDT", 1, "1", "1", "stream")
            raise RuntimeError("reconciler crashed mid-batch")
    with pytest.raises(StoreError):
        await store.apply_batch(
            [FillIn("BTCUSDT", 2, D(1), D(1), "stream"), FillIn("BTCUSDT", 3, D(1), D(1), "bogus")]
        )
    assert await store.last_trade_id("BTCUSDT") is None


async def test_external_orders_are_recorded_once_and_linked(store: Store) -> None:
    await store.start_run("0.1.0", "sim", "h")
    # A fill that arrived before anyone knew its order is linked once the order is recorded.
    await store.add_fill("BTCUSDT", 6, "61000", "0.001", "gap_fill", exchange_order_id=900)
    rec = await store.record_external_order(
        symbol="BTCUSDT",
        exchange_order_id=900,
        client_order_id="web_abc",
        side="SELL",
        type="LIMIT",
        status="NEW",
        source="stream",
        price=D("61000"),
        quantity=D("0.01"),
        event_ms=50,
    )
    assert rec.external and rec.status == "NEW" and rec.client_order_id == "web_abc"
    again = await store.record_external_order(
        symbol="BTCUSDT",
        exchange_order_id=900,
        client_order_id="web_abc",
        side="SELL",
        type="LIMIT",
        status="NEW",
        source="gap_fill",
    )
    assert again.id == rec.id
    # Another program reusing a client id we hold does not merge the two orders.
    await _placed(store, "bx-1-1")
    await store.update_order_status("bx-1-1", "NEW", source="order_response", exchange_order_id=77)
    other = await store.record_external_order(
        symbol="BTCUSDT",
        exchange_order_id=901,
        client_order_id="bx-1-1",
        side="SELL",
        type="LIMIT",
        status="NEW",
        source="gap_fill",
    )
    assert other.client_order_id != "bx-1-1" and other.external
    # Its events and fills, which carry the reused id, attach to it, not to our order.
    await store.add_fill(
        "BTCUSDT", 8, "61000", "0.01", "stream", client_order_id="bx-1-1", exchange_order_id=901
    )
    assert [f.trade_id for f in await store.fills_for_order(other.client_order_id)] == [8]
    assert await store.fills_for_order("bx-1-1") == []
    r = await store.apply_batch(
        [
            OrderEventIn("BTCUSDT", "FILLED", "stream", {}, exchange_order_id=900, execution_id=2),
            FillIn("BTCUSDT", 7, D("61000"), D("0.01"), "stream", exchange_order_id=900),
            StatusUpdateIn(
                None, "FILLED", "stream", symbol="BTCUSDT", exchange_order_id=900, executed_qty=D("0.01")
            ),
        ]
    )
    assert r.events_added == 1 and r.fills_added == [("BTCUSDT", 7)]
    (fill,) = [f for f in await store.fills(symbol="BTCUSDT") if f.trade_id == 7]
    assert fill.order_id == rec.id and fill.side == "SELL"
    (early,) = [f for f in await store.fills(symbol="BTCUSDT") if f.trade_id == 6]
    assert early.order_id == rec.id
    summary = await store.summary()
    assert summary["fills"] == 3 and summary["orders"]["FILLED"] == 1 and summary["open_orders"] == 2
    assert [f.trade_id for f in await store.recent_fills(2)] == [7, 8]  # newest stored first
    assert (await store.get_order_by_exchange_id("BTCUSDT", 900)).status == "FILLED"  # type: ignore[union-attr]


# ---------------------------------------------------------------- balances and account


async def test_balances_follow_newer_events_and_snapshots_win(store: Store) -> None:
    pos = {"e": "outboundAccountPosition", "E": 100, "u": 99, "B": []}
    changed = await store.set_balances(
        [("USDT", "1000.00", "0"), ("BTC", "0.1", "0.002")],
        "outboundAccountPosition",
        "E=100,u=99",
        event_ms=99,
        payload=pos,
    )
    assert sorted(changed) == ["BTC", "USDT"]
    # An older event (reordered) is logged but does not overwrite.
    assert (
        await store.set_balances([("USDT", "900", "0")], "outboundAccountPosition", "E=90,u=89", event_ms=89)
        == []
    )
    bal = await store.get_balances()
    assert bal["USDT"].free == D("1000.00") and bal["BTC"].total == D("0.102")
    assert bal["USDT"].event_ref == "E=100,u=99"
    # Re-applying the same event adds no balance event.
    await store.set_balances([("USDT", "1000.00", "0")], "outboundAccountPosition", "E=100,u=99", event_ms=99)
    # A REST snapshot is forced: the exchange's value wins.
    assert await store.set_balances(
        [("USDT", "950", "0")], "rest_snapshot", "snap-1", event_ms=50, force=True
    )
    assert (await store.get_balances())["USDT"].free == D("950")
    upd = {"e": "balanceUpdate", "a": "USDT", "d": "10.5", "T": 120}
    assert (
        await store.add_balance_event(
            "balanceUpdate", "USDT", "stream", delta="10.5", event_ms=120, payload=upd
        )
        is True
    )
    assert (
        await store.add_balance_event(
            "balanceUpdate", "USDT", "stream", delta="10.50", event_ms=120, payload=upd
        )
        is False
    )
    async with store.engine.connect() as conn:
        kinds = (await conn.execute(sa.text("SELECT kind, asset FROM balance_events ORDER BY id"))).all()
    assert [k for k, _ in kinds] == ["outboundAccountPosition"] * 3 + ["rest_snapshot", "balanceUpdate"]


async def test_futures_updates_deduplicate(store: Store) -> None:
    ev = {
        "e": "ACCOUNT_UPDATE",
        "E": 5,
        "T": 4,
        "a": {
            "m": "ORDER",
            "B": [{"a": "USDT", "wb": "10.5"}],
            "P": [{"s": "BTCUSDT", "pa": "0.1", "ep": "60000"}],
        },
    }
    kw = dict(event_ms=5, transaction_ms=4, reason="ORDER", balances=ev["a"]["B"], positions=ev["a"]["P"])
    assert await store.add_futures_update(ev, **kw) is True
    assert await store.add_futures_update(ev, **kw) is False
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.text("SELECT balances, positions FROM futures_account_updates"))).one()
    assert '"wb":"10.5"' in row.balances and '"pa":"0.1"' in row.positions


# ---------------------------------------------------------------- runs, cancels, reconciliation, risk


async def test_runs_and_abandoned_runs(store: Store) -> None:
    first = await store.start_run("0.1.0", "sim", "h1")
    second = await store.start_run("0.1.0", "sim", "h2")  # first never finished: killed
    assert (await store.get_run(first))["ended"] == "abandoned"  # type: ignore[index]
    await store.finish_run(ended="clean", reason="duration reached")
    run = await store.get_run(second)
    assert run is not None and run["ended"] == "clean" and run["stopped_ms"] >= run["started_ms"]


async def test_cancels_link_to_the_original_order(store: Store) -> None:
    await _placed(store)
    assert await store.record_cancel("bx-1-1c", "bx-1-1", "BTCUSDT") is True
    assert await store.record_cancel("bx-1-1c", "bx-1-1", "BTCUSDT") is False
    assert await store.original_client_id("bx-1-1c") == "bx-1-1"
    assert await store.original_client_id("nope") is None
    await store.resolve_cancel("bx-1-1c", "CANCELED", detail="stream")
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.text("SELECT outcome, order_id FROM cancels"))).one()
    assert row.outcome == "CANCELED" and row.order_id is not None


async def test_reconciliation_runs_record_counts_and_discrepancies(store: Store, clock: FakeClock) -> None:
    run_id = await store.start_run("0.1.0", "sim", "h")
    rid = await store.start_reconciliation("start")
    clock.ms += 250
    disc = [{"kind": "balance", "asset": "USDT", "ours": D("1.10"), "exchange": D("1.2")}]
    await store.finish_reconciliation(rid, found=3, fixed=2, counts={"fills_added": 2}, discrepancies=disc)
    (rec,) = await store.reconciliation_runs(run_id=run_id)
    assert rec["outcome"] == "ok" and rec["found"] == 3 and rec["fixed"] == 2 and rec["duration_ms"] >= 250
    assert rec["discrepancies"] == [{"kind": "balance", "asset": "USDT", "ours": "1.10", "exchange": "1.2"}]
    rid2 = await store.start_reconciliation("stream_gap")
    await store.finish_reconciliation(rid2, error="HTTP 503")
    assert (await store.reconciliation_runs())[1]["outcome"] == "error"
    with pytest.raises(StoreError):
        await store.finish_reconciliation(999)


async def test_risk_refusals(store: Store) -> None:
    run_id = await store.start_run("0.1.0", "sim", "h")
    rid = await store.add_risk_refusal(
        "BTCUSDT",
        "place BUY LIMIT 1 @ 60000",
        "notional 60000 > max 500",
        rule="max_order_notional",
        side="BUY",
        price="60000",
        quantity="1",
        details={"limit": D("500")},
    )
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.text("SELECT * FROM risk_refusals WHERE id = :i"), {"i": rid})).one()
    assert row.run_id == run_id and row.rule == "max_order_notional" and D(row.price) == D("60000")
    assert row.details == '{"limit":"500"}'


async def test_intents_queued_together_are_committed_in_one_transaction(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # The two legs of a hedge are queued in one loop iteration: one commit (one fsync under
    # synchronous=FULL) makes both durable; each caller gets its own row back.
    await store.start_run("t", "sim", "h")
    commits: list[int] = []
    autocommit = store._autocommit

    async def counting(key: Any, build: Any, params: Any) -> Any:
        commits.append(len(params))
        return await autocommit(key, build, params)

    monkeypatch.setattr(store, "_autocommit", counting)
    spot = store.record_order_intent("bx-g-o1", "BTCUSDT", "BUY", "LIMIT", quantity=D("0.001"),
                                     price=D("100"))
    perp = store.record_order_intent("bx-g-o2", "UM:BTCUSDT", "SELL", "MARKET", quantity=D("0.001"))
    a, b = await asyncio.gather(spot, perp)
    assert len(commits) == 1
    assert (a.client_order_id, a.symbol) == ("bx-g-o1", "BTCUSDT")
    assert (b.client_order_id, b.symbol) == ("bx-g-o2", "UM:BTCUSDT")
    assert a.id != b.id and a.status == b.status == "PENDING_SEND"
    for rec in (a, b):
        stored = await store.get_order_by_client_id(rec.client_order_id)
        assert stored is not None and stored.id == rec.id and stored.quantity == D("0.001")
    # A taken id in a group fails only its own caller; a repeat within the group too.
    again = store.record_order_intent("bx-g-o1", "BTCUSDT", "BUY", "LIMIT", quantity=D("1"), price=D("1"))
    fresh = store.record_order_intent("bx-g-o3", "BTCUSDT", "BUY", "LIMIT", quantity=D("1"), price=D("1"))
    twice = store.record_order_intent("bx-g-o3", "BTCUSDT", "SELL", "LIMIT", quantity=D("2"), price=D("1"))
    results = await asyncio.gather(again, fresh, twice, return_exceptions=True)
    assert isinstance(results[0], DuplicateClientOrderId) and isinstance(results[2], DuplicateClientOrderId)
    assert not isinstance(results[1], BaseException) and results[1].side == "BUY"
    assert len(commits) == 2
    assert (await store.get_order_by_client_id("bx-g-o3")).side == "BUY"  # type: ignore[union-attr]


async def test_a_failed_group_commit_fails_every_intent_in_it(store: Store,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    await store.start_run("t", "sim", "h")

    async def failing(*_: Any) -> Any:
        raise OSError("disk I/O error")

    monkeypatch.setattr(store, "_autocommit", failing)
    legs = [store.record_order_intent(f"bx-f-o{i}", "BTCUSDT", "BUY", "LIMIT", quantity=D("1"), price=D("1"))
            for i in range(2)]
    results = await asyncio.gather(*legs, return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    monkeypatch.undo()
    assert await store.get_order_by_client_id("bx-f-o0") is None
    # The writer recovers: the next intent is committed normally.
    assert (await store.record_order_intent("bx-f-o9", "BTCUSDT", "BUY", "LIMIT", quantity=D("1"))).id
