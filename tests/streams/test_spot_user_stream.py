"""The supervised spot user stream over the WS API, against the embedded exchange."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from executor.core.reports import BalanceDeltaReport
from executor.exchange.binance_events import AccountPosition, ExecutionReport, parse_user_event
from executor.exchange.market_stream import Backoff
from executor.exchange.user_stream import ActivityWatch, SpotUserStream, reconciler_sink
from executor.exchange.ws_sign import WsSigner
from executor.sim.exchange import SimExchange
from tests.conftest import build_client, start_sim
from tests.streams.conftest import Recorder, market_buy, wait_until


async def test_receives_execution_reports_and_positions(spot_stream: SpotUserStream, client: Any,
                                                         recorder: Recorder) -> None:
    await wait_until(lambda: recorder.gap_reasons == ["start"])
    await market_buy(client, "t-1")
    await wait_until(lambda: any(r.status == "FILLED" for r in recorder.reports("t-1")))
    await wait_until(lambda: any(isinstance(e, AccountPosition) for e in recorder.events))
    assert spot_stream.health.subscribes == 1
    assert spot_stream.subscription_id is not None
    assert spot_stream.health.events == len(recorder.events)


async def test_drop_reconnects_resubscribes_gap_fills_and_events_flow(
        sim: Any, spot_stream: SpotUserStream, client: Any, recorder: Recorder) -> None:
    subscribed_at_gap: list[int] = []
    recorder.on_gap = lambda reason: subscribed_at_gap.append(spot_stream.health.subscribes)
    await wait_until(lambda: spot_stream.health.gap_fills == 1)
    assert await sim.exchange.faults.connections.drop("ws_api") == 1
    await wait_until(lambda: spot_stream.health.gap_fills == 2)
    assert recorder.gap_reasons == ["start", "reconnect"]
    assert spot_stream.health.reconnects == 1
    assert spot_stream.health.subscribes == 2
    # The gap fill ran only once the new subscription was confirmed: nothing can fall between.
    assert subscribed_at_gap == [2]
    await market_buy(client, "after-drop")
    await wait_until(lambda: any(r.status == "FILLED" for r in recorder.reports("after-drop")))


async def test_silent_stall_is_detected_from_missing_expected_events(
        sim: Any, spot_stream: SpotUserStream, client: Any, recorder: Recorder) -> None:
    await wait_until(lambda: spot_stream.health.gap_fills == 1)
    assert sim.exchange.faults.connections.stall("ws_api") == 1
    await market_buy(client, "stalled-1")
    spot_stream.expect_event("stalled-1")
    # The socket stays open and answers probes; only the expectation reveals the stall.
    await wait_until(lambda: spot_stream.health.stalls == 1, 5)
    await wait_until(lambda: spot_stream.health.gap_fills == 2)
    assert recorder.reports("stalled-1") == []  # lost on the wire: the gap fill's job
    assert spot_stream.health.reconnects == 1
    await market_buy(client, "after-stall")
    spot_stream.expect_event("after-stall")
    await wait_until(lambda: any(r.status == "FILLED" for r in recorder.reports("after-stall")))
    await asyncio.sleep(0.7)  # longer than stall_after_s: the met expectation raises nothing
    assert spot_stream.health.stalls == 1


async def test_probe_answers_while_events_flow(spot_stream: SpotUserStream) -> None:
    await spot_stream.probe_now()
    assert spot_stream.health.probes >= 1
    assert spot_stream.health.probe_timeouts == 0
    assert spot_stream.is_open()


async def test_event_stream_terminated_resubscribes_on_the_same_connection(
        sim: Any, spot_stream: SpotUserStream, client: Any, recorder: Recorder) -> None:
    await wait_until(lambda: spot_stream.health.gap_fills == 1)
    old_sub = spot_stream.subscription_id
    session = spot_stream._current
    assert session is not None
    # Ending the subscription server-side makes the exchange send eventStreamTerminated.
    await session.request("userDataStream.unsubscribe", {}, 2.0)
    await wait_until(lambda: spot_stream.health.resubscribes == 1)
    await wait_until(lambda: recorder.gap_reasons[-1:] == ["resubscribe"])
    assert spot_stream._current is session  # same connection
    assert spot_stream.subscription_id not in (None, old_sub)
    assert spot_stream.health.terminated == 1
    assert spot_stream.health.reconnects == 0
    await market_buy(client, "after-terminated")
    await wait_until(lambda: any(r.status == "FILLED" for r in recorder.reports("after-terminated")))


async def test_server_shutdown_reconnects_and_gap_fills(sim: Any, spot_stream: SpotUserStream, client: Any,
                                                        recorder: Recorder) -> None:
    await wait_until(lambda: spot_stream.health.gap_fills == 1)
    await sim.exchange.faults.connections.shutdown("ws_api")
    await wait_until(lambda: spot_stream.health.server_shutdowns == 1)
    await wait_until(lambda: spot_stream.health.gap_fills == 2)
    await market_buy(client, "after-shutdown")
    await wait_until(lambda: any(r.status == "FILLED" for r in recorder.reports("after-shutdown")))


async def test_rotate_is_make_before_break(sim: Any, spot_stream: SpotUserStream, client: Any,
                                           recorder: Recorder) -> None:
    await wait_until(lambda: spot_stream.health.gap_fills == 1)
    conns = sim.exchange.faults.connections
    seen_during_gap: list[int] = []
    recorder.on_gap = lambda reason: seen_during_gap.append(conns.count("ws_api"))
    old = spot_stream._current
    assert await spot_stream.rotate()
    assert seen_during_gap == [2]  # the gap fill ran while both connections were open
    assert spot_stream._current is not old
    await wait_until(lambda: conns.count("ws_api") == 1)
    assert spot_stream.health.rotations == 1
    assert spot_stream.health.reconnects == 0
    assert recorder.gap_reasons == ["start", "daily"]
    await market_buy(client, "after-rotate")
    await wait_until(lambda: any(r.status == "FILLED" for r in recorder.reports("after-rotate")))
    await asyncio.sleep(0.05)
    # One connection, one subscription: exactly one report per execution.
    assert len([r for r in recorder.reports("after-rotate") if r.status == "FILLED"]) == 1


async def test_connection_age_cut_reconnects_and_gap_fills() -> None:
    # The exchange's maximum connection age (24 h on Binance; 20 s here, at 20x) cuts the socket.
    handle = await start_sim(SimExchange.for_tests(time_scale=20, max_connection_age_s=20))
    client = build_client(handle.creds, handle.endpoints)
    rec = Recorder()
    signer = WsSigner(client, now_ms=handle.exchange.clock.now_ms)
    stream = SpotUserStream(handle.endpoints.spot_ws_api, signer, rec.deliver, rec.gap_fill,
                            probe_every_s=0.2, limiter=None)
    try:
        await stream.start()
        await wait_until(lambda: stream.health.reconnects >= 1 and stream.health.gap_fills >= 2, 8)
        assert "reconnect" in rec.gap_reasons
    finally:
        await stream.close()
        await client.close_connection()
        await handle.server.stop()


async def test_failed_gap_fill_is_retried(sim: Any, client: Any) -> None:
    rec = Recorder(fail_gap_fills=2)
    stream = SpotUserStream(sim.endpoints.spot_ws_api, WsSigner(client), rec.deliver, rec.gap_fill,
                            limiter=None, gap_backoff=Backoff(base_s=0.01, cap_s=0.02))
    async with stream:
        await wait_until(lambda: stream.health.gap_fills == 1)
    assert stream.health.gap_fill_errors == 2
    assert rec.gap_reasons == ["retry:retry:start"]


@pytest.mark.parametrize("kind", ["Ed25519", "RSA"])
async def test_subscribes_with_asymmetric_keys(sim: Any, make_client: Any, kind: str) -> None:
    creds = sim.ed25519_creds if kind == "Ed25519" else sim.rsa_creds
    client = make_client(creds)
    rec = Recorder()
    stream = SpotUserStream(sim.endpoints.spot_ws_api, WsSigner(client), rec.deliver, rec.gap_fill,
                            limiter=None)
    async with stream:
        await stream.wait_ready(5)
        await market_buy(client, f"{kind}-1")
        await wait_until(lambda: any(r.status == "FILLED" for r in rec.reports(f"{kind}-1")))


async def test_bad_signature_keeps_retrying_without_subscribing(sim: Any, client: Any) -> None:
    rec = Recorder()
    signer = WsSigner(client, now_ms=lambda: 1_000)  # far outside recvWindow: -1021 every time
    resyncs: list[int] = []

    async def resync() -> None:
        resyncs.append(1)

    stream = SpotUserStream(sim.endpoints.spot_ws_api, signer, rec.deliver, rec.gap_fill, limiter=None,
                            backoff=Backoff(base_s=0.01, cap_s=0.02), resync_clock=resync)
    async with stream:
        await wait_until(lambda: stream.health.attempts >= 3)
    assert stream.health.subscribes == 0
    assert rec.gap_reasons == []
    assert resyncs and "-1021" in (stream.health.last_error or "")


class _SlowConsumer:
    def __init__(self) -> None:
        self.submitted: list[Any] = []
        self.applied: list[Any] = []
        self.drains = 0

    def submit(self, event: Any) -> None:
        self.submitted.append(event)

    @property
    def queued(self) -> int:
        return len(self.submitted) - len(self.applied)

    async def drain(self) -> None:
        self.drains += 1
        await asyncio.sleep(0)
        self.applied = list(self.submitted)


async def test_reconciler_sink_applies_at_high_water() -> None:
    consumer = _SlowConsumer()
    deliver = reconciler_sink(consumer, high_water=3)
    for n in range(7):
        await deliver(parse_user_event({"e": "balanceUpdate", "E": n, "a": "USDT", "d": "1", "T": n}))
        assert consumer.queued < 3
    # What is handed over is the venue-neutral report, in order; control events are not.
    assert [r.event_ms for r in consumer.submitted] == list(range(7))
    assert all(isinstance(r, BalanceDeltaReport) for r in consumer.submitted)
    await deliver(parse_user_event({"e": "eventStreamTerminated", "E": 8}))
    assert len(consumer.submitted) == 7
    assert consumer.drains == 2
    with pytest.raises(ValueError):
        reconciler_sink(consumer, high_water=0)


async def test_slow_consumer_slows_the_reader_and_loses_nothing(sim: Any, client: Any) -> None:
    gate = asyncio.Event()
    got: list[ExecutionReport] = []

    async def slow(event: Any) -> None:
        await gate.wait()
        if isinstance(event, ExecutionReport):
            got.append(event)

    async def no_gap(reason: str) -> None:
        return None

    stream = SpotUserStream(sim.endpoints.spot_ws_api, WsSigner(client), slow, no_gap, limiter=None,
                            probe_every_s=0.1, response_timeout_s=0.3)
    async with stream:
        await stream.wait_ready(5)
        for n in range(20):
            await market_buy(client, f"bp-{n}")
        await asyncio.sleep(0.5)
        assert got == []
        assert stream.health.probe_timeouts == 0  # a blocked consumer is not a dead socket
        gate.set()
        await wait_until(lambda: len({r.client_order_id for r in got if r.status == "FILLED"}) == 20)
    assert stream.health.reconnects == 0


def test_activity_watch_expectations() -> None:
    now = [0.0]
    watch = ActivityWatch(1.0, clock=lambda: now[0])
    watch.expect("a")
    watch.expect("b")
    watch.withdraw("b")  # rejected: no event will come
    now[0] = 0.5
    assert not watch.overdue()
    watch.seen(_report("other"))  # another order's event does not meet "a"
    now[0] = 1.5
    assert watch.overdue()
    watch.seen(_report("x", orig="a"))  # a cancel report names the order in C
    assert not watch.overdue() and watch.pending == 0
    watch.expect()
    watch.seen(_report("anything"))  # an expectation without an id is met by any event
    assert watch.pending == 0
    with pytest.raises(ValueError):
        ActivityWatch(0)


def _report(cid: str, orig: str = "") -> ExecutionReport:
    from decimal import Decimal

    from executor.core.orders import OrderStatus, Side

    zero = Decimal(0)
    return ExecutionReport(
        event_time=1, symbol="BTCUSDT", client_order_id=cid, orig_client_order_id=orig, order_id=1,
        order_list_id=-1, side=Side.BUY, order_type="LIMIT", time_in_force="GTC", quantity=zero, price=zero,
        execution_type="NEW", status=OrderStatus.NEW, reject_reason="NONE", last_qty=zero, cum_qty=zero,
        last_price=zero, commission=zero, commission_asset=None, transaction_time=1, trade_id=-1,
        execution_id=1, is_maker=False, on_book=True, cum_quote=zero, last_quote=zero, order_time=1)


async def test_no_probe_inside_a_retry_after_window(sim: Any, client: Any) -> None:
    # The WS API shares the IP's limits with REST: a session.status probe while the gateway
    # waits out a 429 would earn a 418 ban. The probe holds off until the gate opens.
    from executor.exchange.ratelimit import BanGate

    now = [0.0]
    gate = BanGate(now=lambda: now[0])
    rec = Recorder()
    stream = SpotUserStream(sim.endpoints.spot_ws_api, WsSigner(client), rec.deliver, rec.gap_fill,
                            probe_every_s=0.05, response_timeout_s=1.0, stall_after_s=30, limiter=None,
                            gate=gate)
    await stream.start()
    try:
        await stream.wait_ready(5)
        gate.trip(60, banned=False, source="test")
        before = stream.health.probes
        await asyncio.sleep(0.5)  # ten probe intervals: none may go out while the gate is shut
        assert stream.health.probes == before
        now[0] = 61.0
        await wait_until(lambda: stream.health.probes > before, 5)
    finally:
        await stream.close()
