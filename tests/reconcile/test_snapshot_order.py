"""A REST balance snapshot and the user events around it reach the ledger in exchange-time
order, and ``audit verify`` agrees.

The embedded exchange answers ``GET /api/v3/account`` (its ``updateTime`` T is the
account's last change) and, through its ``before_response`` hook, holds that answer
while the test, in exchange time after T, (1) delivers the user events of an order that
filled *before* T but whose events were kept back (in flight when the snapshot was
read), and (2) fills a new order. The first explain the snapshot and must be applied
before it is compared; the second happened after it and must reach the ledger after the
snapshot's rows. Applied before the write (what the reconciler did), the newer event made
the comparison skip its assets (the stream is ahead) and put its rows before the
snapshot's: on a fresh ledger the audit's opening snapshot then lacked those assets and
``audit verify`` reported a MISMATCH for every later balance of them (two bots on one
account at start-up: tests/scenarios/test_ledger_owner.py). Over real HTTP with the real
client, for the periodic snapshot and the start-up gap fill alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from executor.audit.query import AuditDB, Scope
from executor.audit.verify import render_verify, verify, verify_reference
from executor.exchange.binance_reports import SPOT
from executor.exchange.client import make_client
from executor.exchange.rest import RestGateway
from executor.persistence.store import Store
from executor.reconcile import Reconciler
from executor.sim.accounts import DEFAULT_ID
from tests.conftest import SimHandle
from tests.reconcile.conftest import PREFIX, Updates
from tests.reconcile.test_sim import SYMBOLS, Rig

Event = dict[str, Any]


class AccountWatch(RestGateway):
    """The real gateway; notes when the account is asked for, so the exchange's hook holds
    that one answer (every other request passes)."""

    account_asked = False

    async def account(self) -> dict[str, Any]:
        self.account_asked = True
        return await super().account()


@dataclass
class Held:
    """The exchange's ``before_response`` hook: holds the account's answer until ``gate``."""

    gateway: AccountWatch
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self) -> None:
        if self.gateway.account_asked and not self.entered.is_set():
            self.entered.set()  # the answer (and its updateTime) is computed: hold it
            await self.gate.wait()


@pytest.fixture
async def fresh(sim: SimHandle, store: Store) -> AsyncIterator[Rig]:
    """A reconciler on a fresh ledger, hearing the account's spot events; no gap fill yet."""
    gateway = AccountWatch(make_client(sim.endpoints, sim.creds, timeout_s=5.0))
    await gateway.start()
    updates = Updates()
    rec = Reconciler(store, gateway, prefix=PREFIX, translate=SPOT, symbols=SYMBOLS, on_order_update=updates,
                     not_found_grace_ms=0, suspect_delay_s=0.05)
    rig = Rig(sim, gateway, store, rec, updates)
    rig.connect(rec)
    await rec.start()
    yield rig
    sim.exchange.before_response = None
    rig.disconnect()
    await rec.stop()
    await gateway.close()


def _rows(db: AuditDB) -> list[tuple[int, int, str, str]]:
    # Through the audit's reader: the ledger is a SQLite file or a PostgreSQL database.
    return [tuple(r) for r in db.conn.execute(
        "SELECT id, event_ms, kind, asset FROM balance_events WHERE kind != 'balanceUpdate' ORDER BY id")]


@pytest.mark.parametrize("run", ["balance_snapshot", "start_gap_fill"])
async def test_events_newer_than_the_snapshot_are_recorded_after_it(fresh: Rig, run: str) -> None:
    rig, rec, ex = fresh, fresh.rec, fresh.sim.exchange
    assert isinstance(rig.gateway, AccountWatch)
    bus = ex.bus
    book = ex.market.book("BTCUSDT")

    # An order filled before the snapshot whose user events are still on their way.
    kept: list[Event] = []
    bus.filter = lambda _account, _channel, event: kept.append(event) or []
    try:
        await rig.place(qty="0.0010", price=str(book.ask + 100), tif="IOC")
    finally:
        bus.filter = None
    assert any(e.get("e") == "outboundAccountPosition" for e in kept)
    before_ms = max(int(e["E"]) for e in kept)

    held = Held(rig.gateway)
    ex.before_response = held
    step = rec.snapshot_balances() if run == "balance_snapshot" else rec.gap_fill("start")
    task = asyncio.create_task(step)
    await asyncio.wait_for(held.entered.wait(), 10)
    ex.clock.advance(5)  # what follows is strictly newer than the held answer's updateTime
    for event in kept:
        bus.deliver(DEFAULT_ID, "spot", event)  # the late events of the earlier fill
    newer: list[Event] = []
    unsubscribe = bus.subscribe(DEFAULT_ID, "spot", newer.append)
    try:
        await rig.place(qty="0.0010", price=str(book.ask + 100), tif="IOC")  # fills after T
    finally:
        unsubscribe()
    after_ms = min((int(e["u"]) for e in newer if e.get("e") == "outboundAccountPosition"), default=0)
    assert after_ms > before_ms
    held.gate.set()
    result = await asyncio.wait_for(task, 20)
    await rec.drain()
    assert not rec.holding.holding and len(rec.holding) == 0

    db = AuditDB.from_url(rig.store.engine.url.render_as_string(hide_password=False))
    try:
        for res in (verify_reference(db, Scope()), verify(db, Scope(), use_checkpoint=False)):
            assert res.ok, render_verify(res)
        rows = _rows(db)
        snap_rows = [r for r in rows if r[2] == "rest_snapshot"]
        assert snap_rows
        t = snap_rows[0][1]
        first, last = snap_rows[0][0], snap_rows[-1][0]
        assert [r[0] for r in rows if first <= r[0] <= last] == [r[0] for r in snap_rows]  # one block
        # Exchange-time order around the snapshot: what happened before it is recorded
        # before it, what happened after it is recorded after it.
        assert all(r[1] <= t for r in rows if r[0] < first), rows
        assert all(r[1] > t for r in rows if r[0] > last), rows
        # The snapshot lists the assets the stream reported too (none skipped).
        stream_assets = {r[3] for r in rows if r[2] == "outboundAccountPosition"}
        assert stream_assets <= {r[3] for r in snap_rows}
    finally:
        db.close()

    if run == "balance_snapshot":
        snap = result
        assert snap.snapshot_ms is not None and before_ms <= snap.snapshot_ms < after_ms
        assert snap.skipped == []  # nothing newer was applied before the comparison
        # The late events happened before the snapshot: applied before comparing, they
        # explain it (the other assets differ only because the ledger had none of them).
        assert not {"BTC", "USDT"} & {d.asset for d in snap.discrepancies}
    else:
        assert result.error is None and result.counts["events_released"] >= len(kept) + len(newer)
