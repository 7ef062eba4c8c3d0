"""make_client and the per-request response tap, against a tiny loopback HTTP server.

(The full exchange is exercised in test_gateway_sim.py; here the server misbehaves in
ways that need no exchange: echoing headers, holding, dropping the connection.)
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from aiohttp import web
from Crypto.PublicKey import ECC
from hypothesis import given
from hypothesis import strategies as st

from executor.exchange.client import capture_response, make_client, plain_form_body
from executor.exchange.credentials import Credentials
from executor.exchange.rest import RestGateway, Unknown
from executor.venue.endpoints import Endpoints
from tests.gateway.local_server import serving

CREDS = Credentials(api_key="testkey123", api_secret="testsecret")
MODE = web.AppKey("mode", dict)


async def _trades(request: web.Request) -> web.Response:
    # Echo the symbol's number into the weight header, answering in reverse order.
    n = int(request.query["symbol"].removeprefix("S"))
    await asyncio.sleep(0.002 * (10 - n))
    return web.json_response([], headers={"X-MBX-USED-WEIGHT-1M": str(n)})


async def _order(request: web.Request) -> web.StreamResponse:
    mode = request.app[MODE]["mode"]
    if mode == "hold":
        await asyncio.sleep(5)
    if mode == "503":
        return web.Response(status=503, text="Service Unavailable")
    if mode == "echo":
        return web.json_response({"orderId": 1, "body": await request.text(),
                                  "type": request.headers.get("Content-Type")})
    if mode == "drop":
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(1)
    return web.json_response({"orderId": 1})


async def _time(request: web.Request) -> web.Response:
    return web.json_response({"serverTime": 1})


@pytest.fixture
async def server() -> AsyncIterator[tuple[web.Application, Endpoints]]:
    app = web.Application()
    app[MODE] = {"mode": "ok"}
    app.router.add_get("/api/v3/myTrades", _trades)
    app.router.add_post("/api/v3/order", _order)
    app.router.add_get("/api/v3/time", _time)
    async with serving(app) as endpoints:
        yield app, endpoints


async def test_make_client_applies_timeout_recv_window_and_endpoints(
        server: tuple[web.Application, Endpoints]) -> None:
    _, endpoints = server
    client = make_client(endpoints, CREDS, timeout_s=Decimal("2.5"), recv_window_ms=7000)
    try:
        assert client.REQUEST_TIMEOUT == 2.5 and client.REQUEST_RECVWINDOW == 7000
        assert client.session.timeout.total == 2.5
        assert client._get_request_kwargs("get", False)["timeout"] == 2.5
        assert endpoints.spot_rest == client.API_URL and client.timestamp_offset == 0
    finally:
        await client.close_connection()
    with pytest.raises(ValueError, match="timeout_s"):
        make_client(endpoints, CREDS, timeout_s=0)


async def test_encrypted_ed25519_key_is_usable() -> None:
    key = ECC.generate(curve="ed25519")
    pem = key.export_key(format="PEM", passphrase="pw", protection="PBKDF2WithHMAC-SHA512AndAES256-CBC",
                         prot_params={"iteration_count": 1000})
    endpoints = Endpoints("t", "http://127.0.0.1:9/api", "ws://x/", "ws://x/", "http://x/fapi", "ws://x/")
    creds = Credentials("k1", private_key_pem=pem, private_key_pass="pw")
    client = make_client(endpoints, creds, timeout_s=1)
    try:
        assert not client._is_rsa and client._ed25519_signature("a=1")
    finally:
        await client.close_connection()
    with pytest.raises(ValueError, match="passphrase"):
        make_client(endpoints, Credentials("k1", private_key_pem=pem, private_key_pass="bad"), timeout_s=1)


async def test_tap_gives_each_concurrent_request_its_own_headers(
        server: tuple[web.Application, Endpoints]) -> None:
    _, endpoints = server
    client = make_client(endpoints, CREDS, timeout_s=5)

    async def one(n: int) -> tuple[int, str]:
        with capture_response() as seen:
            await client.get_my_trades(symbol=f"S{n}")
        return n, seen.headers["X-MBX-USED-WEIGHT-1M"]

    try:
        results = await asyncio.gather(*(one(n) for n in range(10)))
    finally:
        await client.close_connection()
    assert all(str(n) == header for n, header in results)


@pytest.mark.parametrize("mode", ["hold", "503", "drop"])
async def test_real_transport_failures_on_an_order_are_unknown(
        server: tuple[web.Application, Endpoints], mode: str) -> None:
    app, endpoints = server
    app[MODE]["mode"] = mode
    client = make_client(endpoints, CREDS, timeout_s=0.3)
    gateway = RestGateway(client)
    try:
        out = await asyncio.wait_for(gateway.place_order(
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "1",
             "newClientOrderId": "c1"}), 3)
    finally:
        await gateway.close()
    assert isinstance(out, Unknown), out


_SAFE = "abcXYZ019_.~-"
_ANY = st.text(alphabet=_SAFE + " &=+/%?é\n", max_size=12)


@given(st.lists(st.tuples(_ANY, _ANY), max_size=12))
def test_a_plain_form_body_is_exactly_what_urlencode_sends(pairs: list[tuple[str, str]]) -> None:
    body = plain_form_body(pairs)
    if body is not None:
        assert body == urlencode(pairs).encode()
    if all(set(k + v) <= set(_SAFE) for k, v in pairs):
        assert body is not None  # the fast path is taken whenever nothing needs escaping
    else:
        assert body is None  # anything that needs escaping is left to aiohttp's FormData


@pytest.mark.parametrize("client_id", ["bx9f2-mx1-o17", "needs escaping/+&="])
async def test_a_signed_order_body_is_the_signed_query_string(
        server: tuple[web.Application, Endpoints], client_id: str) -> None:
    # The exchange checks the signature over the body as sent: whichever way it was encoded,
    # the body must be the urlencoded parameters the HMAC was computed over.
    app, endpoints = server
    app[MODE]["mode"] = "echo"
    client = make_client(endpoints, CREDS, timeout_s=5)
    try:
        answer = await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="IOC",
                                           quantity="0.00040", price="49500.00", newClientOrderId=client_id)
    finally:
        await client.close_connection()
    assert answer["type"] == "application/x-www-form-urlencoded"
    body, _, signature = answer["body"].rpartition("&signature=")
    fields = dict(pair.split("=", 1) for pair in body.split("&"))
    assert fields["price"] == "49500.00" and fields["quantity"] == "0.00040"
    assert fields["newClientOrderId"] == urlencode({"c": client_id})[2:]
    signed = "&".join(f"{k}={v}" for k, v in sorted(
        {**fields, "newClientOrderId": client_id}.items()))
    assert hmac.new(b"testsecret", signed.encode(), "sha256").hexdigest() == signature
