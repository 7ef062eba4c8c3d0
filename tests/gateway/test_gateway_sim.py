"""The REST gateway driving the real python-binance client against the embedded exchange.

Time that the gateway waits on (the ban gate, the weight budget) is the exchange's own
clock, advanced by the test or by the gateway's injected sleep, so a 60 s Retry-After or
a minute's weight window passes instantly and nothing sleeps on wall time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from binance import AsyncClient
from binance.exceptions import BinanceAPIException

from executor.exchange.client import make_client
from executor.exchange.ratelimit import WEIGHT, BanGate, WeightBudget
from executor.exchange.rest import Accepted, RateLimited, RestGateway, Unknown
from executor.sim.exchange import SimExchange
from tests.conftest import SimHandle
from tests.gateway.fakes import until

TIMEOUT_S = 2.0  # generous for loaded CI machines; only the hold test waits it out


@dataclass
class Rig:
    exchange: SimExchange
    gateway: RestGateway
    client: AsyncClient
    sleeps: list[float]

    def order(self, cid: str, price: str = "50000.00", qty: str = "0.00100") -> dict[str, object]:
        return {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                "quantity": Decimal(qty), "price": Decimal(price), "newClientOrderId": cid}

    def open_client_ids(self) -> list[str]:
        acct = self.exchange.default_account
        return [o.client_order_id for o in self.exchange.engine.open_orders(acct.id, "BTCUSDT")]


class ExchangeTime:
    """The exchange clock as seen by the gateway; ``sleep`` waits for the test to advance it.

    Our wall clock cannot jump, so an advance also moves the client's clock offset by the
    same amount: time passes on both sides and signed requests stay inside recvWindow.
    """

    def __init__(self, exchange: SimExchange) -> None:
        self.exchange = exchange
        self.gateway: RestGateway | None = None
        self.sleepers = 0
        self._moved = asyncio.Event()

    def now(self) -> float:
        return self.exchange.clock.now_ms() / 1000.0

    async def sleep(self, seconds: float) -> None:
        target = self.now() + seconds
        self.sleepers += 1
        try:
            while self.now() < target:
                await self._moved.wait()
        finally:
            self.sleepers -= 1

    def advance(self, seconds: float) -> None:
        ms = int(seconds * 1000) + 1
        self.exchange.clock.advance(ms)
        if self.gateway is not None:
            self.gateway.clock.offset_ms += ms
            self.gateway._client.timestamp_offset = self.gateway.clock.offset_ms
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()


@pytest.fixture
async def rig(sim: SimHandle) -> AsyncIterator[tuple[Rig, ExchangeTime]]:
    exchange = sim.exchange
    clock = ExchangeTime(exchange)
    client = make_client(sim.endpoints, sim.creds, timeout_s=TIMEOUT_S)
    sleeps: list[float] = []

    async def budget_sleep(seconds: float) -> None:
        # Budget pauses move the exchange clock instead of waiting on the wall.
        sleeps.append(seconds)
        clock.advance(seconds)
        await asyncio.sleep(0)

    gateway = RestGateway(client, budget=WeightBudget(now=clock.now),
                          gate=BanGate(now=clock.now, sleep=clock.sleep), sleep=budget_sleep)
    clock.gateway = gateway
    await gateway.start()
    yield Rig(exchange, gateway, client, sleeps), clock
    await gateway.close()


async def test_place_query_cancel_round_trip(rig: tuple[Rig, ExchangeTime]) -> None:
    r, _ = rig
    placed = await r.gateway.place_order(r.order("gw-rt-1"))
    assert isinstance(placed, Accepted) and placed.response["clientOrderId"] == "gw-rt-1"
    assert r.open_client_ids() == ["gw-rt-1"]

    found = await r.gateway.get_order("BTCUSDT", "gw-rt-1")
    assert found is not None and found["status"] == "NEW" and Decimal(found["price"]) == Decimal("50000")
    assert [o["clientOrderId"] for o in await r.gateway.open_orders("BTCUSDT")] == ["gw-rt-1"]
    assert len(await r.gateway.open_orders()) == 1

    canceled = await r.gateway.cancel_order("BTCUSDT", "gw-rt-1", "gw-rt-1-c")
    assert isinstance(canceled, Accepted)
    assert canceled.response["origClientOrderId"] == "gw-rt-1"
    assert canceled.response["clientOrderId"] == "gw-rt-1-c"
    assert r.open_client_ids() == []
    again = await r.gateway.cancel_order("BTCUSDT", "gw-rt-1", "gw-rt-1-c2")
    assert not isinstance(again, Accepted | Unknown)  # -2011: a definite no
    assert await r.gateway.get_order("BTCUSDT", "never-sent") is None


async def test_reads_and_budget_reads_the_weight_header(rig: tuple[Rig, ExchangeTime]) -> None:
    r, _ = rig
    account = await r.gateway.account()
    assert any(b["asset"] == "USDT" for b in account["balances"])
    assert r.gateway.budget.used(WEIGHT, 60) == r.exchange.ratelimiter.used_weight("127.0.0.1")
    info = await r.gateway.exchange_info(["BTCUSDT", "ETHUSDT"])
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
    assert (await r.gateway.exchange_info(["ETHUSDT"]))["symbols"][0]["symbol"] == "ETHUSDT"
    assert r.gateway.budget.used(WEIGHT, 60) == r.exchange.ratelimiter.used_weight("127.0.0.1")
    assert abs(await r.gateway.server_time() - r.exchange.clock.now_ms()) < 1000


async def test_trade_paging_finds_every_fill(rig: tuple[Rig, ExchangeTime]) -> None:
    r, _ = rig
    book = r.exchange.market.book("BTCUSDT")
    for i in range(5):
        out = await r.gateway.place_order({
            "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC",
            "quantity": Decimal("0.00010"), "price": book.ask + 100, "newClientOrderId": f"gw-tr-{i}"})
        assert isinstance(out, Accepted)
    first = await r.gateway.my_trades("BTCUSDT", limit=1000)
    assert len(first) >= 5
    start = int(first[0]["id"])
    paged = await r.gateway.trades_since("BTCUSDT", start, page_size=2)
    assert [t["id"] for t in paged] == [t["id"] for t in first]


@pytest.mark.parametrize(("status", "code"), [(503, None), (400, -1007), (500, -1007)])
async def test_failure_after_placement_is_unknown_then_found_by_client_id(
        rig: tuple[Rig, ExchangeTime], status: int, code: int | None) -> None:
    r, _ = rig
    r.exchange.faults.fail_orders(1, http_status=status, code=code, placed=True)
    out = await r.gateway.place_order(r.order("gw-unk-1"))
    assert isinstance(out, Unknown)
    found = await r.gateway.get_order("BTCUSDT", "gw-unk-1")
    assert found is not None and found["clientOrderId"] == "gw-unk-1"
    assert r.open_client_ids() == ["gw-unk-1"]  # exactly one: nothing was resent


async def test_failure_without_placement_is_unknown_then_not_found(rig: tuple[Rig, ExchangeTime]) -> None:
    r, _ = rig
    r.exchange.faults.fail_orders(1, http_status=503, placed=False)
    assert isinstance(await r.gateway.place_order(r.order("gw-unk-2")), Unknown)
    assert await r.gateway.get_order("BTCUSDT", "gw-unk-2") is None


async def test_held_response_past_timeout_is_unknown(rig: tuple[Rig, ExchangeTime]) -> None:
    r, _ = rig
    r.exchange.faults.hold(1, TIMEOUT_S + 0.5)
    out = await asyncio.wait_for(r.gateway.place_order(r.order("gw-hold-1")), TIMEOUT_S + 2)
    assert isinstance(out, Unknown) and "timeout" in out.reason
    assert await r.gateway.get_order("BTCUSDT", "gw-hold-1") is not None


async def test_minus_1021_resyncs_and_retries_once(rig: tuple[Rig, ExchangeTime]) -> None:
    r, _ = rig
    r.exchange.clock.skew_ms = 30_000  # exchange now 30 s ahead: our timestamps look stale
    out = await r.gateway.place_order(r.order("gw-skew-1"))
    assert isinstance(out, Accepted)
    assert r.gateway.skew_retries == 1
    assert abs(r.client.timestamp_offset - 30_000) < 1000
    assert r.open_client_ids() == ["gw-skew-1"]


async def test_429_then_418_stop_all_sending_until_retry_after(rig: tuple[Rig, ExchangeTime]) -> None:
    r, clock = rig
    gate = r.gateway.gate
    r.exchange.faults.rate_limit_burst = 1
    limited = await r.gateway.place_order(r.order("gw-429-0"))
    assert isinstance(limited, RateLimited) and not limited.banned and limited.retry_after_s == 60
    assert r.open_client_ids() == []  # a 429 is a definite no: nothing was placed

    # Everything waits at the gate: an order and a read, nothing reaches the exchange.
    sent_before = r.gateway.sent
    order = asyncio.create_task(r.gateway.place_order(r.order("gw-429-1")))
    read = asyncio.create_task(r.gateway.open_orders("BTCUSDT"))
    await until(lambda: clock.sleepers == 2)
    clock.advance(30)
    await until(lambda: clock.sleepers == 2)
    assert not order.done() and r.open_client_ids() == []
    assert r.gateway.sent == sent_before

    # Someone ignoring Retry-After on the same IP (as bare python-binance does) gets it banned.
    with pytest.raises(BinanceAPIException) as raw:
        await r.client.get_account()
    assert raw.value.status_code == 418
    clock.advance(30)
    # The gate reopens: one request probes (the order, first in line) and meets the 418;
    # the read, queued behind it, never reaches the exchange inside the ban.
    placed = await asyncio.wait_for(order, 2)
    assert isinstance(placed, RateLimited) and placed.banned
    assert gate.banned and gate.remaining() == pytest.approx(90, abs=1)  # 120 s ban, 30 s ago
    assert r.gateway.sent == sent_before + 1
    assert r.open_client_ids() == []
    assert not read.done()

    # Banned: all sending stops until the ban's Retry-After has passed, then resumes; the
    # read, safe to repeat, is answered then.
    retry = asyncio.create_task(r.gateway.place_order(r.order("gw-418-1")))
    await until(lambda: clock.sleepers == 2)
    clock.advance(89)
    await until(lambda: clock.sleepers == 2)
    assert not retry.done() and not read.done() and r.open_client_ids() == []
    clock.advance(1.5)
    assert isinstance(await asyncio.wait_for(retry, 2), Accepted)
    assert await asyncio.wait_for(read, 2) == []
    assert r.open_client_ids() == ["gw-418-1"]
    assert not gate.recovering


async def test_orders_queued_behind_a_429_do_not_leave_as_a_burst(rig: tuple[Rig, ExchangeTime]) -> None:
    """Five orders wait behind a 429; when the gate reopens the first probes, meets a second
    429, and the four behind it stay put: none arrives inside the Retry-After (which would
    earn a 418 ban). Then they leave and are placed, one after another."""
    r, clock = rig
    r.exchange.faults.rate_limit_burst = 2
    assert isinstance(await r.gateway.place_order(r.order("gw-q-0")), RateLimited)
    queued = [asyncio.create_task(r.gateway.place_order(r.order(f"gw-q-{i}"))) for i in range(1, 6)]
    await until(lambda: clock.sleepers == 5)
    clock.advance(60)
    assert isinstance(await asyncio.wait_for(queued[0], 2), RateLimited)
    await until(lambda: clock.sleepers >= 1)
    assert not any(t.done() for t in queued[1:])
    clock.advance(60)
    placed = await asyncio.wait_for(asyncio.gather(*queued[1:]), 5)
    assert all(isinstance(o, Accepted) for o in placed)
    assert sorted(r.open_client_ids()) == [f"gw-q-{i}" for i in range(2, 6)]
    assert r.exchange.ratelimiter.bans() == 0


async def test_low_weight_limit_is_paced_never_hit(rig: tuple[Rig, ExchangeTime]) -> None:
    r, _ = rig
    r.exchange.ratelimiter.limits.weight_per_minute = 120
    await r.gateway.exchange_info(["BTCUSDT"])  # adopts the exchange's (lowered) limits
    assert r.gateway.budget.snapshot()["REQUEST_WEIGHT/60s"]["limit"] == 120
    for _ in range(12):                          # 12 x 20 = twice the minute's allowance
        await r.gateway.account()
    assert r.gateway.gate.trips == 0
    assert r.sleeps, "the budget should have paused"
    assert r.exchange.ratelimiter.used_weight("127.0.0.1") <= 120


async def test_concurrent_orders_each_settle_their_own_headers(rig: tuple[Rig, ExchangeTime]) -> None:
    r, _ = rig
    outs = await asyncio.gather(*(r.gateway.place_order(r.order(f"gw-cc-{i}", price=f"{50000 + i}.00"))
                                  for i in range(20)))
    assert all(isinstance(o, Accepted) for o in outs)
    assert sorted(r.open_client_ids()) == sorted(f"gw-cc-{i}" for i in range(20))
    snap = r.gateway.budget.snapshot()
    assert snap["ORDERS/10s"]["in_flight"] == 0 and snap["REQUEST_WEIGHT/60s"]["in_flight"] == 0
    # The highest order count the exchange reported is the one the budget ends on.
    assert snap["ORDERS/86400s"]["used"] == 20


async def test_minus_1021_on_a_read_is_retried_once_too(rig: tuple[Rig, ExchangeTime]) -> None:
    r, _ = rig
    r.exchange.clock.skew_ms = -20_000  # exchange behind: our timestamps look 20 s ahead
    assert await r.gateway.open_orders("BTCUSDT") == []
    assert r.gateway.skew_retries == 1 and abs(r.client.timestamp_offset + 20_000) < 1000


async def test_ed25519_key_signs_orders(sim: SimHandle) -> None:
    client = make_client(sim.endpoints, sim.ed25519_creds, timeout_s=TIMEOUT_S)
    gateway = RestGateway(client)
    try:
        await gateway.start()
        out = await gateway.place_order({"symbol": "ETHUSDT", "side": "BUY", "type": "LIMIT",
                                         "timeInForce": "GTC", "quantity": Decimal("0.0100"),
                                         "price": Decimal("2500.00"), "newClientOrderId": "gw-ed-1"})
        assert isinstance(out, Accepted), out
        assert (await gateway.get_order("ETHUSDT", "gw-ed-1") or {}).get("status") == "NEW"
    finally:
        await gateway.close()
