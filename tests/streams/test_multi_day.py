"""Several simulated days on a sped-up exchange: keepalives, daily reconnects and periodic
reconciliation all happen, and not a single fill is missing or doubled."""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from binance.exceptions import BinanceAPIException

from executor.config import SchedulerConfig
from executor.exchange.binance_events import ExecutionReport
from executor.exchange.clock import ServerClock
from executor.exchange.futures_user_stream import FuturesListenKeys, FuturesUserStream
from executor.exchange.market_stream import book_ticker_stream, mark_price_stream
from executor.exchange.rest import RestGateway
from executor.exchange.user_stream import SpotUserStream
from executor.exchange.ws_sign import WsSigner
from executor.market.state import MarketState
from executor.run.scheduler import build_scheduler
from executor.sim.exchange import SimExchange
from executor.sim.futures_account import attach
from tests.conftest import build_client, start_sim
from tests.streams.conftest import wait_until

DAY_S = 86_400
TIME_SCALE = 15_000  # one exchange day in 5.76 s of wall time
DAYS = 2
SYMBOLS = ("BTCUSDT", "ETHUSDT")


class SimNow:
    """Makes python-binance sign with the sped-up exchange time: it computes
    ``time.time()*1000 + client.timestamp_offset``, and this offset answers that sum with
    the exchange's now (a wall-clock offset cannot follow a clock running 15,000x)."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock

    def __radd__(self, _wall_ms: float) -> int:
        return self.clock.now_ms()


class Ledger:
    """A minimal stand-in for the reconciler: fills keyed (symbol, tradeId), from the
    stream and from REST gap fills (myTrades paging from the last stored id)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.fills: dict[tuple[str, int], str] = {}
        self.streamed: set[tuple[str, int]] = set()  # every fill the stream delivered
        self.reasons: list[str] = []
        self.snapshots = 0
        self._lock = asyncio.Lock()

    async def deliver(self, event: Any) -> None:
        if isinstance(event, ExecutionReport) and event.fill is not None:
            key = (event.fill.symbol, event.fill.trade_id)  # spot only: (symbol, tradeId)
            self.fills.setdefault(key, "stream")
            self.streamed.add(key)

    async def gap_fill(self, reason: str) -> None:
        async with self._lock:
            self.reasons.append(reason)
            for symbol in SYMBOLS:
                while True:
                    last = max((t for s, t in self.fills if s == symbol), default=-1)
                    page = await self.client.get_my_trades(symbol=symbol, fromId=last + 1, limit=1000)
                    for row in page:
                        self.fills.setdefault((symbol, int(row["id"])), "gap_fill")
                    if len(page) < 1000:
                        break

    async def snapshot_balances(self) -> None:
        await self.client.get_account()
        self.snapshots += 1


class LagMonitor:
    """The worst event-loop stall seen (other processes on a busy machine cause them)."""

    def __init__(self) -> None:
        self.worst_s = 0.0

    async def run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.005)
            self.worst_s = max(self.worst_s, time.monotonic() - start - 0.005)


async def exchange_trades(client: Any) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    for symbol in SYMBOLS:
        rows = await client.get_my_trades(symbol=symbol, fromId=0, limit=1000)
        assert len(rows) < 1000
        out |= {(symbol, int(r["id"])) for r in rows}
    return out


async def test_several_simulated_days_with_no_gap_in_fills(monkeypatch: Any) -> None:
    # One book update per 1000 exchange seconds (25 a second of wall time) keeps the loop light.
    handle = await start_sim(SimExchange.for_tests(time_scale=TIME_SCALE, book_update_hz=0.001))
    clock = handle.exchange.clock
    client = build_client(handle.creds, handle.endpoints)
    client.timestamp_offset = SimNow(clock)

    async def fetch_ms() -> int:
        return int((await client.get_server_time())["serverTime"])

    # The clock-sync job measures for real but must not overwrite SimNow on the client.
    gateway = RestGateway(client, clock=ServerClock(SimpleNamespace(timestamp_offset=0), fetch_ms))
    ledger = Ledger(client)
    spot = SpotUserStream(handle.endpoints.spot_ws_api, WsSigner(client), ledger.deliver, ledger.gap_fill,
                          limiter=None)
    futures_events: list[Any] = []

    async def on_futures(event: Any) -> None:
        futures_events.append(event)

    async def no_gap(reason: str) -> None:
        return None

    futures = FuturesUserStream(handle.endpoints.futures_private_stream, FuturesListenKeys(client),
                                on_futures, no_gap, limiter=None)
    state = MarketState(SYMBOLS)
    market = book_ticker_stream(handle.endpoints, SYMBOLS, state)
    # Reading marks continuously also keeps the sim's basis walk in small steps (read only at
    # funding, it catches up 28,800 steps at once and blocks the loop for ~100 ms).
    marks = mark_price_stream(handle.endpoints, SYMBOLS, state)
    cfg = SchedulerConfig(futures_keepalive_s=1200, daily_reconnect_s=82_800, reconcile_s=3600,
                          balance_snapshot_s=7200, clock_sync_s=3600)
    sched = build_scheduler(cfg, time_scale=TIME_SCALE, futures_streams=[futures],
                            market_streams=[market, marks], user_streams=[spot], reconciler=ledger,
                            gateway=gateway)
    trader: asyncio.Task[None] | None = None
    lag_monitor = LagMonitor()
    orders = 0
    try:
        await market.start()
        await marks.start()
        await spot.start()
        await futures.start()
        sched.start()  # at once: the listenKey lives 240 ms of wall time without a PUT
        ready = asyncio.gather(spot.wait_ready(), futures.wait_ready(), market.wait_ready(),
                               marks.wait_ready())
        await asyncio.wait_for(ready, 10)
        start_ms = clock.now_ms()

        async def place(symbol: str, side: str, qty: str, cid: str) -> None:
            while True:
                try:
                    await client.create_order(symbol=symbol, side=side, type="MARKET", quantity=qty,
                                              newClientOrderId=cid)
                    return
                except BinanceAPIException as exc:
                    # A stall longer than the test's widened window: -1021 is a definite "not
                    # placed", so sending again cannot duplicate the order.
                    if exc.code != -1021:
                        raise

        async def trade() -> None:
            nonlocal orders
            while True:
                symbol = SYMBOLS[orders % 2]
                side = "BUY" if orders % 4 < 2 else "SELL"
                qty = "0.001" if symbol == "BTCUSDT" else "0.01"
                await place(symbol, side, qty, f"md-{orders}")
                orders += 1
                if orders % 10 == 0:
                    attach(handle.exchange).transfer("default", "USDT", Decimal(1))
                await asyncio.sleep(0.04)

        trader = asyncio.create_task(trade())
        lag = asyncio.create_task(lag_monitor.run())
        deadline = time.monotonic() + 40
        while clock.now_ms() - start_ms < DAYS * DAY_S * 1000:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        trader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trader
        lag.cancel()
        # Settled: a last order's fill arrives over the stream (after everything before it on
        # that connection), and any gap fill a recovery started has finished.
        await place("BTCUSDT", "SELL", "0.001", "md-final")
        truth = await exchange_trades(client)
        final = max(t for s, t in truth if s == "BTCUSDT")
        await wait_until(lambda: ("BTCUSDT", final) in ledger.streamed, 10)
        await spot.gaps.wait_idle()
    finally:
        if trader is not None:
            trader.cancel()
        await sched.shutdown()
        await spot.close()
        await futures.close()
        await market.close()
        await marks.close()
        await client.close_connection()
        await handle.server.stop()

    stats = sched.stats
    # Several days: every job ran many times.
    assert stats["futures_keepalive"].ok >= DAYS * DAY_S // 1200 // 2
    assert stats["daily_reconnect"].ok >= DAYS - 1
    assert stats["reconcile"].ok >= DAYS * 24 // 2
    assert stats["balance_snapshot"].ok >= DAYS * 12 // 2
    assert stats["clock_sync"].ok >= DAYS * 24 // 2
    assert ledger.reasons.count("periodic") == stats["reconcile"].ok + stats["reconcile"].errors
    assert spot.health.rotations >= DAYS - 1 and futures.health.rotations >= DAYS - 1
    assert all(h.rotations >= DAYS - 1 for h in [*market.health(), *marks.health()])
    # No gap in fills: the ledger holds exactly the exchange's trades (stream + gap fills,
    # no final catch-up run), and the stream delivered nearly all of them itself.
    assert set(ledger.fills) == truth and len(truth) > orders > 50
    assert len(ledger.streamed) >= 0.9 * len(truth)
    # Every (re)subscription was followed by a gap fill; every lost listenKey was replaced.
    h = spot.health
    assert h.gap_fills + h.gap_fill_errors >= 1 + h.reconnects + h.rotations + h.resubscribes
    f = futures.health
    lost = f.keys_expired + f.keepalive_errors  # one loss may show as both
    assert (f.key_recreations > 0) == (lost > 0) and f.key_recreations <= lost and futures_events
    if lag_monitor.worst_s < 0.1:
        # The machine never stalled us for long (at 15,000x, 0.1 s of wall time is 25
        # exchange minutes): then nothing may have needed recovering at all. Under heavy
        # load a longer stall can outlast the listenKey's or the connection's wall-time
        # margin; the invariants above still hold then.
        assert all(s.errors == 0 for s in stats.values()), [(s.name, s.last_error) for s in stats.values()]
        assert h.reconnects == 0 and f.reconnects == 0 and f.keys_expired == 0
        assert f.keepalive_errors == 0 and f.keepalives >= stats["futures_keepalive"].ok
        assert all(x.reconnects == 0 for x in [*market.health(), *marks.health()])
        assert ledger.streamed == truth
