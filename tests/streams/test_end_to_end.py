"""The real Reconciler on a temporary SQLite ledger, fed by the supervised spot user stream
over the real WS API: after a dropped connection and a silent stall, once settled, the
ledger equals the exchange's ground truth (orders, every fill once, balances)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from executor.exchange.binance_events import ExecutionReport
from executor.exchange.binance_reports import SPOT
from executor.exchange.client import make_client
from executor.exchange.rest import RestGateway
from executor.exchange.user_stream import SpotUserStream, reconciler_sink, spot_user_stream_for
from executor.exchange.ws_sign import WsSigner
from executor.reconcile import Reconciler
from tests.reconcile.conftest import PREFIX, Updates
from tests.reconcile.test_sim import SYMBOLS, Rig, assert_ledger_equals_exchange, trade_some
from tests.streams.conftest import wait_until


async def test_ledger_equals_exchange_after_drop_and_stall(sim: Any, make_store: Callable[..., Any]) -> None:
    store = await make_store()
    client = make_client(sim.endpoints, sim.creds, timeout_s=2.0)
    gateway = RestGateway(client)
    await gateway.start()
    updates = Updates()
    rec = Reconciler(store, gateway, prefix=PREFIX, translate=SPOT, symbols=SYMBOLS, on_order_update=updates,
                     not_found_grace_ms=0, suspect_delay_s=0.05)
    await rec.start()
    sink = reconciler_sink(rec)
    streamed: set[str] = set()

    async def deliver(event: Any) -> None:
        await sink(event)
        if isinstance(event, ExecutionReport):
            streamed.add(event.original_client_id)

    stream = SpotUserStream(sim.endpoints.spot_ws_api, WsSigner(client), deliver, rec.gap_fill,
                            stall_after_s=0.5, probe_every_s=0.5, limiter=None, gate=gateway.gate,
                            resync_clock=gateway.sync_clock)
    rig = Rig(sim, gateway, store, rec, updates)
    try:
        await stream.start()
        await wait_until(lambda: stream.health.gap_fills == 1)
        await trade_some(rig)

        # 1. The connection drops; whatever happens meanwhile is lost with it.
        await sim.exchange.faults.connections.drop("ws_api")
        await trade_some(rig)
        await wait_until(lambda: stream.health.gap_fills == 2)
        assert stream.health.reconnects == 1 and stream.health.subscribes == 2

        # 2. The subscription goes silent on a live socket.
        sim.exchange.faults.connections.stall("ws_api")
        book = sim.exchange.market.book("ETHUSDT")
        cid, _ = await rig.place(symbol="ETHUSDT", qty="0.1000", price=str(book.ask + 10), tif="IOC")
        stream.expect_event(cid)
        await wait_until(lambda: stream.health.stalls == 1 and stream.health.gap_fills == 3, 5)

        # Settled: a last order's events arrive over the new connection, after everything before.
        marker, _ = await rig.place(symbol="ETHUSDT", qty="0.1000", price=str(book.ask + 10), tif="IOC")
        await wait_until(lambda: marker in streamed)
        await rec.drain()
        await assert_ledger_equals_exchange(rig)
        runs = await store.reconciliation_runs()
        assert [r["reason"] for r in runs][:3] == ["start", "reconnect", "reconnect"]
    finally:
        await stream.close()
        await rec.stop()
        await gateway.close()


async def _stream_event_stored(store: Any, rec: Reconciler, client_id: str, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while True:
            await rec.drain()
            if any(e.get("source") == "stream" for e in await store.order_events(client_id)):
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def test_bot_wiring_through_terminated_shutdown_and_rotation(sim: Any,
                                                                   make_store: Callable[..., Any]) -> None:
    store = await make_store()
    client = make_client(sim.endpoints, sim.creds, timeout_s=2.0)
    gateway = RestGateway(client)
    await gateway.start()
    rec = Reconciler(store, gateway, prefix=PREFIX, translate=SPOT, symbols=SYMBOLS, not_found_grace_ms=0,
                     suspect_delay_s=0.05)
    await rec.start()
    stream = spot_user_stream_for(sim.endpoints, client, rec, gateway, limiter=None, high_water=2)
    rig = Rig(sim, gateway, store, rec, Updates())
    conns = sim.exchange.faults.connections
    try:
        await stream.start()
        await wait_until(lambda: stream.health.gap_fills == 1)
        await trade_some(rig)
        session = stream._current
        assert session is not None
        await session.request("userDataStream.unsubscribe", {}, 2.0)  # -> eventStreamTerminated
        await wait_until(lambda: stream.health.resubscribes == 1 and stream.health.gap_fills == 2)
        await trade_some(rig)
        await conns.shutdown("ws_api")
        await wait_until(lambda: stream.health.server_shutdowns == 1 and stream.health.gap_fills == 3)
        assert await stream.rotate()
        await trade_some(rig)
        book = sim.exchange.market.book("ETHUSDT")
        marker, _ = await rig.place(symbol="ETHUSDT", qty="0.1000", price=str(book.ask + 10), tif="IOC")
        await _stream_event_stored(store, rec, marker)
        await assert_ledger_equals_exchange(rig)
        reasons = [r["reason"] for r in await store.reconciliation_runs()]
        # serverShutdown: make-before-break if the old socket was still open, else a reconnect.
        assert reasons[:2] == ["start", "resubscribe"] and reasons[2] in ("server_shutdown", "reconnect")
        assert reasons[3] == "daily"
        assert stream.health.rotations >= 1
    finally:
        await stream.close()
        await rec.stop()
        await gateway.close()
