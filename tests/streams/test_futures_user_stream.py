"""The supervised futures user stream over a listenKey on the /private route."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from executor.exchange.binance_events import FuturesAccountUpdate, FuturesOrderUpdate
from executor.exchange.futures_user_stream import FuturesListenKeys, FuturesUserStream, ListenKeyGone
from executor.sim.futures_account import attach
from tests.streams.conftest import Recorder, wait_until


@pytest.fixture
async def futures_stream(sim: Any, client: Any, recorder: Recorder) -> AsyncIterator[FuturesUserStream]:
    stream = FuturesUserStream(sim.endpoints.futures_private_stream, FuturesListenKeys(client),
                               recorder.deliver, recorder.gap_fill, stall_after_s=0.5, limiter=None)
    await stream.start()
    await stream.wait_ready(5)
    try:
        yield stream
    finally:
        await stream.close()


def futures_fill(sim: Any, client_id: str) -> None:
    attach(sim.exchange).fill("default", "BTCUSDT", "BUY", Decimal("0.01"), Decimal(60000),
                              client_order_id=client_id)


def updates(rec: Recorder, client_id: str) -> list[FuturesOrderUpdate]:
    return [e for e in rec.events if isinstance(e, FuturesOrderUpdate) and e.client_order_id == client_id]


async def test_receives_order_and_account_updates(sim: Any, futures_stream: FuturesUserStream,
                                                  recorder: Recorder) -> None:
    await wait_until(lambda: recorder.gap_reasons == ["futures_start"])
    futures_fill(sim, "f-1")
    await wait_until(lambda: len(updates(recorder, "f-1")) == 1)
    await wait_until(lambda: any(isinstance(e, FuturesAccountUpdate) for e in recorder.events))
    assert futures_stream.has_key


async def test_listen_key_expired_gets_a_new_key_reconnects_and_gap_fills(
        sim: Any, futures_stream: FuturesUserStream, recorder: Recorder) -> None:
    side = attach(sim.exchange)
    old_key = futures_stream._key
    await wait_until(lambda: futures_stream.health.gap_fills == 1)
    assert side.listen_keys.expire_now(old_key) == [old_key]
    await wait_until(lambda: futures_stream.health.gap_fills == 2)
    assert futures_stream.health.keys_expired == 1
    assert futures_stream.health.key_recreations == 1
    assert futures_stream._key not in (None, old_key)
    assert recorder.gap_reasons == ["futures_start", "futures_reconnect"]
    futures_fill(sim, "after-expiry")
    await wait_until(lambda: len(updates(recorder, "after-expiry")) == 1)


async def test_keepalive_keeps_the_key_alive_past_sixty_minutes(
        sim: Any, futures_stream: FuturesUserStream, recorder: Recorder) -> None:
    clock = sim.exchange.clock
    for _ in range(5):  # 5 x 25 sim minutes = 125 minutes, a PUT in each
        clock.advance(25 * 60_000)
        assert await futures_stream.keepalive()
    attach(sim.exchange).tick()
    assert futures_stream.health.keepalives == 5
    assert futures_stream.health.keys_expired == 0
    futures_fill(sim, "still-alive")
    await wait_until(lambda: len(updates(recorder, "still-alive")) == 1)
    assert futures_stream.health.reconnects == 0


async def test_keepalive_on_an_unknown_key_recreates_it(sim: Any, futures_stream: FuturesUserStream,
                                                        recorder: Recorder) -> None:
    await wait_until(lambda: futures_stream.health.gap_fills == 1)
    old_key = futures_stream._key
    sim.exchange.clock.advance(61 * 60_000)  # lapsed without a PUT: PUT answers -1125
    assert not await futures_stream.keepalive()
    assert futures_stream.health.keepalive_errors == 1
    await wait_until(lambda: futures_stream.health.gap_fills == 2)
    assert futures_stream._key not in (None, old_key)
    assert futures_stream.health.key_recreations == 1
    assert await futures_stream.keepalive()
    futures_fill(sim, "after-1125")
    await wait_until(lambda: len(updates(recorder, "after-1125")) == 1)


async def test_drop_reconnects_with_gap_fill(sim: Any, futures_stream: FuturesUserStream,
                                             recorder: Recorder) -> None:
    await wait_until(lambda: futures_stream.health.gap_fills == 1)
    assert await sim.exchange.faults.connections.drop("private") == 1
    await wait_until(lambda: futures_stream.health.gap_fills == 2)
    assert futures_stream.health.reconnects == 1
    assert futures_stream.health.key_recreations == 0  # the key was still valid
    futures_fill(sim, "after-drop")
    await wait_until(lambda: len(updates(recorder, "after-drop")) == 1)


async def test_stall_is_detected(sim: Any, futures_stream: FuturesUserStream, recorder: Recorder) -> None:
    await wait_until(lambda: futures_stream.health.gap_fills == 1)
    assert sim.exchange.faults.connections.stall("private") == 1
    futures_fill(sim, "stalled")
    futures_stream.expect_event("stalled")
    await wait_until(lambda: futures_stream.health.stalls == 1, 5)
    await wait_until(lambda: futures_stream.health.gap_fills == 2)
    futures_fill(sim, "after-stall")
    await wait_until(lambda: len(updates(recorder, "after-stall")) == 1)


async def test_rotate_and_server_shutdown_are_make_before_break(
        sim: Any, futures_stream: FuturesUserStream, recorder: Recorder) -> None:
    conns = sim.exchange.faults.connections
    await wait_until(lambda: futures_stream.health.gap_fills == 1)
    assert await futures_stream.rotate()
    await wait_until(lambda: conns.count("private") == 1)
    assert futures_stream.health.rotations == 1
    await conns.shutdown("private")
    await wait_until(lambda: futures_stream.health.server_shutdowns == 1)
    await wait_until(lambda: futures_stream.health.gap_fills == 3)
    futures_fill(sim, "after-rotations")
    await wait_until(lambda: len(updates(recorder, "after-rotations")) == 1)


async def test_listen_key_calls_map_minus_1125(sim: Any, client: Any) -> None:
    keys = FuturesListenKeys(client)
    key = await keys.create()
    await keys.keepalive(key)
    await keys.close(key)
    with pytest.raises(ListenKeyGone) as err:
        await keys.keepalive(key)
    assert key not in str(err.value)


async def test_deleted_key_is_replaced_after_the_handshake_is_refused(
        sim: Any, client: Any, futures_stream: FuturesUserStream, recorder: Recorder,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await wait_until(lambda: futures_stream.health.gap_fills == 1)
    old_key = futures_stream._key
    assert old_key is not None
    await FuturesListenKeys(client).close(old_key)  # the exchange closes the socket; the key is gone
    await wait_until(lambda: futures_stream.health.gap_fills == 2, 5)
    assert futures_stream._key not in (None, old_key)
    assert futures_stream.health.key_recreations == 1
    assert old_key not in (futures_stream.health.last_error or "")
    # The key is a bearer token: not in any log line, even at DEBUG (websockets included).
    assert all(old_key not in r.getMessage() for r in caplog.records)
    futures_fill(sim, "after-delete")
    await wait_until(lambda: len(updates(recorder, "after-delete")) == 1)
