"""WS API market-data and account methods: ticker.24hr, klines, trades.recent (public) and
account.rateLimits.orders, account.commission (signed), over a real websocket. Envelopes
and results have the key sets of Binance's documented examples and the same content as the
REST endpoints; weights are the documented ones."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import websockets

from tests.fixtures import load
from tests.sim2.conftest import WsApi, signed

FX = load()
pytestmark = pytest.mark.sim_options(book_update_hz=0)


def weight(reply: dict[str, Any]) -> int:
    return next(r["count"] for r in reply["rateLimits"] if r["rateLimitType"] == "REQUEST_WEIGHT")


async def test_public_market_methods(sim: Any, client: Any) -> None:
    for _ in range(100):
        sim.exchange.market.tick()
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        full = await api.call("ticker.24hr", {"symbol": "BTCUSDT"})
        assert set(full) == set(FX["wsapi_ticker_24hr_FULL"])
        assert list(full["result"]) == list(FX["wsapi_ticker_24hr_FULL"]["result"])
        rest = await client.get_ticker(symbol="BTCUSDT")
        moving = ("openTime", "closeTime")        # the 24 h window ends at the request's time
        assert {k: v for k, v in full["result"].items() if k not in moving} == \
            {k: v for k, v in rest.items() if k not in moving}
        assert full["result"]["closeTime"] - full["result"]["openTime"] == 86_400_000
        mini = await api.call("ticker.24hr", {"symbols": ["BTCUSDT", "ETHUSDT"], "type": "MINI"})
        assert [list(r) for r in mini["result"]] == [list(FX["wsapi_ticker_24hr_MINI"]["result"])] * 2
        before = weight(mini)
        every = await api.call("ticker.24hr", {})
        assert weight(every) - before == 80 and len(every["result"]) == 2

        kl = await api.call("klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 5})
        assert set(kl) == set(FX["wsapi_klines"]) and len(kl["result"][0]) == 12
        assert kl["result"] == await client.get_klines(symbol="BTCUSDT", interval="1m", limit=5)
        bad = await api.call("klines", {"symbol": "BTCUSDT", "interval": "7m"})
        assert bad["status"] == 400 and bad["error"]["code"] == -1120

        w0 = weight(bad)
        recent = await api.call("trades.recent", {"symbol": "BTCUSDT", "limit": 3})
        assert list(recent["result"][0]) == list(FX["wsapi_trades_recent"]["result"][0])
        assert weight(recent) - w0 == 25
        assert [r["id"] for r in recent["result"]] == [t.id for t in sim.exchange.tape.recent("BTCUSDT", 3)]


async def test_signed_account_methods(sim: Any) -> None:
    ex = sim.exchange
    ex.default_account.maker_rate = Decimal("0.00075")
    async with websockets.connect(sim.urls.spot_ws_api) as ws:
        api = WsApi(ws)
        rates = await api.call("account.commission", signed(sim.creds, {
            "symbol": "ETHUSDT", "timestamp": ex.clock.now_ms()}))
        assert set(rates) == set(FX["wsapi_account_commission"])
        assert list(rates["result"]) == list(FX["wsapi_account_commission"]["result"])
        assert rates["result"]["symbol"] == "ETHUSDT"
        assert rates["result"]["standardCommission"]["maker"] == "0.00075000"
        assert weight(rates) == 2 + 20            # the connection's own weight, then the method's

        counts = await api.call("account.rateLimits.orders",
                                signed(sim.creds, {"timestamp": ex.clock.now_ms()}))
        want = FX["wsapi_account_rateLimits_orders"]
        assert set(counts) == set(want)
        assert [set(r) for r in counts["result"]] == [set(r) for r in want["result"]]
        assert weight(counts) - weight(rates) == 40
        unsigned = await api.call("account.commission", {"symbol": "BTCUSDT"})
        assert unsigned["status"] == 400 and unsigned["error"]["code"] == -1102
