"""Fidelity fixes from the review against Binance's docs: each test pins one behaviour where the
sim used to differ from Binance (code, message text, HTTP status, header or shape)."""

from __future__ import annotations

import hashlib
import hmac
import time
import warnings
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import websockets
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.sim import errors
from executor.sim.appkeys import HOST_NAME, SERVER, SIM
from executor.sim.engine import NewOrder, check_filters
from executor.sim.exchange import SimExchange
from executor.sim.futures_account import FuturesPosition, _fixed
from executor.sim.market import SymbolSpec
from executor.sim.server import HOSTS, SimServer
from tests.sim.test_rest_errors import ORDER, expect, raw
from tests.sim2.conftest import WsApi, expect_closed, recv_json, signed


def ts() -> int:
    return int(time.time() * 1000)


# -- order rate limit: 429 without Retry-After --------------------------------------------------

async def test_order_rate_limit_429_has_no_retry_after_and_no_ban(sim: Any, client: Any) -> None:
    sim.exchange.ratelimiter.limits.orders_per_10s = 1
    await client.create_order(**ORDER)
    err = await expect(client.create_order(**ORDER), -1015,
                       "Too many new orders; current limit is 1 orders per 10 SECOND.", 429)
    assert "Retry-After" not in err.response.headers
    # Not a REQUEST_WEIGHT 429: asking again at once is no reason for a 418 ban.
    await expect(client.create_order(**ORDER), -1015,
                 "Too many new orders; current limit is 1 orders per 10 SECOND.", 429)
    assert "serverTime" in await client.get_server_time()


# -- timestamps ---------------------------------------------------------------------------------

async def test_timestamp_in_microseconds_is_accepted(sim: Any) -> None:
    status, _, body = await raw(sim, "GET", "/api/v3/account", f"timestamp={ts() * 1000}")
    assert status == 200 and "balances" in body
    status, _, body = await raw(sim, "GET", "/api/v3/account", f"timestamp={(ts() - 10_000) * 1000}")
    assert (status, body["code"]) == (400, -1021)


async def test_recv_window_with_microsecond_decimals(sim: Any) -> None:
    status, _, _ = await raw(sim, "GET", "/api/v3/account", f"recvWindow=6000.346&timestamp={ts()}")
    assert status == 200
    status, _, body = await raw(sim, "GET", "/api/v3/account", f"recvWindow=60000.001&timestamp={ts()}")
    assert (status, body["code"]) == (400, -1102)


# -- newClientOrderId legal range (spot: no '.', ':' or '/') ---------------------------------------

# (':' and '/' cannot be tried through python-binance 1.0.37: it signs values unencoded but
# sends them percent-encoded, which Binance -- and the sim -- answer with -1022 first.)
@pytest.mark.parametrize("bad", ["a.b", "a~b", "x" * 37])
async def test_spot_client_order_id_range(client: Any, bad: str) -> None:
    await expect(client.create_order(**{**ORDER, "newClientOrderId": bad}), -1100,
                 "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                 "'^[a-zA-Z0-9-_]{1,36}$'.")


async def test_client_order_id_with_dash_and_underscore_is_fine(client: Any) -> None:
    placed = await client.create_order(**{**ORDER, "newClientOrderId": "bx_1-run-o42"})
    assert placed["clientOrderId"] == "bx_1-run-o42"


# -- order types and parameters the symbol does not enable ------------------------------------------

async def test_stop_loss_not_supported_for_symbol(client: Any) -> None:
    await expect(client.create_order(symbol="BTCUSDT", side="SELL", type="STOP_LOSS", quantity="0.001",
                                     stopPrice="40000.00"), -2010,
                 "Stop loss orders are not supported for this symbol.")
    await expect(client.create_order(symbol="BTCUSDT", side="SELL", type="TAKE_PROFIT_LIMIT",
                                     quantity="0.001", price="70000.00", stopPrice="70000.00",
                                     timeInForce="GTC"), -2010,
                 "Take profit limit orders are not supported for this symbol.")
    await expect(client.create_order(symbol="BTCUSDT", side="SELL", type="OCO", quantity="0.001"), -1116,
                 "Invalid orderType.")


async def test_stop_price_and_iceberg_on_plain_orders(client: Any) -> None:
    await expect(client.create_order(**{**ORDER, "stopPrice": "40000.00"}), -1106,
                 "Parameter 'stopPrice' sent when not required.")
    await expect(client.create_order(**{**ORDER, "icebergQty": "0.0005"}), -2010,
                 "Iceberg orders are not supported for this symbol.")


# -- account that may not trade ------------------------------------------------------------------

async def test_trading_disabled_account_cannot_cancel_either(sim: Any, client: Any) -> None:
    placed = await client.create_order(**ORDER)
    sim.exchange.default_account.can_trade = False
    await expect(client.cancel_order(symbol="BTCUSDT", orderId=placed["orderId"]), -2011,
                 "This account may not place or cancel orders.")


# -- symbol status -------------------------------------------------------------------------------

async def test_symbol_status_in_exchange_info_and_orders_refused(sim: Any, client: Any) -> None:
    resting = await client.create_order(**ORDER)
    sim.exchange.set_symbol_status("BTCUSDT", "HALT")
    info = await client.get_exchange_info()
    assert {s["symbol"]: s["status"] for s in info["symbols"]} == {"BTCUSDT": "HALT", "ETHUSDT": "TRADING"}
    await expect(client.create_order(**ORDER), -2010,
                 "This order type is not possible in this trading phase.")
    # Cancels still go through, so a bot can clean up a halted symbol.
    canceled = await client.cancel_order(symbol="BTCUSDT", orderId=resting["orderId"])
    assert canceled["status"] == "CANCELED"
    status, _, halted = await raw(sim, "GET", "/api/v3/exchangeInfo", "symbolStatus=HALT", sign=False)
    assert [s["symbol"] for s in halted["symbols"]] == ["BTCUSDT"]
    status, _, body = await raw(sim, "GET", "/api/v3/exchangeInfo", "symbolStatus=NOPE", sign=False)
    assert (status, body) == (400, {"code": -1122, "msg": "Invalid symbolStatus."})
    sim.exchange.set_symbol_status("BTCUSDT", "TRADING")
    assert (await client.create_order(**ORDER))["status"] == "NEW"


async def test_symbol_status_admin_route(sim: Any) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sim.urls.admin}/symbol-status",
                             json={"symbol": "ETHUSDT", "status": "CANCEL_ONLY"}) as resp:
            assert (resp.status, await resp.json()) == (200, {"symbol": "ETHUSDT", "status": "CANCEL_ONLY"})
        async with http.post(f"{sim.urls.admin}/symbol-status",
                             json={"symbol": "ETHUSDT", "status": "OPEN"}) as resp:
            assert resp.status == 400 and "status must be one of" in (await resp.json())["error"]
    assert sim.exchange.specs["ETHUSDT"].status == "CANCEL_ONLY"
    assert sim.exchange.engine.specs["ETHUSDT"].status == "CANCEL_ONLY"


# -- filters (pure) ------------------------------------------------------------------------------

def _req(qty: str, price: str = "100") -> NewOrder:
    return NewOrder(symbol="XUSDT", side="BUY", type="LIMIT", tif="GTC", quantity=Decimal(qty),
                    quote_qty=None, price=Decimal(price), client_order_id=None, resp_type="ACK",
                    stp="NONE")


def test_lot_size_step_is_quantity_mod_step_not_min_based() -> None:
    spec = SymbolSpec(symbol="XUSDT", base="X", quote="USDT", tick=Decimal("0.01"), step=Decimal("0.1"),
                      min_qty=Decimal("0.15"), min_notional=Decimal(0))
    check_filters(spec, _req("0.2"), Decimal(100))                # 0.2 % 0.1 == 0
    with pytest.raises(errors.BinanceError, match="LOT_SIZE"):
        check_filters(spec, _req("0.25"), Decimal(100))           # (0.25 - 0.15) % 0.1 == 0, still off-step


def test_zero_step_and_tick_disable_the_rule() -> None:
    spec = SymbolSpec(symbol="XUSDT", base="X", quote="USDT", tick=Decimal(0), step=Decimal(0),
                      min_price=Decimal(0), max_price=Decimal(0), min_qty=Decimal(0), min_notional=Decimal(0))
    check_filters(spec, _req("0.123457", "99.987654"), Decimal(100))


# -- futures side, Decimal rendering -------------------------------------------------------------

def test_futures_side_exists_without_a_server() -> None:
    sim = SimExchange.for_tests()
    assert sim.futures.wallet(sim.default_account.id).balance("USDT") == Decimal(10000)


def test_futures_position_row_never_exponent() -> None:
    flat = FuturesPosition("BTCUSDT", Decimal("0"), Decimal("0").quantize(Decimal("0.00000001")))
    row = flat.row(Decimal("60000"))
    assert (row["pa"], row["ep"], row["bep"]) == ("0", "0", "0")


@settings(max_examples=60, deadline=None)
@given(st.decimals(min_value=Decimal("-1e6"), max_value=Decimal("1e6"), places=10, allow_nan=False,
                   allow_infinity=False), st.integers(min_value=0, max_value=8))
def test_fixed_is_plain_and_exact(value: Decimal, places: int) -> None:
    text = _fixed(value, places)
    assert "E" not in text and "e" not in text
    assert Decimal(text) == value


# -- aiohttp app keys ----------------------------------------------------------------------------

def test_apps_use_typed_keys_without_warnings() -> None:
    sim = SimExchange.for_tests()
    server = SimServer(sim)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for host in HOSTS:
            app = server._build_app(host)
            assert (app[SIM], app[HOST_NAME], app[SERVER]) == (sim, host, server)


# -- WS API: order weights and ORDERS rateLimits ---------------------------------------------------

async def test_ws_api_order_place_weight_and_rate_limits(sim: Any) -> None:
    ex = sim.exchange
    ex.market.set_price("BTCUSDT", "60000")
    limiter = ex.ratelimiter
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        before = limiter.used_weight("127.0.0.1")
        placed = await api.call("order.place", signed(sim.creds, {**ORDER, "timestamp": ex.clock.now_ms()}))
        assert placed["status"] == 200
        assert limiter.used_weight("127.0.0.1") == before          # a successful placement weighs 0
        kinds = [(r["rateLimitType"], r["interval"], r["intervalNum"], r["count"])
                 for r in placed["rateLimits"]]
        assert ("ORDERS", "SECOND", 10, 1) in kinds and ("ORDERS", "DAY", 1, 1) in kinds
        failed = await api.call("order.place", signed(sim.creds, {**ORDER, "quantity": "0.0000001",
                                                                  "timestamp": ex.clock.now_ms()}))
        assert (failed["status"], failed["error"]["code"]) == (400, -1013)
        assert limiter.used_weight("127.0.0.1") == before + 1      # a failed one its documented 1


def test_set_symbol_status_rejects_unknown_symbol_and_status() -> None:
    sim = SimExchange.for_tests()
    with pytest.raises(ValueError, match="unknown symbol"):
        sim.set_symbol_status("DOGEUSDT", "HALT")
    with pytest.raises(ValueError, match="status must be one of"):
        sim.set_symbol_status("BTCUSDT", "OPEN")


# -- REST parameters and failure weight --------------------------------------------------------

async def _post_order(sim: Any, query: str, body: str) -> tuple[int, Any]:
    """A signed POST /api/v3/order with parameters split between the query and the body."""
    sig = hmac.new(sim.creds.api_secret.encode(), (query + body).encode(), hashlib.sha256).hexdigest()
    url = f"{sim.urls.spot_rest}/v3/order?{query}"
    async with aiohttp.ClientSession() as http, http.post(
        url, data=f"{body}&signature={sig}", headers={"X-MBX-APIKEY": sim.creds.api_key,
                                                     "Content-Type": "application/x-www-form-urlencoded"}
    ) as resp:
        return resp.status, await resp.json()


async def test_query_string_wins_over_body_for_the_same_parameter(sim: Any) -> None:
    query = f"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.002&timestamp={ts()}"
    body = "quantity=0.001&price=50000.00&newOrderRespType=RESULT"
    status, placed = await _post_order(sim, query, body)
    assert status == 200 and placed["origQty"] == "0.00200000"
    status, body_dup = await _post_order(sim, query, "price=50000.00&price=50001.00")
    assert (status, body_dup) == (400, {"code": -1101, "msg": "Duplicate values for a parameter detected."})


async def test_failed_order_costs_weight_even_when_refused_by_auth(sim: Any, client: Any) -> None:
    limiter = sim.exchange.ratelimiter
    await client.create_order(**ORDER)
    used = limiter.used_weight("127.0.0.1")
    await client.create_order(**ORDER)
    assert limiter.used_weight("127.0.0.1") == used                   # success weighs 0
    client.timestamp_offset = -60_000
    await expect(client.create_order(**ORDER), -1021,
                 "Timestamp for this request is outside of the recvWindow.")
    assert limiter.used_weight("127.0.0.1") == used + 1               # failure costs 1


# -- WS API envelope errors and the 418 disconnect ---------------------------------------------------

async def test_ws_api_bad_json_and_params(sim: Any) -> None:
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        await ws.send("{not json")
        assert await recv_json(ws) == {"id": None, "status": 400,
                                       "error": {"code": -1135, "msg": "Invalid JSON Request"}}
        await ws.send('{"id": 7, "method": "ping", "params": [1]}')
        assert await recv_json(ws) == {"id": 7, "status": 400, "error": {
            "code": -1135, "msg": "Invalid 'params' in JSON request; expected an object."}}
        await ws.send('{"id": 8, "method": "ping"}')
        assert (await recv_json(ws))["status"] == 200


async def test_ws_api_disconnects_a_banned_ip(sim: Any) -> None:
    sim.exchange.ratelimiter.limits.weight_per_minute = 3      # connect 2 + one ping
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        assert (await api.call("ping"))["status"] == 200
        assert (await api.call("ping"))["status"] == 429
        banned = await api.call("ping")
        assert (banned["status"], banned["error"]["code"]) == (418, -1003)
        await expect_closed(ws)


# -- WAF 403 fault -------------------------------------------------------------------------------

async def test_waf_block_is_a_403_html_page_and_does_nothing(sim: Any, client: Any) -> None:
    from binance.exceptions import BinanceAPIException

    async with aiohttp.ClientSession() as http, http.post(f"{sim.urls.admin}/faults/waf",
                                                          json={"count": 1}) as resp:
        assert resp.status == 200
    used = sim.exchange.ratelimiter.used_weight("127.0.0.1")
    with pytest.raises(BinanceAPIException) as err:
        await client.create_order(**ORDER)
    assert err.value.status_code == 403 and err.value.code == 0
    assert "403 Forbidden" in err.value.message
    assert sim.exchange.engine.open_orders(sim.exchange.default_account.id) == []
    assert sim.exchange.ratelimiter.used_weight("127.0.0.1") == used
    assert (await client.create_order(**ORDER))["status"] == "NEW"     # one request only


async def test_ws_api_order_status_id_mismatch(sim: Any) -> None:
    ex = sim.exchange
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        placed = await api.call("order.place", signed(sim.creds, {**ORDER, "newClientOrderId": "ws-a",
                                                                  "timestamp": ex.clock.now_ms()}))
        status = await api.call("order.status", signed(sim.creds, {
            "symbol": "BTCUSDT", "orderId": placed["result"]["orderId"], "origClientOrderId": "ws-b",
            "timestamp": ex.clock.now_ms()}))
        assert status["error"] == {"code": -2039, "msg": "Client order ID is not correct for this order ID."}


async def test_engine_rejection_uses_an_order_count_but_a_filter_failure_does_not(
        sim: Any, client: Any) -> None:
    await expect(client.create_order(**{**ORDER, "quantity": "1"}), -2010,
                 "Account has insufficient balance for requested action.")
    await expect(client.create_order(**{**ORDER, "price": "50000.001"}), -1013,
                 "Filter failure: PRICE_FILTER")
    placed = await client.create_order(**{**ORDER, "newOrderRespType": "ACK"})
    assert placed["orderId"] > 0
    n10, nday = sim.exchange.ratelimiter.order_counts(sim.exchange.default_account.id)
    assert (n10, nday) == (2, 2)
