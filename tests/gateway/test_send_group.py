"""A decision's held requests are written back to back (``executor.exchange.client.SendLeg``).

Units drive ``SendLeg.prepared`` directly (the point the middleware reaches once a request is
built and its hold has completed); the last test sends two real orders through the
``RestGateway`` and the holding middleware to a loopback server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

import executor.exchange.client as client_mod
from executor.exchange.client import SendLeg, join_send_group, make_client, send_leg
from executor.exchange.credentials import Credentials
from executor.exchange.rest import Accepted, RestGateway
from executor.venue.endpoints import Endpoints
from tests.gateway.local_server import serving

CREDS = Credentials(api_key="testkey123", api_secret="testsecret")
ARRIVALS = web.AppKey("arrivals", list)


async def _leg(leg: SendLeg, turns_to_prepare: int, written: list[str], name: str) -> None:
    with send_leg(leg):
        for _ in range(turns_to_prepare):  # a preparation spread over loop turns
            await asyncio.sleep(0)
        await leg.prepared()
        written.append(name)


async def test_the_first_leg_waits_for_the_second_and_is_written_first() -> None:
    written: list[str] = []
    first, second = join_send_group(), join_send_group()  # one decision: one iteration
    a = asyncio.ensure_future(_leg(first, 0, written, "spot"))
    b = asyncio.ensure_future(_leg(second, 5, written, "perp"))
    for _ in range(4):
        await asyncio.sleep(0)
    assert written == []  # the spot leg is prepared but waits for the perp leg
    await asyncio.wait_for(asyncio.gather(a, b), 5)
    assert written == ["spot", "perp"]  # back to back, in the decision's order


async def test_a_single_leg_does_not_wait_or_yield() -> None:
    leg = join_send_group()
    ran: list[str] = []
    asyncio.get_running_loop().call_soon(ran.append, "other")
    with send_leg(leg):
        await leg.prepared()
    assert ran == []  # no loop turn was taken


async def test_decisions_in_later_iterations_are_separate_groups() -> None:
    first = join_send_group()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    later = join_send_group()  # not this decision's: the first leg must not wait for it
    ran: list[str] = []
    asyncio.get_running_loop().call_soon(ran.append, "other")
    await first.prepared()
    assert ran == []  # it did not wait for the later leg
    later.leave()


async def test_a_leg_that_goes_away_releases_the_others() -> None:
    written: list[str] = []
    first, second = join_send_group(), join_send_group()
    a = asyncio.ensure_future(_leg(first, 0, written, "spot"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert written == []
    second.leave()  # e.g. its record failed: it will never be written
    await asyncio.wait_for(a, 5)
    assert written == ["spot"]
    second.leave()  # idempotent


async def test_the_wait_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_mod, "SEND_GROUP_WAIT_S", 0.01)
    written: list[str] = []
    first, _stuck = join_send_group(), join_send_group()  # the second never gets anywhere
    await asyncio.wait_for(_leg(first, 0, written, "spot"), 5)
    assert written == ["spot"]


async def test_a_cancelled_waiter_does_not_cancel_the_others() -> None:
    written: list[str] = []
    legs = [join_send_group() for _ in range(3)]
    a = asyncio.ensure_future(_leg(legs[0], 0, written, "a"))
    b = asyncio.ensure_future(_leg(legs[1], 0, written, "b"))
    for _ in range(3):
        await asyncio.sleep(0)
    a.cancel()
    await asyncio.wait_for(_leg(legs[2], 0, written, "c"), 5)
    await asyncio.wait_for(b, 5)
    assert written == ["b", "c"]
    assert a.cancelled()


async def _order(request: web.Request) -> web.Response:
    cid = (await request.post())["newClientOrderId"]
    request.app[ARRIVALS].append((asyncio.get_running_loop().time(), cid))
    return web.json_response({"orderId": 1})


@pytest.fixture
async def server() -> AsyncIterator[tuple[web.Application, Endpoints]]:
    app = web.Application()
    app[ARRIVALS] = []
    app.router.add_post("/api/v3/order", _order)
    async with serving(app) as endpoints:
        yield app, endpoints


async def test_two_held_orders_leave_after_their_record_and_both_arrive(
        server: tuple[web.Application, Endpoints]) -> None:
    app, endpoints = server
    client = make_client(endpoints, CREDS, timeout_s=5)
    gateway = RestGateway(client, max_requests_per_s=1000)
    loop = asyncio.get_running_loop()
    recorded: asyncio.Future[None] = loop.create_future()

    async def place(cid: str, leg: SendLeg) -> object:
        with send_leg(leg):
            return await gateway.place_order(
                {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC",
                 "quantity": "0.001", "price": "50000", "newClientOrderId": cid}, hold=recorded)

    try:
        sends = [asyncio.ensure_future(place(cid, join_send_group())) for cid in ("o-1", "o-2")]
        for _ in range(20):
            await asyncio.sleep(0)
        assert app[ARRIVALS] == []  # both built, neither written before the record
        committed_at = loop.time()
        recorded.set_result(None)
        outcomes = await asyncio.wait_for(asyncio.gather(*sends), 5)
    finally:
        await client.close_connection()
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert sorted(cid for _, cid in app[ARRIVALS]) == ["o-1", "o-2"]
    assert all(t >= committed_at for t, _ in app[ARRIVALS])
