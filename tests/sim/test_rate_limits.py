"""Request weight, order counters, 429 then 418 with Retry-After, and the REST fault switches."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from binance.exceptions import BinanceAPIException

from executor.sim.faults import OrderFailure

ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
         "price": "50000.00"}


async def sync_clock(client: Any) -> None:
    """What a client must do after the sim clock jumps: re-learn the offset."""
    client.timestamp_offset = (await client.get_server_time())["serverTime"] - int(time.time() * 1000)


async def test_weight_header_on_every_response(client: Any) -> None:
    await client.get_server_time()
    assert client.response.headers["X-MBX-USED-WEIGHT-1M"] == "1"
    await client.get_exchange_info()
    assert client.response.headers["X-MBX-USED-WEIGHT-1M"] == "21"
    await client.get_account()
    assert client.response.headers["X-MBX-USED-WEIGHT-1M"] == "41"


async def test_successful_orders_weigh_zero_and_carry_order_counts(client: Any) -> None:
    await client.get_server_time()
    await client.create_order(**ORDER)
    headers = client.response.headers
    assert headers["X-MBX-USED-WEIGHT-1M"] == "1"
    assert (headers["X-MBX-ORDER-COUNT-10S"], headers["X-MBX-ORDER-COUNT-1D"]) == ("1", "1")
    await client.create_order(**ORDER)
    assert client.response.headers["X-MBX-ORDER-COUNT-10S"] == "2"
    with pytest.raises(BinanceAPIException) as err:
        await client.create_order(**{**ORDER, "price": "1.001"})
    assert "X-MBX-ORDER-COUNT-10S" not in err.value.response.headers
    assert err.value.response.headers["X-MBX-USED-WEIGHT-1M"] == "2"   # a failure costs its weight


async def test_weight_window_resets_each_sim_minute(sim: Any, client: Any) -> None:
    await client.get_exchange_info()
    sim.exchange.clock.advance(60_000)
    await client.get_server_time()
    assert client.response.headers["X-MBX-USED-WEIGHT-1M"] == "1"


async def test_429_then_418_with_retry_after(sim: Any, client: Any) -> None:
    sim.exchange.ratelimiter.limits.weight_per_minute = 30
    await client.get_exchange_info()                       # 20
    with pytest.raises(BinanceAPIException) as err:
        await client.get_exchange_info()                   # 40 > 30
    e = err.value
    assert (e.status_code, e.code) == (429, -1003)
    assert e.message.startswith("Too much request weight used; current limit is 30 request weight per "
                                "1 MINUTE.")
    retry = int(e.response.headers["Retry-After"])
    assert 1 <= retry <= 60
    with pytest.raises(BinanceAPIException) as err:       # kept going inside Retry-After
        await client.get_server_time()
    e = err.value
    assert (e.status_code, e.code) == (418, -1003)
    assert e.message.startswith("Way too much request weight used; IP banned until ")
    ban = int(e.response.headers["Retry-After"])
    assert ban >= 120 > retry
    sim.exchange.clock.advance(ban * 1000 + 1)             # the ban ends on the sim clock
    assert "serverTime" in await client.get_server_time()


async def test_ban_escalates(sim: Any, client: Any) -> None:
    limiter = sim.exchange.ratelimiter
    limiter.limits.weight_per_minute = 1
    bans = []
    for _ in range(2):
        await client.get_server_time()
        with pytest.raises(BinanceAPIException):
            await client.get_server_time()
        with pytest.raises(BinanceAPIException) as err:
            await client.get_server_time()
        bans.append(int(err.value.response.headers["Retry-After"]))
        sim.exchange.clock.advance(bans[-1] * 1000 + 60_000)
    assert bans[1] > bans[0]


async def test_order_rate_limit(sim: Any, client: Any) -> None:
    sim.exchange.ratelimiter.limits.orders_per_10s = 2
    await client.create_order(**ORDER)
    await client.create_order(**ORDER)
    with pytest.raises(BinanceAPIException) as err:
        await client.create_order(**ORDER)
    assert (err.value.status_code, err.value.code) == (429, -1015)
    assert err.value.message == "Too many new orders; current limit is 2 orders per 10 SECOND."
    sim.exchange.clock.advance(10_000)
    await sync_clock(client)
    await client.create_order(**ORDER)


async def test_fault_burst_of_429s(sim: Any, client: Any) -> None:
    sim.exchange.faults.rate_limit_burst = 2
    with pytest.raises(BinanceAPIException) as err:
        await client.get_server_time()
    assert err.value.status_code == 429 and "Retry-After" in err.value.response.headers
    sim.exchange.clock.advance(61_000)          # the client honoured Retry-After
    with pytest.raises(BinanceAPIException):
        await client.get_server_time()
    sim.exchange.clock.advance(61_000)
    assert "serverTime" in await client.get_server_time()


async def test_fault_order_failure_placed_answers_503_but_books_the_order(sim: Any, client: Any) -> None:
    sim.exchange.faults.order_failures.append(OrderFailure(http_status=503, code=None, placed=True))
    with pytest.raises(BinanceAPIException) as err:
        await client.create_order(**{**ORDER, "newClientOrderId": "unknown-1"})
    assert err.value.status_code == 503
    got = await client.get_order(symbol="BTCUSDT", origClientOrderId="unknown-1")
    assert got["status"] == "NEW"


async def test_fault_order_failure_timeout_code_not_placed(sim: Any, client: Any) -> None:
    sim.exchange.faults.order_failures.append(OrderFailure(http_status=400, code=-1007, placed=False))
    with pytest.raises(BinanceAPIException) as err:
        await client.create_order(**{**ORDER, "newClientOrderId": "unknown-2"})
    assert (err.value.code, err.value.message) == (
        -1007, "Timeout waiting for response from backend server. Send status unknown; "
        "execution status unknown.")
    with pytest.raises(BinanceAPIException) as err:
        await client.get_order(symbol="BTCUSDT", origClientOrderId="unknown-2")
    assert err.value.code == -2013


async def test_fault_hold_delays_the_response_after_acting(sim: Any, client: Any) -> None:
    sim.exchange.faults.hold_responses, sim.exchange.faults.hold_seconds = 1, 0.3
    task = asyncio.create_task(client.create_order(**{**ORDER, "newClientOrderId": "held-1"}))
    started = time.monotonic()

    async def placed() -> None:
        while not sim.exchange.engine.orders["BTCUSDT"]:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(placed(), 2)
    assert not task.done()
    result = await asyncio.wait_for(task, 2)
    assert result["clientOrderId"] == "held-1" and time.monotonic() - started >= 0.25
