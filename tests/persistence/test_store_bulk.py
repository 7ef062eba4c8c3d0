"""Large batches: the multi-row INSERT path (several statements per table) counts and stores exactly."""

from decimal import Decimal

from executor.persistence import store as store_mod
from executor.persistence.store import FillIn, OrderEventIn, StatusUpdateIn, Store

D = Decimal


def _items(first: int, last: int) -> list[OrderEventIn | FillIn | StatusUpdateIn]:
    items: list[OrderEventIn | FillIn | StatusUpdateIn] = []
    for i in range(first, last):
        items.append(OrderEventIn("BTCUSDT", "PARTIALLY_FILLED", "stream", {"e": "executionReport", "I": i},
                                  exchange_order_id=77, client_order_id="bx-1-1", execution_id=i,
                                  execution_type="TRADE", executed_qty=D(i), cum_quote_qty=D(i * 10),
                                  trade_id=i))
        items.append(FillIn("BTCUSDT", i, D("10.00000000"), D("1.00000000"), "stream", quote_qty=D("10"),
                            commission=D("0.00001000"), commission_asset="BTC", is_maker=True, side="BUY",
                            client_order_id="bx-1-1", exchange_order_id=77))
    items.append(StatusUpdateIn("bx-1-1", "PARTIALLY_FILLED", "stream", exchange_order_id=77,
                                executed_qty=D(last - 1), cum_quote_qty=D((last - 1) * 10)))
    return items


async def test_batches_larger_than_one_statement(store: Store) -> None:
    n = 3 * store_mod._ROWS_PER_INSERT + 17  # several full statements and a partial one per table
    await store.record_order_intent("bx-1-1", "BTCUSDT", "BUY", "LIMIT", quantity=D(10_000), price=D(10))
    r = await store.apply_batch(_items(1, n + 1))
    assert r.events_added == n and r.events_duplicate == 0 and len(r.new_event_keys) == n
    assert r.fills_added == [("BTCUSDT", i) for i in range(1, n + 1)] and r.fills_duplicate == 0
    fills = await store.fills_for_order("bx-1-1")
    assert len(fills) == n and {f.trade_id for f in fills} == set(range(1, n + 1))
    f = next(x for x in fills if x.trade_id == 5)
    assert (f.price, f.qty, f.quote_qty) == (D("10.00000000"), D("1.00000000"), D(10))
    assert f.commission == D("0.00001")
    assert str(f.price) == "10.00000000"  # exactly the digits given
    assert len(await store.order_events("bx-1-1")) == n

    # Half old, half new: only the new ones are added; the counts add up.
    again = await store.apply_batch(_items(n // 2, n + 101))
    assert again.events_added == 100 and again.events_duplicate == n - n // 2 + 1
    assert len(again.fills_added) == 100 and again.fills_duplicate == n - n // 2 + 1
    rec = await store.get_order_by_client_id("bx-1-1")
    assert rec is not None and rec.executed_qty == n + 100
