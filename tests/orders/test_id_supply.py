"""Order ids from durably reserved blocks: the factory's blocks (pure), ``IdSupply``'s
reservation, refill and exhaustion against a real ledger, and the order manager waiting
for a block when the ids run out (real embedded exchange)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from executor.core.ids import ClientIdFactory, IdsExhausted, parse_client_id
from executor.exchange.binance_reports import SPOT
from executor.orders.id_supply import IdSupply
from executor.persistence.store import Store
from executor.reconcile.id_blocks import VenueOrders, resolve_open_blocks
from executor.risk.checks import Refused
from tests.conftest import SimHandle
from tests.orders.harness import SYMBOLS, build
from tests.orders.test_manager import resting_buy


def test_factory_hands_out_only_reserved_ids() -> None:
    low: list[int] = []
    f = ClientIdFactory("bx", "run1", blocks=True, low_water=2)
    f.on_low = lambda: low.append(f.order_ids_left)
    with pytest.raises(IdsExhausted):
        f.next_order_id()
    f.add_order_block(1, 4)
    assert [f.next_order_id() for _ in range(2)] == ["bx-run1-o1", "bx-run1-o2"]
    assert low == [2]  # once, when half was left
    f.add_order_block(5, 8)
    assert f.order_ids_left == 6
    assert [f.next_order_id() for _ in range(6)][-1] == "bx-run1-o8"
    with pytest.raises(IdsExhausted):
        f.next_order_id()
    assert f.last_order_seq == 8 and f.next_block_first == 9
    with pytest.raises(ValueError, match="overlaps"):
        f.add_order_block(8, 12)  # a block never repeats an id
    assert f.next_cancel_id() == "bx-run1-c1"  # cancel ids are not blocked


def test_unblocked_factory_is_unbounded() -> None:
    f = ClientIdFactory("bx", "run1")
    assert [f.next_order_id() for _ in range(3)][-1] == "bx-run1-o3"
    assert f.order_ids_left == -1


@pytest.fixture
async def store(ledger_url: str) -> Any:
    """A ledger on each backend (PostgreSQL when BX_TEST_PG_URL is set); SQLite at FULL,
    so the order path's second connection is in play."""
    s = await Store.open(ledger_url, synchronous="FULL", upgrade=False)
    await s.start_run("test", "sim", "x")
    try:
        yield s
    finally:
        await s.close()


async def test_supply_reserves_and_refills_in_the_background(store: Store) -> None:
    f = ClientIdFactory("bx", "run2", blocks=True)
    supply = IdSupply(store, f, block_size=8)
    await supply.start()
    blocks = await store.id_blocks()
    assert [(b["first_seq"], b["last_seq"], b["state"]) for b in blocks] == [(1, 8, "open")]
    ids = [f.next_order_id() for _ in range(4)]  # half used: the next block is on its way
    task = supply.pending
    assert task is not None
    await asyncio.wait_for(task, 5)
    assert [(b["first_seq"], b["last_seq"]) for b in await store.id_blocks()] == [(1, 8), (9, 16)]
    ids += [f.next_order_id() for _ in range(12)]
    assert len(set(ids)) == 16 and supply.waits == 0
    assert [parse_client_id(i).seq for i in ids] == list(range(1, 17))  # type: ignore[union-attr]


async def test_exhausted_supply_waits_for_a_block(store: Store) -> None:
    f = ClientIdFactory("bx", "run3", blocks=True)
    supply = IdSupply(store, f, block_size=2)
    await supply.start()
    f.on_low = None  # no background refill: the ids run out
    f.next_order_id(), f.next_order_id()
    with pytest.raises(IdsExhausted):
        f.next_order_id()
    await asyncio.wait_for(supply.wait(), 5)
    assert f.next_order_id() == "bx-run3-o3" and supply.waits == 1


async def test_a_block_never_overlaps_one_reserved_before(store: Store) -> None:
    await store.reserve_id_block("run4", 1, 4)
    with pytest.raises(Exception, match="overlaps"):
        await store.reserve_id_block("run4", 3, 4)
    # A new factory on the same tag (never done by the bot: a run has one factory) is refused too.
    f = ClientIdFactory("bx", "run4", blocks=True)
    with pytest.raises(Exception, match="overlaps"):
        await IdSupply(store, f, block_size=4).start()


async def test_clean_end_releases_unused_ids_and_unclean_leaves_them_open(store: Store) -> None:
    f = ClientIdFactory("bx", "run5", blocks=True)
    supply = IdSupply(store, f, block_size=8)
    await supply.start()
    f.next_order_id()
    f.next_order_id()
    await store.finish_run(ended="clean", used_to=supply.used_to)
    [b] = await store.id_blocks()
    assert (b["state"], b["used_to"]) == ("released", 2)
    await store.start_run("test", "sim", "x")
    g = ClientIdFactory("bx", "run6", blocks=True)
    await IdSupply(store, g, block_size=8).start()
    await store.finish_run(ended="unclean")
    assert [b["state"] for b in await store.id_blocks()] == ["released", "open"]


async def supplied(h: Any, run_tag: str, *, block_size: int) -> ClientIdFactory:
    """The harness's order manager on ids of a fresh run ``run_tag``, from reserved blocks."""
    f = ClientIdFactory("bx", run_tag, blocks=True)
    supply = IdSupply(h.store, f, block_size=block_size)
    await supply.start()
    h.manager.ids = f
    h.manager.wait_for_ids = supply.wait
    return f


async def test_manager_waits_for_ids_when_they_run_out(sim: SimHandle, tmp_path: Path) -> None:
    h = await build(sim, tmp_path)
    try:
        f = await supplied(h, "run7", block_size=2)
        f.on_low = None  # the refill only when exhausted
        sent = []
        for _ in range(3):
            order = await h.manager.place(resting_buy(h))
            assert not isinstance(order, Refused)
            sent.append(order.client_id)
        assert sent == ["bx-run7-o1", "bx-run7-o2", "bx-run7-o3"]
        assert h.manager.counts["waited_for_ids"] == 1
        assert [(b["first_seq"], b["last_seq"]) for b in await h.store.id_blocks()] == [(1, 2), (3, 4)]
        on_exchange = sorted(o.client_order_id for o in h.exchange_orders())
        assert on_exchange == sent
    finally:
        await h.close()


@pytest.mark.parametrize("listing", [False, True], ids=["per-id", "allOrders"])
async def test_lost_intents_of_an_unclean_run_are_found_and_adopted(
        sim: SimHandle, tmp_path: Path, listing: bool) -> None:
    h = await build(sim, tmp_path)
    try:
        await supplied(h, "old1", block_size=8)
        placed = []
        for _ in range(3):
            order = await h.manager.place(resting_buy(h))
            assert not isinstance(order, Refused)
            placed.append(order.client_id)
        # What a power cut after the block's fsync can do: the last two intents (and what
        # followed them) are gone from the ledger, the orders are on the exchange.
        async with h.store.engine.begin() as conn:
            for cid in placed[1:]:
                await conn.execute(sa.text("DELETE FROM order_events WHERE order_id = "
                                           "(SELECT id FROM orders WHERE client_order_id = :c)"), {"c": cid})
                await conn.execute(sa.text("DELETE FROM orders WHERE client_order_id = :c"), {"c": cid})
        await h.store.finish_run(ended="unclean")
        await h.store.start_run("test", "sim", "x")

        async def since(symbol: str, since_ms: int) -> list[Any]:
            # limit 1: every order on its own page, so the orderId paging is exercised
            return await h.gateway.orders_since(symbol, since_ms, now_ms=h.store.clock(), limit=1)

        venue = VenueOrders("spot", SYMBOLS, SPOT.order, h.gateway.get_order,
                            list_since=since if listing else None)
        result = await resolve_open_blocks(h.store, h.reconciler, [venue], prefix="bx",
                                           current_run_id=h.store.run_id)
        assert sorted(result.adopted) == placed[1:]
        assert result.candidates == 7  # 8 reserved, 1 recorded
        assert result.queries == (len(SYMBOLS) if listing else 7 * len(SYMBOLS) - 2 * (len(SYMBOLS) - 1))
        for cid in placed[1:]:
            rec = await h.store.get_order_by_client_id(cid)
            assert rec is not None and rec.status == "NEW" and not rec.external
            assert rec.exchange_order_id == h.exchange_orders(cid)[0].order_id
        [block] = await h.store.id_blocks()
        assert (block["state"], block["adopted"]) == ("resolved", 2)
        # Resolved once: the next start asks nothing.
        again = await resolve_open_blocks(h.store, h.reconciler, [venue], prefix="bx",
                                          current_run_id=h.store.run_id)
        assert again.blocks == 0 and again.queries == 0
        assert sorted(o.client_order_id for o in h.exchange_orders()) == placed  # nothing sent again
    finally:
        await h.close()
