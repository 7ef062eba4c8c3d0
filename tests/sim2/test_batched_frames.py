"""User events queued together leave a WebSocket in one write (``ServerSocket``'s batch):
each still arrives as its own text frame, in order, with exactly the text a frame-by-frame
send gives; a compressed connection takes the frame-by-frame path. Frame lengths of all
three header sizes (7-bit, 16-bit, 64-bit) are covered."""

from __future__ import annotations

from typing import Any

import pytest
import websockets

from executor.sim import wire_json
from tests.sim2.conftest import WsApi, recv_json, signed


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_queued_events_arrive_as_the_same_frames_in_order(sim: Any, client: Any,
                                                               compression: str | None) -> None:
    exchange = sim.exchange
    account = exchange.default_account.id
    published: list[dict[str, Any]] = []
    exchange.bus.subscribe(account, "spot", published.append)
    async with websockets.connect(sim.urls.spot_ws_api, compression=compression, max_size=2**22) as ws:
        api = WsApi(ws)
        res = await api.call("userDataStream.subscribe.signature",
                             signed(sim.creds, {"timestamp": exchange.clock.now_ms()}))
        sub = res["result"]["subscriptionId"]
        # An IOC far from the touch: NEW, outboundAccountPosition, EXPIRED, outboundAccountPosition,
        # published within one handler, so queued together.
        await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="IOC",
                                  quantity="0.001", price="30000", newClientOrderId="batch-1")
        # Then three more published back to back: 5-, 300- and 70,000-character fields
        # (the three frame header sizes).
        for size in (5, 300, 70_000):
            exchange.bus.publish(account, "spot", {"e": "balanceUpdate", "E": 1, "a": "x" * size})
        texts = []
        for _ in range(len(published)):
            texts.append(await ws.recv())
        assert [e["e"] for e in published[:4]] == ["executionReport", "outboundAccountPosition",
                                                    "executionReport", "outboundAccountPosition"]
        assert texts == [wire_json.dumps({"subscriptionId": sub, "event": e}) for e in published]
        assert api.events == []
        await api.call("ping")   # nothing else came before the next answer
        assert api.events == []


async def test_events_after_a_batch_still_flow(sim: Any, client: Any) -> None:
    exchange = sim.exchange
    async with websockets.connect(sim.urls.spot_ws_api, compression=None) as ws:
        api = WsApi(ws)
        await api.call("userDataStream.subscribe.signature",
                       signed(sim.creds, {"timestamp": exchange.clock.now_ms()}))
        for i in range(3):
            await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="IOC",
                                      quantity="0.001", price="30000", newClientOrderId=f"again-{i}")
            kinds = [(await recv_json(ws))["event"]["e"] for _ in range(4)]
            assert kinds == ["executionReport", "outboundAccountPosition"] * 2
