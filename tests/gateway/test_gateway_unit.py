"""RestGateway logic against a scripted client: outcomes, -1021 retry, gate, budget, paging."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from executor.exchange.clock import ServerClock
from executor.exchange.ratelimit import ORDERS, WEIGHT, BanGate, WeightBudget
from executor.exchange.rest import (
    Accepted,
    GatewayError,
    RateLimited,
    Rejected,
    RestGateway,
    Unknown,
    order_wire_params,
)
from tests.gateway.fakes import ManualTime, ScriptedClient, api_error, until

ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
         "quantity": Decimal("0.001"), "price": Decimal("50000.00"), "newClientOrderId": "bot-1-1"}


def make(t: ManualTime, server_skew_ms: float = 0.0) -> tuple[RestGateway, ScriptedClient]:
    client = ScriptedClient(server_ms=lambda: t.now_ms() + server_skew_ms)
    gw = RestGateway(
        client,
        budget=WeightBudget(now=t.now, limits=((WEIGHT, 60, 1000), (ORDERS, 10, 50))),
        gate=BanGate(now=t.now, sleep=t.sleep),
        sleep=t.sleep,
        local_ms=t.now_ms,
        max_requests_per_s=1000,
    )
    return gw, client


def test_order_params_are_validated_and_decimals_go_out_plain() -> None:
    wire = order_wire_params({**ORDER, "quantity": Decimal("1E-7"), "icebergQty": None})
    assert wire["quantity"] == "0.0000001" and "icebergQty" not in wire
    with pytest.raises(ValueError, match="newClientOrderId"):
        order_wire_params({k: v for k, v in ORDER.items() if k != "newClientOrderId"})
    with pytest.raises(TypeError, match="float"):
        order_wire_params({**ORDER, "price": 50000.0})
    with pytest.raises(ValueError, match="signature"):
        order_wire_params({**ORDER, "signature": "x"})


async def test_accepted_order_and_budget_reads_weight_header() -> None:
    t = ManualTime(1_700_000_020.0)
    gw, client = make(t)
    client.response_headers = {"X-MBX-USED-WEIGHT-1M": "321", "X-MBX-ORDER-COUNT-10S": "4"}
    client.script("create_order", {"orderId": 1, "clientOrderId": "bot-1-1", "status": "NEW"})
    out = await gw.place_order(ORDER)
    assert isinstance(out, Accepted) and out.response["orderId"] == 1
    assert client.calls[0][1]["price"] == "50000.00"
    assert gw.budget.used(WEIGHT, 60) == 321 and gw.budget.used(ORDERS, 10) == 4


@pytest.mark.parametrize("failure", [
    api_error(503, None),
    api_error(400, -1007, "Timeout waiting for response from backend server."),
    TimeoutError(),
    aiohttp.ServerDisconnectedError(),
])
async def test_unknown_outcome_is_returned_and_never_resent(failure: BaseException) -> None:
    t = ManualTime()
    gw, client = make(t)
    client.script("create_order", failure)
    out = await gw.place_order(ORDER)
    assert isinstance(out, Unknown)
    assert client.called("create_order") == 1


async def test_definite_rejection_is_returned() -> None:
    t = ManualTime()
    gw, client = make(t)
    insufficient = api_error(400, -2010, "Account has insufficient balance for requested action.")
    client.script("create_order", insufficient)
    out = await gw.place_order(ORDER)
    assert isinstance(out, Rejected) and out.code == -2010 and client.called("create_order") == 1


async def test_minus_1021_resyncs_and_retries_exactly_once() -> None:
    t = ManualTime()
    gw, client = make(t, server_skew_ms=20_000)
    skew = api_error(400, -1021, "Timestamp for this request is outside of the recvWindow.")
    client.script("create_order", skew, {"orderId": 7})
    out = await gw.place_order(ORDER)
    assert isinstance(out, Accepted) and client.called("create_order") == 2
    assert client.called("get_server_time") >= 1 and abs(client.timestamp_offset - 20_000) <= 1
    assert gw.skew_retries == 1

    client.script("create_order", skew, skew, {"orderId": 8})
    out = await gw.place_order(ORDER)
    assert isinstance(out, Rejected) and out.code == -1021
    assert client.called("create_order") == 4  # one retry, never a second


async def test_429_closes_the_gate_for_every_request_until_retry_after() -> None:
    t = ManualTime()
    gw, client = make(t)
    client.script("get_account", api_error(429, -1003, "Too many requests.", {"Retry-After": "30"}),
                  {"balances": []})
    # A read met by a 429 is asked again once the gate reopens (it changes nothing).
    account = asyncio.create_task(gw.account())
    await until(lambda: not gw.gate.is_open)
    assert gw.gate.remaining() == pytest.approx(30)

    order = asyncio.create_task(gw.place_order(ORDER))
    read = asyncio.create_task(gw.open_orders("BTCUSDT"))
    await until(lambda: len(t.sleepers) == 3)
    t.advance(29.5)
    await until(lambda: len(t.sleepers) == 3)
    assert client.called("create_order") == 0 and client.called("get_open_orders") == 0
    assert client.called("get_account") == 1
    t.advance(0.5)
    await asyncio.wait_for(asyncio.gather(account, order, read), 2)
    assert client.called("create_order") == 1 and client.called("get_open_orders") == 1
    assert client.called("get_account") == 2
    assert not gw.gate.recovering


async def test_after_reopening_one_request_probes_before_the_queue_leaves() -> None:
    t = ManualTime()
    gw, client = make(t)
    retry = {"Retry-After": "30"}
    client.script("create_order", api_error(429, -1003, "Too many requests.", retry),
                  api_error(429, -1003, "Too many requests.", retry), *({"status": "NEW"} for _ in range(3)))
    assert isinstance(await gw.place_order(ORDER), RateLimited)
    queued = [asyncio.create_task(gw.place_order(ORDER)) for _ in range(3)]
    await until(lambda: len(t.sleepers) == 3)
    t.advance(30)
    # The first in line probes and meets another 429; the other two never left.
    first = await asyncio.wait_for(queued[0], 2)
    assert isinstance(first, RateLimited)
    assert client.called("create_order") == 2
    await until(lambda: len(t.sleepers) >= 1)
    t.advance(30)
    rest = await asyncio.wait_for(asyncio.gather(*queued[1:]), 2)
    assert all(isinstance(o, Accepted) for o in rest)
    assert client.called("create_order") == 4


async def test_418_ban_from_an_order_is_returned_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    t = ManualTime()
    gw, client = make(t)
    client.script("create_order", api_error(418, -1003, "IP banned until 1.", {"Retry-After": "120"}))
    with caplog.at_level(logging.WARNING):
        out = await gw.place_order(ORDER)
    assert isinstance(out, RateLimited) and out.banned
    assert not gw.gate.is_open and gw.gate.remaining() == pytest.approx(120)
    assert any(r.levelno == logging.CRITICAL for r in caplog.records)


async def test_budget_near_limit_delays_the_next_request_to_the_next_window() -> None:
    t = ManualTime(1_700_000_020.0)  # 40 s into the minute
    gw, client = make(t)
    client.response_headers = {"X-MBX-USED-WEIGHT-1M": "899"}
    await gw.open_orders("BTCUSDT")
    task = asyncio.create_task(gw.account())
    await until(lambda: len(t.sleepers) == 1)
    assert client.called("get_account") == 0
    assert t.sleepers[0] == pytest.approx(t.now() + 20.0)
    t.advance(20.0)
    await asyncio.wait_for(task, 2)
    assert client.called("get_account") == 1


async def test_get_order_returns_none_for_unknown_order_and_raises_otherwise() -> None:
    t = ManualTime()
    gw, client = make(t)
    client.script("get_order", api_error(400, -2013, "Order does not exist."), api_error(503, None))
    assert await gw.get_order("BTCUSDT", "nope") is None
    with pytest.raises(GatewayError) as info:
        await gw.get_order("BTCUSDT", "x")
    assert isinstance(info.value.outcome, Unknown)


async def test_cancel_sends_both_ids() -> None:
    t = ManualTime()
    gw, client = make(t)
    client.script("cancel_order", {"status": "CANCELED"})
    out = await gw.cancel_order("BTCUSDT", "bot-1-1", "bot-1-1c")
    assert isinstance(out, Accepted)
    assert client.calls[-1][1] == {"symbol": "BTCUSDT", "origClientOrderId": "bot-1-1",
                                   "newClientOrderId": "bot-1-1c"}


async def test_trades_since_pages_until_a_short_page() -> None:
    t = ManualTime()
    gw, client = make(t)
    trades = [{"id": i, "symbol": "BTCUSDT"} for i in range(10, 35)]

    def page(kw: dict[str, Any]) -> list[dict[str, Any]]:
        return [tr for tr in trades if tr["id"] >= kw["fromId"]][: kw["limit"]]

    client.script("get_my_trades", page, page, page, page)
    rows = await gw.trades_since("BTCUSDT", 12, page_size=10)
    assert [r["id"] for r in rows] == list(range(12, 35))
    assert [kw["fromId"] for name, kw in client.calls if name == "get_my_trades"] == [12, 22, 32]


async def test_exchange_info_adopts_rate_limits() -> None:
    t = ManualTime()
    gw, client = make(t)
    client.script("_get:exchangeInfo", {"rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 77}],
        "symbols": []})
    await gw.exchange_info(["btcusdt", "ethusdt"])
    assert client.calls[-1][1]["data"]["symbols"] == "%5B%22BTCUSDT%22%2C%22ETHUSDT%22%5D"
    assert gw.budget.snapshot()["REQUEST_WEIGHT/60s"]["limit"] == 77


async def test_programming_errors_propagate() -> None:
    t = ManualTime()
    gw, client = make(t)
    client.script("get_account", KeyError("boom"))
    with pytest.raises(KeyError):
        await gw.account()


async def test_start_syncs_the_clock() -> None:
    t = ManualTime()
    gw, client = make(t, server_skew_ms=-5000)
    assert isinstance(gw.clock, ServerClock)
    offset = await gw.start()
    assert abs(offset + 5000) <= 1 and client.timestamp_offset == offset


async def test_failed_resync_after_minus_1021_returns_the_rejection() -> None:
    t = ManualTime()
    gw, client = make(t)
    client.script("create_order", api_error(400, -1021, "outside of the recvWindow."))
    client.script("get_server_time", api_error(503, None))
    out = await gw.place_order(ORDER)
    assert isinstance(out, Rejected) and out.code == -1021
    assert client.called("create_order") == 1 and gw.skew_retries == 0
