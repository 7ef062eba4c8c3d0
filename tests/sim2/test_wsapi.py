"""The spot WebSocket API: envelope, authentication, user-data subscriptions, orders."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import websockets

from tests.sim2.conftest import WsApi, close_quickly, fixture_event, recv_json, signed


def _keys(event: dict[str, Any]) -> set[str]:
    return set(event)


async def test_user_socket_gets_order_events_with_fixture_keys(sim: Any, client: Any, bsm: Any) -> None:
    ex = sim.exchange
    ex.market.set_price("BTCUSDT", "60000")
    got: list[dict[str, Any]] = []

    async def collect_until(pred: Any) -> dict[str, Any]:
        while True:
            ev = await asyncio.wait_for(sock.recv(), 5)
            got.append(ev)
            if pred(ev):
                return ev

    async with bsm.user_socket() as sock:
        await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                  quantity="0.002", price="59000", newClientOrderId="bot-1")
        new = await collect_until(lambda e: e.get("x") == "NEW")
        ex.market.set_book("BTCUSDT", bid="58990", ask="59000", ask_qty="0.0008")
        partial = await collect_until(lambda e: e.get("X") == "PARTIALLY_FILLED")
        ex.market.set_book("BTCUSDT", bid="58990", ask="59000", ask_qty="1")
        fill = await collect_until(lambda e: e.get("X") == "FILLED")
        await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                  quantity="0.002", price="58000", newClientOrderId="bot-2")
        await client.cancel_order(symbol="BTCUSDT", origClientOrderId="bot-2", newClientOrderId="cxl-2")
        canceled = await collect_until(lambda e: e.get("x") == "CANCELED")
    await close_quickly(sim, "ws_api", client.ws_api, client.close_connection())

    assert _keys(new) == _keys(fixture_event("executionReport_NEW"))
    assert _keys(partial) == _keys(fixture_event("executionReport_TRADE_partial"))
    assert _keys(fill) == _keys(fixture_event("executionReport_TRADE_fill"))
    assert _keys(canceled) == _keys(fixture_event("executionReport_CANCELED"))
    assert (canceled["c"], canceled["C"]) == ("cxl-2", "bot-2")
    assert Decimal(partial["l"]) == Decimal("0.0008") and Decimal(fill["z"]) == Decimal("0.002")
    positions = [e for e in got if e["e"] == "outboundAccountPosition"]
    assert len(positions) >= 4     # after placing, each fill, and the cancel
    expected = fixture_event("outboundAccountPosition")
    for pos in positions:
        assert _keys(pos) == _keys(expected)
        assert all(set(b) == set(expected["B"][0]) for b in pos["B"])


async def test_balance_update_has_fixture_keys(sim: Any) -> None:
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        res = await api.call("userDataStream.subscribe.signature",
                             signed(sim.creds, {"timestamp": sim.exchange.clock.now_ms()}))
        assert res["status"] == 200 and res["result"] == {"subscriptionId": 0}
        ex = sim.exchange
        ex.engine.adjust_balance(ex.default_account, "BTC", Decimal("1"))
        update = await api.next_event()
        assert update["subscriptionId"] == 0
        assert set(update["event"]) == set(fixture_event("balanceUpdate"))
        assert update["event"]["d"] == "1.00000000"
        position = await api.next_event()
        assert position["event"]["e"] == "outboundAccountPosition"
        assert [b["a"] for b in position["event"]["B"]] == ["BTC"]


async def test_envelope_ping_time_and_rate_limits(sim: Any) -> None:
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        pong = await api.call("ping")
        assert pong["status"] == 200 and pong["result"] == {}
        limits = pong["rateLimits"][0]
        assert limits["rateLimitType"] == "REQUEST_WEIGHT" and limits["count"] >= 1
        t = await api.call("time")
        assert abs(t["result"]["serverTime"] - sim.exchange.clock.now_ms()) < 2000
        bad = await api.call("no.such.method")
        assert bad["status"] == 400 and "code" in bad["error"]


async def test_signature_and_timestamp_checks(sim: Any) -> None:
    now = sim.exchange.clock.now_ms()
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        params = signed(sim.creds, {"timestamp": now})
        params["signature"] = "0" * 64
        assert (await api.call("userDataStream.subscribe.signature", params))["error"]["code"] == -1022
        stale = signed(sim.creds, {"timestamp": now - 10_000})
        assert (await api.call("userDataStream.subscribe.signature", stale))["error"]["code"] == -1021
        ok = signed(sim.creds, {"timestamp": now - 10_000, "recvWindow": 20_000})
        assert (await api.call("userDataStream.subscribe.signature", ok))["status"] == 200
        again = signed(sim.creds, {"timestamp": now})
        dup = await api.call("userDataStream.subscribe.signature", again)
        assert dup["status"] == 400 and dup["error"]["code"] == -2035   # one per account per connection
        unknown = {**signed(sim.creds, {"timestamp": now}), "apiKey": "nosuchkey"}
        assert (await api.call("userDataStream.subscribe.signature", unknown))["error"]["code"] == -2015


async def test_subscribe_signature_with_ed25519_and_rsa_keys(sim: Any) -> None:
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        res = await api.call("userDataStream.subscribe.signature",
                             signed(sim.ed25519_creds, {"timestamp": sim.exchange.clock.now_ms()}))
        assert res["status"] == 200
    sim.exchange.add_account("other", {"USDT": "5"})
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        rsa = sim.exchange.credentials("RSA", "other")
        res = await api.call("userDataStream.subscribe.signature",
                             signed(rsa, {"timestamp": sim.exchange.clock.now_ms()}))
        assert res["status"] == 200


async def test_logon_subscribe_status_logout(sim: Any) -> None:
    ex = sim.exchange
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        hmac_logon = await api.call("session.logon", signed(sim.creds, {"timestamp": ex.clock.now_ms()}))
        assert hmac_logon["status"] == 401          # logon is Ed25519 only
        not_yet = await api.call("userDataStream.subscribe")
        assert not_yet["status"] == 401
        logon = await api.call("session.logon", signed(sim.ed25519_creds, {"timestamp": ex.clock.now_ms()}))
        assert logon["status"] == 200 and logon["result"]["apiKey"] == sim.ed25519_creds.api_key
        sub = await api.call("userDataStream.subscribe")
        sub_id = sub["result"]["subscriptionId"]
        status = await api.call("session.status")
        assert status["result"]["userDataStream"] is True
        ex.engine.adjust_balance(ex.default_account, "USDT", Decimal("3"))
        event = await api.next_event()
        assert event["subscriptionId"] == sub_id and event["event"]["e"] == "balanceUpdate"
        api.events.clear()
        out = await api.call("session.logout")
        assert out["result"]["apiKey"] is None
        ended = await recv_json(ws)
        assert ended["subscriptionId"] == sub_id
        assert set(ended["event"]) == {"e", "E"} and ended["event"]["e"] == "eventStreamTerminated"
        assert (await api.call("session.status"))["result"]["userDataStream"] is False


async def test_unsubscribe_ends_with_event_stream_terminated(sim: Any) -> None:
    ex = sim.exchange
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        sub = await api.call("userDataStream.subscribe.signature",
                             signed(sim.creds, {"timestamp": ex.clock.now_ms()}))
        sub_id = sub["result"]["subscriptionId"]
        res = await api.call("userDataStream.unsubscribe", {"subscriptionId": sub_id})
        assert res["status"] == 200
        ended = await recv_json(ws)
        assert ended == {"subscriptionId": sub_id, "event": {"e": "eventStreamTerminated",
                                                             "E": ended["event"]["E"]}}
        ex.engine.adjust_balance(ex.default_account, "USDT", Decimal("1"))
        # The next frame is the answer to this call: the balance events were not delivered.
        assert (await api.call("session.status"))["result"]["userDataStream"] is False
        assert api.events == []
        again = await api.call("userDataStream.unsubscribe", {"subscriptionId": sub_id})
        assert again["error"]["code"] == -2036


async def test_order_place_status_cancel_over_ws_api(sim: Any) -> None:
    ex = sim.exchange
    ex.market.set_price("BTCUSDT", "60000")
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                  "quantity": "0.001", "price": "50000", "newClientOrderId": "ws-1",
                  "timestamp": ex.clock.now_ms()}
        placed = await api.call("order.place", signed(sim.creds, params))
        assert placed["status"] == 200 and placed["result"]["clientOrderId"] == "ws-1"
        status = await api.call("order.status", signed(sim.creds, {
            "symbol": "BTCUSDT", "origClientOrderId": "ws-1", "timestamp": ex.clock.now_ms()}))
        assert status["result"]["status"] == "NEW"
        cancel = await api.call("order.cancel", signed(sim.creds, {
            "symbol": "BTCUSDT", "origClientOrderId": "ws-1", "timestamp": ex.clock.now_ms()}))
        assert cancel["result"]["status"] == "CANCELED"
        missing = await api.call("order.status", signed(sim.creds, {
            "symbol": "BTCUSDT", "origClientOrderId": "nope", "timestamp": ex.clock.now_ms()}))
        assert missing["error"]["code"] == -2013
