"""External orders in one batch: recorded set-based (a fixed number of statements, not four
per order), with the same rows, renames, skips and orphan links as one by one."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import sqlalchemy as sa

from executor.persistence.models import OrderEvent
from executor.persistence.store import ExternalOrderIn, FillIn, OrderEventIn, Store

D = Decimal
events_t = OrderEvent.__table__


def _ext(xid: int, cid: str, symbol: str = "BTCUSDT", status: str = "NEW") -> ExternalOrderIn:
    return ExternalOrderIn(symbol, xid, cid, "SELL", "LIMIT", status, "stream",
                           price=D("61000"), quantity=D("0.01"), event_ms=50 + xid)


async def _ours(store: Store, cid: str, xid: int | None = None) -> None:
    await store.record_order_intent(cid, "BTCUSDT", "BUY", "LIMIT", quantity="0.002", price="60000")
    if xid is not None:
        await store.update_order_status(cid, "NEW", source="order_response", exchange_order_id=xid)


async def test_a_batch_of_externals_matches_one_by_one(store: Store) -> None:
    await store.start_run("0.1.0", "sim", "h")
    await _ours(store, "bx-1")  # ours, not acknowledged yet: an external under its id is ours
    await _ours(store, "bx-2", xid=77)  # ours, acknowledged: another order reusing its id
    # Rows stored before anyone knew their order.
    await store.add_fill("BTCUSDT", 6, "61000", "0.001", "gap_fill", exchange_order_id=900)
    await store.add_fill("ETHUSDT", 7, "3000", "0.1", "gap_fill", exchange_order_id=905)
    await store.apply_batch([OrderEventIn("BTCUSDT", "NEW", "stream", {}, exchange_order_id=901,
                                          execution_id=1)])
    many = [_ext(1000 + i, f"m{i}") for i in range(40)]
    batch = [
        _ext(900, "web_a"),
        _ext(900, "web_a"),  # the same order twice in the batch: once
        _ext(901, "web_a"),  # the same client id, another order: kept apart
        _ext(902, "bx-1"),  # our unacknowledged order: not an external
        _ext(903, "bx-2"),  # reuses our acknowledged order's id: kept apart
        _ext(905, "eth_1", symbol="ETHUSDT"),
        *many,
        # An event of an external of this same batch attaches to it.
        OrderEventIn("BTCUSDT", "CANCELED", "stream", {}, exchange_order_id=1000, execution_id=2),
    ]
    res = await store.apply_batch(batch)
    assert res.external_orders_added == ["web_a", "web_a#x901", "bx-2#x903", "eth_1",
                                         *(f"m{i}" for i in range(40))]
    for symbol, xid, cid in [("BTCUSDT", 900, "web_a"), ("BTCUSDT", 901, "web_a#x901"),
                             ("BTCUSDT", 903, "bx-2#x903"), ("ETHUSDT", 905, "eth_1"),
                             ("BTCUSDT", 1039, "m39")]:
        rec = await store.get_order_by_exchange_id(symbol, xid)
        assert rec is not None and rec.client_order_id == cid and rec.external
        assert rec.side == "SELL" and rec.price == D("61000") and rec.executed_qty == 0
        assert rec.acked_ms == 50 + xid and rec.exchange_update_ms == 50 + xid
    assert await store.get_order_by_exchange_id("BTCUSDT", 902) is None
    ours = await store.get_order_by_client_id("bx-1")
    assert ours is not None and not ours.external
    assert [f.trade_id for f in await store.fills_for_order("web_a")] == [6]
    assert [f.trade_id for f in await store.fills_for_order("eth_1")] == [7]
    async with store.engine.connect() as conn:
        linked = (await conn.execute(sa.select(events_t.c.order_id).where(
            events_t.c.exchange_order_id == 901))).scalars().all()
    other = await store.get_order_by_client_id("web_a#x901")
    assert other is not None and linked == [other.id]
    assert [e["status"] for e in await store.order_events("m0")] == ["CANCELED"]
    # Applied again (a gap fill overlapping the stream): nothing new.
    again = await store.apply_batch(batch)
    assert again.external_orders_added == []


async def test_a_fill_stored_with_its_external_in_one_batch_is_linked(store: Store) -> None:
    res = await store.apply_batch([_ext(910, "web_f"),
                                   FillIn("BTCUSDT", 11, D("61000"), D("0.01"), "stream",
                                          exchange_order_id=910)])
    assert res.external_orders_added == ["web_f"]
    assert [f.trade_id for f in await store.fills_for_order("web_f")] == [11]


async def test_externals_cost_a_fixed_number_of_statements(
    ledger_url: str, clock: Callable[[], int]
) -> None:
    # The generic path, where SQLAlchemy sees every statement. One by one, 200 externals were
    # 800 statements (lookup, INSERT, two orphan UPDATEs each): each a hop to the writer's
    # thread and back while the store's write lock, which the order path waits for, was held.
    store = await Store.open(ledger_url, clock=clock, upgrade=False, fast=False)
    try:
        await store.add_fill("BTCUSDT", 6, "61000", "0.001", "gap_fill", exchange_order_id=2000)
        statements: list[str] = []

        def count(_conn: object, _cursor: object, text: str, *_args: object) -> None:
            statements.append(text)

        sa.event.listen(store.engine.sync_engine, "before_cursor_execute", count)
        try:
            res = await store.apply_batch([_ext(2000 + i, f"e{i}") for i in range(200)])
        finally:
            sa.event.remove(store.engine.sync_engine, "before_cursor_execute", count)
        assert len(res.external_orders_added) == 200
        assert len(statements) <= 12, statements
        assert [f.trade_id for f in await store.fills_for_order("e0")] == [6]
    finally:
        await store.close()


async def test_batches_of_new_sizes_do_not_compile_new_statements(
    db_url: str, clock: Callable[[], int]
) -> None:
    # On the SQLite shortcut a multi-row INSERT of n rows and an IN (...) of n values used to
    # be compiled once per n, inside the write transaction (up to 60 ms each, the record
    # before send waiting behind it). Now: the INSERT's text is written from its one-row
    # form, the IN lists come in power-of-two sizes. 40 batch sizes never seen before:
    from executor.persistence.migrate import ensure_schema
    from executor.persistence.sql import sqlite_compiles

    await ensure_schema(db_url)
    store = await Store.open(db_url, clock=clock, upgrade=False, fast=True)
    try:
        trade = 0
        await store.apply_batch([_ext(1, "warm"), FillIn("BTCUSDT", 1, D(1), D(1), "stream",
                                                         exchange_order_id=1)])
        before = sqlite_compiles()
        for n in range(161, 201):
            items: list[object] = []
            for _ in range(n):
                trade += 1
                items.append(FillIn("BTCUSDT", 1000 + trade, D("61000"), D("0.001"), "stream",
                                    exchange_order_id=5000 + trade % 7))
            items.append(_ext(9000 + n, f"x{n}"))
            await store.apply_batch(items)  # type: ignore[arg-type]
        assert sqlite_compiles() - before <= 12
        assert len(await store.fills_after(0, limit=100_000)) == 1 + sum(range(161, 201))
    finally:
        await store.close()


def test_the_written_multi_row_insert_is_the_compiled_one() -> None:
    # ``sql.sqlite_rows_sql`` writes the n-row text from the one-row statement; it must be
    # exactly what SQLAlchemy's compiler makes for n rows, for every shape the batch uses.
    from executor.persistence.batch import (
        _EVENT_COLS,
        _EXTERNAL_COLS,
        _FILL_COLS,
        _insert_returning_builder,
        fills_t,
        orders_t,
    )
    from executor.persistence.sql import sqlite_rows_sql, sqlite_sql

    for table, cols, returning in [(events_t, _EVENT_COLS, ("dedupe_key",)),
                                   (fills_t, _FILL_COLS, ("symbol", "trade_id")),
                                   (orders_t, _EXTERNAL_COLS, ("id", "client_order_id"))]:
        one = _insert_returning_builder(table, cols, 1, returning)
        for n in (1, 2, 7):
            compiled = sqlite_sql(("test-compiled", table.name, n),
                                  _insert_returning_builder(table, cols, n, returning))
            assert sqlite_rows_sql(("test-one", table.name), one, n) == compiled
