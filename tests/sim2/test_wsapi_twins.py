"""The spot WS API methods that mirror REST endpoints (account.status, openOrders.status,
openOrders.cancelAll, allOrders, myTrades, exchangeInfo, depth, ticker.book, avgPrice): each
answers what its REST twin answers, signed where the twin is signed, weighed like the twin,
with the twin's parameter checks, over a real websocket."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import websockets

from tests.sim2.conftest import WsApi, signed

pytestmark = pytest.mark.sim_options(book_update_hz=0)


def weight(reply: dict[str, Any]) -> int:
    return next(r["count"] for r in reply["rateLimits"] if r["rateLimitType"] == "REQUEST_WEIGHT")


async def test_public_twins_answer_like_rest(sim: Any, client: Any) -> None:
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        info = await api.call("exchangeInfo", {"symbols": ["BTCUSDT"]})
        rest_info = await client.get_exchange_info()
        assert info["status"] == 200
        assert info["result"]["symbols"] == [s for s in rest_info["symbols"] if s["symbol"] == "BTCUSDT"]
        depth = await api.call("depth", {"symbol": "BTCUSDT", "limit": 5})
        assert depth["result"] == await client.get_order_book(symbol="BTCUSDT", limit=5)
        book = await api.call("ticker.book", {"symbol": "BTCUSDT"})
        assert book["result"] == await client.get_orderbook_ticker(symbol="BTCUSDT")
        avg = await api.call("avgPrice", {"symbol": "BTCUSDT"})
        assert set(avg["result"]) == set(await client.get_avg_price(symbol="BTCUSDT"))
        before = weight(await api.call("ping"))
        heavy = await api.call("depth", {"symbol": "BTCUSDT", "limit": 1000})
        assert weight(heavy) - before == 50  # as REST's depth weight for limit 1000
        bad = await api.call("depth", {"symbol": "BTCUSDT", "nonsense": 1})
        assert bad["status"] == 400 and bad["error"]["code"] == -1104
        missing = await api.call("avgPrice", {})
        assert missing["status"] == 400 and missing["error"]["code"] == -1102


async def test_signed_twins(sim: Any, client: Any) -> None:
    ex = sim.exchange
    ask = ex.market.book("BTCUSDT").ask
    await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                              quantity="0.001", price=str(ask + 100), newClientOrderId="twin-taker")
    await client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                              quantity="0.001", price="50000.00", newClientOrderId="twin-rest")
    now = ex.clock.now_ms

    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        unsigned = await api.call("account.status", {})
        assert unsigned["status"] in (400, 401)
        acct = await api.call("account.status", signed(sim.creds, {"timestamp": now()}))
        assert acct["result"]["balances"] == (await client.get_account())["balances"]
        opened = await api.call("openOrders.status",
                                signed(sim.creds, {"symbol": "BTCUSDT", "timestamp": now()}))
        assert [o["clientOrderId"] for o in opened["result"]] == ["twin-rest"]
        every = await api.call("allOrders", signed(sim.creds, {"symbol": "BTCUSDT", "timestamp": now()}))
        assert {o["clientOrderId"] for o in every["result"]} == {"twin-taker", "twin-rest"}
        trades = await api.call("myTrades", signed(sim.creds, {"symbol": "BTCUSDT", "timestamp": now()}))
        assert trades["result"] == await client.get_my_trades(symbol="BTCUSDT")
        assert sum(Decimal(t["qty"]) for t in trades["result"]) == Decimal("0.001")
        cancelled = await api.call("openOrders.cancelAll",
                                   signed(sim.creds, {"symbol": "BTCUSDT", "timestamp": now()}))
        assert [o["origClientOrderId"] for o in cancelled["result"]] == ["twin-rest"]
        assert cancelled["result"][0]["status"] == "CANCELED"
    assert await client.get_open_orders(symbol="BTCUSDT") == []
