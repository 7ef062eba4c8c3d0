"""Applying user events and REST order answers to a real (temporary) ledger.

Payloads come from the authoritative samples in tests/fixtures/binance.json. Their
client ids ("bot-20260801-0001") lack our prefix, so a test makes them ours the way the
order manager does: by recording the intent before the events arrive.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.exchange.binance_reports import SPOT
from executor.persistence.store import Store
from executor.reconcile import Reconciler, futures_symbol
from tests.reconcile.conftest import PREFIX, FakeClock, Updates, ledger_state, load_fixtures, url_for

ORDER1 = "bot-20260801-0001"
ORDER2 = "bot-20260801-0002"


def ev(fx: dict[str, Any], name: str) -> dict[str, Any]:
    return fx[name]


async def record(store: Store, cid: str, *, price: str = "60000", qty: str = "0.002", side: str = "BUY",
                 symbol: str = "BTCUSDT") -> None:
    await store.record_order_intent(cid, symbol, side, "LIMIT", quantity=Decimal(qty), price=Decimal(price),
                                    time_in_force="GTC", reason="test")
    await store.mark_order_sent(cid)


async def test_new_partial_fill_sequence(store: Store, rec: Reconciler, updates: Updates,
                                         fx: dict[str, Any]) -> None:
    await record(store, ORDER1)
    for name in ("executionReport_NEW", "executionReport_TRADE_partial", "executionReport_TRADE_fill"):
        await rec.apply(ev(fx, name))

    order = await store.get_order_by_client_id(ORDER1)
    assert order is not None
    assert (order.status, order.exchange_order_id) == ("FILLED", 4293153)
    assert (order.executed_qty, order.cum_quote_qty) == (Decimal("0.002"), Decimal("120"))
    fills = await store.fills_for_order(ORDER1)
    assert [(f.trade_id, f.qty, f.source, f.commission_asset) for f in fills] == [
        (5123456789, Decimal("0.0008"), "stream", "BTC"), (5123456801, Decimal("0.0012"), "stream", "BTC")]
    assert all(f.order_id == order.id for f in fills)
    events = await store.order_events(ORDER1)
    assert [e["execution_id"] for e in events] == [8641984, 8641990, 8642001]
    assert [u.status for u in updates] == ["NEW", "PARTIALLY_FILLED", "FILLED"]
    assert [len(u.fills) for u in updates] == [0, 1, 1]
    assert rec.suspects == {}


async def test_duplicates_change_nothing(store: Store, rec: Reconciler, updates: Updates,
                                         fx: dict[str, Any]) -> None:
    await record(store, ORDER1)
    names = ("executionReport_NEW", "executionReport_TRADE_partial", "executionReport_TRADE_fill")
    await rec.apply_many([ev(fx, n) for n in names])
    before = await ledger_state(store)
    n_updates = len(updates)
    again = await rec.apply_many([ev(fx, n) for n in names * 2])
    assert (again.order_events_added, again.fills_added, again.status_changes) == (0, 0, 0)
    assert again.duplicates == 6 and again.fills_duplicate == 2
    assert await ledger_state(store) == before
    assert len(updates) == n_updates  # nothing new to tell the strategy


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
async def test_every_permutation_gives_the_same_ledger(order: tuple[int, ...], make_store: Callable[..., Any],
                                                       fx: dict[str, Any]) -> None:
    names = ["executionReport_NEW", "executionReport_TRADE_partial", "executionReport_TRADE_fill"]
    reference = await make_store("reference")
    ref_rec = Reconciler(reference, prefix=PREFIX, translate=SPOT)
    await record(reference, ORDER1)
    for n in names:
        await ref_rec.apply(ev(fx, n))

    shuffled = await make_store("shuffled")
    rec = Reconciler(shuffled, prefix=PREFIX, translate=SPOT)
    await record(shuffled, ORDER1)
    # One event at a time (each its own commit), the permuted order, with a duplicate.
    sequence = [names[i] for i in order] + [names[order[0]]]
    for n in sequence:
        await rec.apply(ev(fx, n))
    assert await ledger_state(shuffled) == await ledger_state(reference)
    assert rec.suspects == {}  # a reordered fill was only suspected until its sibling arrived


async def test_missing_fill_makes_the_order_a_suspect(store: Store, rec: Reconciler,
                                                      fx: dict[str, Any]) -> None:
    await record(store, ORDER1)
    await rec.apply(ev(fx, "executionReport_NEW"))
    result = await rec.apply(ev(fx, "executionReport_TRADE_fill"))  # the partial fill was lost
    assert result.suspects == 1
    assert rec.suspects == {("BTCUSDT", 4293153): (ORDER1, Decimal("0.002"))}
    order = await store.get_order_by_client_id(ORDER1)
    assert order is not None and order.status == "FILLED"  # the status is right; a fill is missing


async def test_cancel_links_by_original_client_id(store: Store, rec: Reconciler, updates: Updates,
                                                  fx: dict[str, Any]) -> None:
    await record(store, ORDER2, price="59000")
    await store.record_cancel("cancel-bot-0002", ORDER2, "BTCUSDT")
    await rec.apply(ev(fx, "executionReport_CANCELED"))
    order = await store.get_order_by_client_id(ORDER2)
    assert order is not None and order.status == "CANCELED" and order.exchange_order_id == 4293160
    (event,) = await store.order_events(ORDER2)
    assert event["event_client_id"] == "cancel-bot-0002" and event["order_id"] == order.id
    assert await store.get_order_by_client_id("cancel-bot-0002") is None  # no phantom order
    assert [(u.client_order_id, u.status) for u in updates] == [(ORDER2, "CANCELED")]


async def test_external_orders_are_recorded_and_never_reported(store: Store, rec: Reconciler,
                                                                updates: Updates, fx: dict[str, Any]) -> None:
    # Nobody recorded these ids and they lack our prefix: someone else's orders.
    for name in ("executionReport_NEW", "executionReport_TRADE_partial", "executionReport_TRADE_fill",
                 "executionReport_CANCELED"):
        await rec.apply(ev(fx, name))
    filled = await store.get_order_by_exchange_id("BTCUSDT", 4293153)
    canceled = await store.get_order_by_exchange_id("BTCUSDT", 4293160)
    assert filled is not None and filled.external and filled.status == "FILLED"
    assert filled.client_order_id == ORDER1 and filled.executed_qty == Decimal("0.002")
    assert canceled is not None and canceled.external and canceled.client_order_id == ORDER2
    assert canceled.status == "CANCELED"
    fills = await store.fills(symbol="BTCUSDT")
    assert len(fills) == 2 and all(f.order_id == filled.id for f in fills)  # its fills move our balances
    assert updates == []  # the strategy never hears of them, so it never acts on them
    assert await store.orders_not_final(include_external=False) == []


async def test_our_prefix_without_a_ledger_row_is_adopted(store: Store, rec: Reconciler, updates: Updates,
                                                          fx: dict[str, Any]) -> None:
    cid = f"{PREFIX}-run1-o7"
    new = ev(fx, "executionReport_NEW")
    new["event"]["c"] = cid
    await rec.apply(new)
    order = await store.get_order_by_client_id(cid)
    assert order is not None and not order.external and order.status == "NEW"
    assert order.reason is not None and order.reason.startswith("adopted")


async def test_balances_from_positions_and_updates(store: Store, rec: Reconciler, fx: dict[str, Any]) -> None:
    pos = ev(fx, "outboundAccountPosition")
    older = copy_event(pos, E=pos["event"]["E"] - 10, u=pos["event"]["u"] - 10, free="1.000000")
    await rec.apply_many([pos, older, pos, ev(fx, "balanceUpdate"), ev(fx, "balanceUpdate")])
    balances = await store.get_balances()
    assert balances["ETH"].free == Decimal("10000") and balances["ETH"].locked == 0  # newer wins
    state = await ledger_state(store)
    kinds = sorted(r["kind"] for r in state["balance_events"])
    assert kinds == ["balanceUpdate", "outboundAccountPosition", "outboundAccountPosition"]


def copy_event(wrapper: dict[str, Any], *, E: int, u: int, free: str) -> dict[str, Any]:
    event = dict(wrapper["event"], E=E, u=u, B=[dict(wrapper["event"]["B"][0], f=free)])
    return {"subscriptionId": wrapper["subscriptionId"], "event": event}


async def test_futures_events_stored_apart_from_spot(store: Store, rec: Reconciler, updates: Updates,
                                                     fx: dict[str, Any]) -> None:
    sym = futures_symbol("BTCUSDT")
    await record(store, "bot-fut-0001", symbol=sym, side="SELL", price="60100", qty="0.010")
    for _ in range(2):
        await rec.apply_many([fx["ORDER_TRADE_UPDATE"], fx["ACCOUNT_UPDATE"]])
    order = await store.get_order_by_client_id("bot-fut-0001")
    assert order is not None and order.status == "FILLED" and order.symbol == "UM:BTCUSDT"
    (fill,) = await store.fills(symbol=sym)
    assert (fill.trade_id, fill.qty, fill.price) == (712345678, Decimal("0.010"), Decimal("60100.00"))
    assert await store.fills(symbol="BTCUSDT") == []
    state = await ledger_state(store)
    assert len(state["futures_account_updates"]) == 1
    assert state["futures_account_updates"][0]["reason"] == "ORDER"
    assert [u.status for u in updates] == ["FILLED"]


async def test_order_response_and_stream_store_a_fill_once(store: Store, rec: Reconciler,
                                                           fx: dict[str, Any]) -> None:
    resp = fx["order_response_FULL"]
    cid = resp["clientOrderId"]
    await record(store, cid, side="SELL", price="3990", qty="10")
    res = await rec.apply_order_response(resp)
    assert res.fills_added == 5
    # The stream reports trade 56 afterwards: a no-op, the first source stays.
    trade = ev(fx, "executionReport_TRADE_fill")
    trade["event"].update(c=cid, i=28, t=56, s="BTCUSDT", S="SELL", l="1.00000000", L="4000.00000000")
    again = await rec.apply(trade)
    assert again.fills_added == 0 and again.fills_duplicate == 1
    fills = await store.fills_for_order(cid)
    assert [f.source for f in fills] == ["order_response"] * 5
    order = await store.get_order_by_client_id(cid)
    assert order is not None and order.status == "FILLED" and order.executed_qty == Decimal("10")


async def test_malformed_events_are_counted_not_fatal(rec: Reconciler, fx: dict[str, Any]) -> None:
    bad = ev(fx, "executionReport_NEW")
    bad["event"]["z"] = 0.5  # a float: never money
    res = await rec.apply_many([bad, b"{not json", ev(fx, "balanceUpdate")])
    assert res.malformed == 2 and res.events == 1 and res.balance_events_added == 1


NAMES = ("executionReport_NEW", "executionReport_TRADE_partial", "executionReport_TRADE_fill")


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Every event at least once, some duplicated, in any order, cut into commits anywhere."""
    extra = draw(st.lists(st.integers(0, 2), max_size=4))
    order = draw(st.permutations([0, 1, 2, *extra]))
    cuts = sorted(draw(st.sets(st.integers(1, len(order) - 1), max_size=3)))
    return list(order), cuts


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=deliveries())
async def test_any_delivery_gives_the_reference_ledger(case: tuple[list[int], list[int]], template_db: Path,
                                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    order, cuts = case
    fx = load_fixtures()
    stores = []
    try:
        states = []
        for sequence, cut_at in (([0, 1, 2], []), (order, cuts)):
            path = tmp_path_factory.mktemp("hyp") / "ledger.db"
            shutil.copy(template_db, path)
            store = await Store.open(url_for(path), clock=FakeClock(), upgrade=False)
            stores.append(store)
            rec = Reconciler(store, prefix=PREFIX, translate=SPOT)
            await record(store, ORDER1)
            bounds = [0, *cut_at, len(sequence)]
            for a, b in itertools.pairwise(bounds):  # each slice is one group commit
                await rec.apply_many([fx[NAMES[i]] for i in sequence[a:b]])
            assert rec.suspects == {}
            states.append(await ledger_state(store))
        assert states[1] == states[0]
    finally:
        for s in stores:
            await s.close()
