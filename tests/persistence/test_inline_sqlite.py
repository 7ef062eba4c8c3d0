"""Inline SQLite (``create_engine(..., inline=True)``): a max-speed replay's ledger writes the
same rows as through aiosqlite's worker thread, errors raised the same way, and no thread;
a live bot's order path commits on the loop's thread and, if the ledger is busy, waits
for it without blocking the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from executor.persistence.migrate import ensure_schema
from executor.persistence.store import DuplicateClientOrderId, Store
from tests.persistence.conftest import FakeClock, url_for


async def _scenario(store: Store) -> None:
    await store.start_run("test", "sim", "cfg")
    await store.record_order_intent(
        "bx-1-1", "BTCUSDT", "BUY", "LIMIT", quantity="0.002", price="60000.00", time_in_force="GTC",
        decision_bid="59999.99", decision_ask="60000.01", decision_mark="60010.5", reason="basis",
    )
    with pytest.raises(DuplicateClientOrderId):
        await store.record_order_intent("bx-1-1", "BTCUSDT", "BUY", "LIMIT", quantity="0.002", price="1")
    await store.update_order_status("bx-1-1", "NEW", source="order_response", exchange_order_id=77)
    async with store.batch() as b:
        for i in range(1, 4):
            rep = {"e": "executionReport", "s": "BTCUSDT", "c": "bx-1-1", "i": 77, "x": "TRADE",
                   "X": "PARTIALLY_FILLED" if i < 3 else "FILLED", "t": i, "E": 1000 + i}
            ids = {"exchange_order_id": 77, "client_order_id": "bx-1-1"}
            b.add_order_event("BTCUSDT", rep["X"], "stream", rep, execution_id=i, execution_type="TRADE",
                              trade_id=i, **ids)
            b.add_fill("BTCUSDT", i, "60000", "0.0006", "stream", **ids)
            b.update_order_status("bx-1-1", rep["X"], source="stream", executed_qty=Decimal("0.0006") * i,
                                  cum_quote_qty=Decimal("36") * i)
    await store.set_balances([("USDT", "1000.00", "0"), ("BTC", "0.1", "0.002")], "outboundAccountPosition",
                             "E=100", event_ms=99, payload={"e": "outboundAccountPosition"})
    await store.set_balances([("USDT", "900", "0")], "outboundAccountPosition", "E=90", event_ms=89)
    await store.set_balances([("USDT", "950", "0")], "rest_snapshot", "snap-1", event_ms=50, force=True)
    await store.add_balance_event("balanceUpdate", "USDT", "stream", delta="10.5", event_ms=120)


def _dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        tables = [r[0] for r in rows]
        return {t: con.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall() for t in tables}
    finally:
        con.close()


async def test_inline_store_writes_the_same_rows_without_a_thread(tmp_path: Path) -> None:
    dumps = []
    for inline in (False, True):
        path = tmp_path / f"{'inline' if inline else 'thread'}.db"
        await ensure_schema(url_for(path))
        before = set(threading.enumerate())
        store = await Store.open(url_for(path), clock=FakeClock(), upgrade=False, inline=inline)
        try:
            await _scenario(store)
            started = set(threading.enumerate()) - before
            if inline:
                assert not started, f"inline SQLite started {started}"
            else:
                assert started  # the check sees aiosqlite's worker thread when there is one
        finally:
            await store.close()
        dumps.append(_dump(path))
    assert dumps[0] == dumps[1]
    assert dumps[1]["fills"] and dumps[1]["balance_events"]


# -- a live bot's order path (``Store._autocommit``): on the loop's thread, busy -> the thread


async def _open_ledger(path: Path, synchronous: str) -> Store:
    await ensure_schema(url_for(path))
    store = await Store.open(f"{url_for(path)}?synchronous={synchronous}", clock=FakeClock(), upgrade=False)
    await store.start_run("test", "testnet", "cfg")
    return store


@pytest.mark.parametrize("synchronous", ["normal", "full"])
async def test_an_order_intent_commits_on_the_loops_thread(tmp_path: Path, synchronous: str) -> None:
    # The request is held until its record is committed; through aiosqlite's worker thread that
    # commit came back through call_soon_threadsafe (a thread switch and a loop wake-up, GIL
    # contention with the request being prepared: 1.0-1.4 ms). Inline it needs neither.
    store = await _open_ledger(tmp_path / "l.db", synchronous)
    loop = asyncio.get_running_loop()
    handed_back: list[object] = []
    original = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, **kw: Any) -> Any:
        handed_back.append(callback)
        return original(callback, *args, **kw)

    try:
        # The first one opens the inline connection.
        await store.record_order_intent("bx-w-o0", "BTCUSDT", "BUY", "LIMIT", quantity="1", price="1")
        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        try:
            fut = store.record_order_intent("bx-w-o1", "BTCUSDT", "BUY", "LIMIT", quantity="0.002",
                                            price="60000.00", reason="basis")
            rec = await asyncio.wait_for(fut, 10)
            assert await store.mark_order_sent("bx-w-o1", at_ms=5)
        finally:
            del loop.call_soon_threadsafe
        assert handed_back == []
        stored = await store.get_order_by_client_id("bx-w-o1")
        assert stored is not None and stored.id == rec.id and stored.status == "SENT" and stored.sent_ms == 5
        assert store.inline_busy == 0
    finally:
        await store.close()


async def test_a_busy_ledger_delays_the_order_intent_without_blocking_the_loop(tmp_path: Path) -> None:
    # The inline connection never blocks on a lock (the loop must not stall): while another
    # connection holds the write lock (an audit checkpoint in a child process, the lease's
    # heartbeat thread) the intent is tried again every few ms, then commits once it is free.
    path = tmp_path / "busy.db"
    store = await _open_ledger(path, "full")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        fut = store.record_order_intent("bx-b-o1", "BTCUSDT", "SELL", "LIMIT", quantity="0.5", price="10")
        done, _ = await asyncio.wait([fut], timeout=0.3)  # the loop runs meanwhile
        assert not done and store.inline_busy >= 2  # tried, and tried again
        other.execute("COMMIT")
        rec = await asyncio.wait_for(fut, 10)
        stored = await store.get_order_by_client_id("bx-b-o1")
        assert stored is not None and stored.id == rec.id and stored.side == "SELL"
        # The lock is free again: the next one goes through at once.
        tries = store.inline_busy
        await store.record_order_intent("bx-b-o2", "BTCUSDT", "SELL", "LIMIT", quantity="0.5", price="10")
        assert store.inline_busy == tries
    finally:
        other.close()
        await store.close()
