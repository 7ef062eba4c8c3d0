"""The bot trading the basis strategy on the embedded exchange under one injected fault per
test: once it settles (its final reconciliation at shutdown), its orders, fills and balances
equal the exchange's ground truth exactly, no fill is stored twice and no client order id
reached the exchange twice (``harness.ledger_equals_exchange``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from executor.persistence.store import Store
from executor.run.app import Bot
from tests.conftest import SimHandle
from tests.scenarios.harness import (
    SIM_OPTIONS,
    SYMBOLS,
    BotRun,
    futures_snapshots,
    ledger_equals_exchange,
    recon_reasons,
    scenario_config,
    until,
)

pytestmark = pytest.mark.sim_options(**SIM_OPTIONS)
Runs = list[BotRun]


@pytest.fixture
async def runs() -> AsyncIterator[list[BotRun]]:
    made: list[BotRun] = []
    yield made
    for run in made:
        await run.close()


async def faulted_run(sim: SimHandle, tmp_path: Path, runs: list[BotRun]) -> tuple[BotRun, Bot]:
    run = BotRun(sim, scenario_config(tmp_path))
    runs.append(run)
    bot = await run.start()
    await run.trade(1)
    return run, bot


async def settle_and_check(run: BotRun, sim: SimHandle, more_fills: int = 2) -> None:
    await run.trade(more_fills)
    assert await run.stop() == "clean"
    orders, trades = await ledger_equals_exchange(sim, run.cfg.database.url)
    assert orders >= 3 and trades >= 3


async def test_market_websocket_drop(sim: SimHandle, tmp_path: Path, runs: Runs) -> None:
    run, bot = await faulted_run(sim, tmp_path, runs)
    assert await sim.exchange.faults.connections.drop("market") >= 1
    assert await sim.exchange.faults.connections.drop("futures_market") >= 1
    await until(lambda: all(h.reconnects >= 1 for s in bot.streams for h in s.health()), 10,
                "market streams reconnected")
    await settle_and_check(run, sim)


async def test_ws_api_drop_resubscribes_and_gap_fills(sim: SimHandle, tmp_path: Path, runs: Runs) -> None:
    run, bot = await faulted_run(sim, tmp_path, runs)
    health = bot.user_streams[0].health
    assert await sim.exchange.faults.connections.drop("ws_api") >= 1
    await until(lambda: health.reconnects >= 1 and health.gap_fills >= 2, 10, "resubscribe + gap fill")
    assert health.subscribes >= 2
    await settle_and_check(run, sim)
    assert "reconnect" in recon_reasons(run.cfg.database.url)


async def test_silent_stall_of_the_user_subscription(sim: SimHandle, tmp_path: Path, runs: Runs) -> None:
    run, bot = await faulted_run(sim, tmp_path, runs)
    health = bot.user_streams[0].health
    assert sim.exchange.faults.connections.stall("ws_api") >= 1
    # The next order's executionReport never comes: the stream is declared stalled.
    await until(lambda: health.stalls >= 1 and health.gap_fills >= 2, 10, "stall detected, gap fill")
    await settle_and_check(run, sim)


async def test_futures_listen_key_expiry(sim: SimHandle, tmp_path: Path, runs: Runs) -> None:
    run, bot = await faulted_run(sim, tmp_path, runs)
    (fstream,) = bot.futures_streams
    health = fstream.health
    await until(lambda: health.gap_fills >= 1, 5, "futures start-up gap fill")
    expired = sim.exchange.futures.listen_keys.expire_now(account_id="default")
    assert expired
    # Account changes while the key is dead reach us only through the recovery's snapshot.
    sim.exchange.futures.transfer("default", "USDT", Decimal("123.45"))
    await until(lambda: health.keys_expired >= 1 and health.key_recreations >= 1 and health.gap_fills >= 2,
                10, "new listenKey, reconnect, futures gap fill")
    sim.exchange.futures.transfer("default", "USDT", Decimal("1.5"))  # over the new key's stream
    await until(lambda: health.events >= 1, 5, "ACCOUNT_UPDATE on the new key")
    await settle_and_check(run, sim)
    truth = sim.exchange.futures.account_view("default")
    reason, balances, positions = futures_snapshots(run.cfg.database.url)[-1]
    assert reason == "REST_SNAPSHOT"
    stored = {b["asset"]: Decimal(b["wallet_balance"]) for b in json.loads(balances)}
    assert stored == {a["asset"]: Decimal(a["walletBalance"]) for a in truth["assets"]}
    assert stored["USDT"] == Decimal("10124.95")
    stored_pos = {p["symbol"]: Decimal(p["amount"]) for p in json.loads(positions)}
    assert stored_pos == {p["symbol"]: Decimal(p["positionAmt"]) for p in truth["positions"]}
    assert "futures-user: connected" in run.status.getvalue()  # the status shows the futures stream
    assert "futures_futures_reconnect" not in recon_reasons(run.cfg.database.url)
    assert "futures_reconnect" in recon_reasons(run.cfg.database.url)


@pytest.mark.parametrize(("status", "code", "placed"), [(503, None, True), (503, None, False),
                                                         (400, -1007, True), (400, -1007, False)],
                         ids=["503-placed", "503-not-placed", "1007-placed", "1007-not-placed"])
async def test_unknown_order_outcome(sim: SimHandle, tmp_path: Path, runs: Runs, status: int,
                                     code: int | None, placed: bool,
                                     caplog: pytest.LogCaptureFixture) -> None:
    run, bot = await faulted_run(sim, tmp_path, runs)

    def unknown() -> list[str]:  # the manager names the order whose outcome was unknown
        return [str(r.args[0]) for r in caplog.records if r.name == "executor.orders.manager"
                and "outcome UNKNOWN" in str(r.msg) and isinstance(r.args, tuple)]

    sim.exchange.faults.fail_orders(1, http_status=status, code=code, placed=placed)
    await until(lambda: bool(unknown()), 10, "an order with an unknown outcome")
    (cid,) = unknown()
    assert bot.tracker is not None
    await until(lambda: (o := bot.tracker.get(cid)) is None or not o.unresolved, 10, f"{cid} resolved")
    await settle_and_check(run, sim)
    on_exchange = [o for s in SYMBOLS for o in sim.exchange.engine.orders[s] if o.client_order_id == cid]
    assert len(on_exchange) == (1 if placed else 0)
    store = await Store.open(run.cfg.database.url)
    try:
        rec = await store.get_order_by_client_id(cid)
    finally:
        await store.close()
    assert rec is not None
    assert rec.status == (on_exchange[0].status if placed else "NOT_PLACED")


async def test_duplicated_and_reordered_user_events(sim: SimHandle, tmp_path: Path, runs: Runs) -> None:
    run, bot = await faulted_run(sim, tmp_path, runs)
    faults = sim.exchange.faults
    faults.duplicate_events(8)
    faults.events.reorder = 8
    await until(lambda: faults.events.duplicate == 0 and faults.events.reorder == 0, 15,
                "every duplicated and reordered event delivered")
    # Each duplicate and late event met a row already stored: nothing counted twice.
    assert bot.user_streams[0].health.events > bot.reconciler.totals.order_events_added
    await settle_and_check(run, sim)


async def test_held_rest_response(sim: SimHandle, tmp_path: Path, runs: Runs) -> None:
    run, _ = await faulted_run(sim, tmp_path, runs)
    faults = sim.exchange.faults
    faults.hold(1, 3.0)  # past the client's 2 s timeout
    await until(lambda: faults.hold_responses == 0, 10, "a response held")
    await settle_and_check(run, sim, more_fills=3)
