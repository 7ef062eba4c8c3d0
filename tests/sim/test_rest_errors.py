"""Every rejection comes back with Binance's code, message text and HTTP status."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import aiohttp
import pytest
from binance.exceptions import BinanceAPIException

from tests.conftest import build_client

ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
         "price": "50000.00"}


async def expect(coro: Any, code: int, msg: str, status: int = 400) -> BinanceAPIException:
    with pytest.raises(BinanceAPIException) as err:
        await coro
    assert (err.value.code, err.value.message, err.value.status_code) == (code, msg, status)
    return err.value


async def raw(sim: Any, method: str, path: str, query: str, *, key: str | None = None,
              sign: bool = True) -> tuple[int, dict[str, Any], Any]:
    """Send a hand-built request (for shapes python-binance cannot produce)."""
    creds = sim.creds
    if sign:
        sig = hmac.new(creds.api_secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        query = f"{query}&signature={sig}"
    url = sim.urls.spot_rest.removesuffix("/api") + path + "?" + query
    async with aiohttp.ClientSession() as session, session.request(
        method, url, headers={"X-MBX-APIKEY": key or creds.api_key}
    ) as resp:
        return resp.status, dict(resp.headers), await resp.json()


def ts() -> int:
    return int(time.time() * 1000)


# Two minutes off, where the window is 5 s and the lead 1 s: once (CI, 2026-12-08) a request
# signed 10 s in the past was accepted, as if this VM's wall clock had stepped back more than
# 5 s between signing and the sim's check (both read ``time.time()``); no correction of the
# clock can bring these inside.
_FAR = 120_000


async def test_timestamp_outside_recv_window(client: Any) -> None:
    client.timestamp_offset = -_FAR
    await expect(client.get_account(), -1021, "Timestamp for this request is outside of the recvWindow.")


async def test_timestamp_ahead_of_server(client: Any) -> None:
    client.timestamp_offset = _FAR
    await expect(client.get_account(), -1021,
                 "Timestamp for this request was 1000ms ahead of the server's time.")


async def test_recv_window_over_60000(sim: Any) -> None:
    status, _, body = await raw(sim, "GET", "/api/v3/account", f"recvWindow=70000&timestamp={ts()}")
    assert (status, body) == (400, {"code": -1102, "msg": "'recvWindow' contains unexpected value. "
                                                         "Cannot be greater than 60000."})


async def test_bad_hmac_signature(sim: Any, make_client: Any) -> None:
    from executor.exchange.credentials import Credentials

    client = make_client(Credentials(api_key=sim.creds.api_key, api_secret="0" * 64))
    await expect(client.get_account(), -1022, "Signature for this request is not valid.")


async def test_hmac_signature_is_case_insensitive(sim: Any) -> None:
    query = f"timestamp={ts()}"
    sig = hmac.new(sim.creds.api_secret.encode(), query.encode(), hashlib.sha256).hexdigest().upper()
    status, _, _ = await raw(sim, "GET", "/api/v3/account", f"{query}&signature={sig}", sign=False)
    assert status == 200


async def test_signature_covers_what_was_sent(sim: Any) -> None:
    query = f"timestamp={ts()}"
    sig = hmac.new(sim.creds.api_secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    sent = f"omitZeroBalances=true&{query}&signature={sig}"
    status, _, body = await raw(sim, "GET", "/api/v3/account", sent, sign=False)
    assert (status, body["code"]) == (400, -1022)


async def test_missing_signature(sim: Any) -> None:
    status, _, body = await raw(sim, "GET", "/api/v3/account", f"timestamp={ts()}", sign=False)
    assert status == 400
    assert body == {"code": -1102,
                    "msg": "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."}


async def test_ed25519_signature_from_another_key_is_rejected(sim: Any, make_client: Any) -> None:
    from executor.exchange.credentials import Credentials

    sim.exchange.add_account("other")
    other_pem = sim.exchange.accounts.key_of("other", "Ed25519").private_key_pem
    forged = Credentials(api_key=sim.ed25519_creds.api_key, private_key_pem=other_pem)
    await expect(make_client(forged).get_account(), -1022, "Signature for this request is not valid.")


async def test_unknown_api_key(sim: Any, make_client: Any) -> None:
    from executor.exchange.credentials import Credentials

    client = make_client(Credentials(api_key="a" * 64, api_secret="b" * 64))
    await expect(client.get_account(), -2015, "Invalid API-key, IP, or permissions for action.", 401)


async def test_malformed_api_key(sim: Any, make_client: Any) -> None:
    from executor.exchange.credentials import Credentials

    client = make_client(Credentials(api_key="not-a-key", api_secret="b" * 64))
    await expect(client.get_account(), -2014, "API-key format invalid.", 401)


async def test_missing_mandatory_parameter(client: Any) -> None:
    params = {k: v for k, v in ORDER.items() if k != "quantity"}
    await expect(client.create_order(**params), -1102,
                 "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
    await expect(client.create_order(symbol="BTCUSDT", side="BUY", type="MARKET"), -1102,
                 "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!")
    await expect(client.get_order(symbol="BTCUSDT"), -1102,
                 "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")


async def test_illegal_characters(client: Any) -> None:
    await expect(client.create_order(**{**ORDER, "newClientOrderId": "bad~id"}), -1100,
                 "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                 "'^[a-zA-Z0-9-_]{1,36}$'.")
    await expect(client.create_order(**{**ORDER, "quantity": "1e-3"}), -1100,
                 "Illegal characters found in parameter 'quantity'; legal range is "
                 "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")


async def test_duplicate_parameter(sim: Any) -> None:
    status, _, body = await raw(sim, "GET", "/api/v3/openOrders",
                                f"symbol=BTCUSDT&symbol=ETHUSDT&timestamp={ts()}")
    assert (status, body) == (400, {"code": -1101, "msg": "Duplicate values for a parameter detected."})


async def test_unread_parameters(client: Any) -> None:
    await expect(client.get_open_orders(symbol="BTCUSDT", colour="blue"), -1104,
                 "Not all sent parameters were read; read '4' parameter(s) but was sent '5'.")


async def test_parameter_sent_when_not_required(client: Any) -> None:
    await expect(client.create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001",
                                     price="60000"), -1106, "Parameter 'price' sent when not required.")


async def test_invalid_enums_and_symbol(client: Any) -> None:
    await expect(client.create_order(**{**ORDER, "type": "STOP"}), -1116, "Invalid orderType.")
    await expect(client.create_order(**{**ORDER, "side": "HOLD"}), -1117, "Invalid side.")
    await expect(client.create_order(**{**ORDER, "timeInForce": "GTX"}), -1115, "Invalid timeInForce.")
    await expect(client.create_order(**{**ORDER, "symbol": "DOGEUSDT"}), -1121, "Invalid symbol.")
    await expect(client.create_order(**{**ORDER, "quantity": "0.000000001"}), -1111,
                 "Parameter 'quantity' has too much precision.")


@pytest.mark.parametrize(("change", "name"), [
    ({"price": "50000.001"}, "PRICE_FILTER"),
    ({"price": "0.001"}, "PRICE_FILTER"),
    ({"price": "2000000.00"}, "PRICE_FILTER"),
    ({"price": "400000.00"}, "PERCENT_PRICE_BY_SIDE"),
    ({"price": "1000.00"}, "PERCENT_PRICE_BY_SIDE"),
    ({"quantity": "0.000015"}, "LOT_SIZE"),
    ({"quantity": "10000"}, "LOT_SIZE"),
    ({"quantity": "0.00001"}, "NOTIONAL"),
])
async def test_filter_failures(client: Any, change: dict[str, str], name: str) -> None:
    await expect(client.create_order(**{**ORDER, **change}), -1013, f"Filter failure: {name}")


async def test_market_lot_size(client: Any) -> None:
    await expect(client.order_market_sell(symbol="BTCUSDT", quantity="81"), -1013,
                 "Filter failure: MARKET_LOT_SIZE")


async def test_insufficient_balance(client: Any) -> None:
    await expect(client.create_order(**{**ORDER, "quantity": "1"}), -2010,
                 "Account has insufficient balance for requested action.")
    await expect(client.order_market_sell(symbol="BTCUSDT", quantity="0.5"), -2010,
                 "Account has insufficient balance for requested action.")


async def test_duplicate_open_client_order_id(sim: Any, client: Any) -> None:
    await client.create_order(**{**ORDER, "newClientOrderId": "dup-1"})
    await expect(client.create_order(**{**ORDER, "newClientOrderId": "dup-1"}), -2010,
                 "Duplicate order sent.")
    await client.cancel_order(symbol="BTCUSDT", origClientOrderId="dup-1")
    again = await client.create_order(**{**ORDER, "newClientOrderId": "dup-1"})   # free again once closed
    assert again["status"] == "NEW"


async def test_unknown_order_query_and_cancel(client: Any) -> None:
    await expect(client.get_order(symbol="BTCUSDT", orderId=424242), -2013, "Order does not exist.")
    await expect(client.get_order(symbol="BTCUSDT", origClientOrderId="nope"), -2013, "Order does not exist.")
    await expect(client.cancel_order(symbol="BTCUSDT", orderId=424242), -2011, "Unknown order sent.")


async def test_cancelling_a_closed_order_is_unknown(sim: Any, client: Any) -> None:
    order = await client.create_order(**ORDER)
    await client.cancel_order(symbol="BTCUSDT", orderId=order["orderId"])
    await expect(client.cancel_order(symbol="BTCUSDT", orderId=order["orderId"]), -2011,
                 "Unknown order sent.")


async def test_my_trades_window_and_combinations(client: Any) -> None:
    now = ts()
    await expect(client.get_my_trades(symbol="BTCUSDT", startTime=now - 90_000_000, endTime=now), -1127,
                 "More than 24 hours between startTime and endTime.")
    await expect(client.get_my_trades(symbol="BTCUSDT", fromId=1, startTime=now - 1000), -1128,
                 "Combination of optional parameters invalid.")
    await expect(client.get_my_trades(symbol="BTCUSDT", limit=1001), -1130,
                 "Data sent for parameter 'limit' is not valid.")


async def test_disabled_account_cannot_trade(sim: Any, client: Any) -> None:
    sim.exchange.default_account.can_trade = False
    await expect(client.create_order(**ORDER), -2010, "This account may not place or cancel orders.")


async def test_errors_carry_weight_header(sim: Any) -> None:
    client = build_client(sim.creds, sim.endpoints)
    try:
        with pytest.raises(BinanceAPIException) as err:
            await client.get_order(symbol="BTCUSDT", orderId=1)
        assert "X-MBX-USED-WEIGHT-1M" in err.value.response.headers
    finally:
        await client.close_connection()


async def test_garbage_signatures_are_rejected_not_crashing(sim: Any) -> None:
    for sig in ("%C3%A9", "zz", "", "%2B%2B"):
        status, _, body = await raw(sim, "GET", "/api/v3/account", f"timestamp={ts()}&signature={sig}",
                                    sign=False)
        assert status == 400 and body["code"] in (-1022, -1102), (sig, body)
    ed_key = sim.ed25519_creds.api_key
    status, _, body = await raw(sim, "GET", "/api/v3/account", f"timestamp={ts()}&signature=bm90LWEtc2ln",
                                key=ed_key, sign=False)
    assert (status, body["code"]) == (400, -1022)
