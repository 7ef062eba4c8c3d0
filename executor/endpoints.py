"""Where each profile's exchange lives: the one place endpoint URLs are kept.

Binance splits its surface over several hosts (spot REST, spot streams, spot WS API,
futures REST, futures streams with /market and /private routes). A profile is one such
set; ``apply_to_client`` points an unmodified python-binance client at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Endpoints:
    """One venue's URL set, in the shapes python-binance's attributes expect.

    ``spot_rest`` ends in ``/api`` and ``futures_rest`` in ``/fapi``; the stream bases end
    in ``/`` because python-binance appends ``ws/...`` or ``stream?...`` to them.
    """

    name: str
    spot_rest: str
    spot_stream: str
    spot_ws_api: str
    futures_rest: str
    futures_stream: str
    sapi_rest: str | None = None

    @property
    def futures_market_stream(self) -> str:
        return self.futures_stream + "market/"

    @property
    def futures_private_stream(self) -> str:
        return self.futures_stream + "private/"


TESTNET = Endpoints(
    name="testnet",
    spot_rest="https://testnet.binance.vision/api",
    spot_stream="wss://stream.testnet.binance.vision/",
    spot_ws_api="wss://ws-api.testnet.binance.vision/ws-api/v3",
    futures_rest="https://testnet.binancefuture.com/fapi",
    futures_stream="wss://fstream.binancefuture.com/",
    sapi_rest=None,  # the spot testnet has no /sapi endpoints
)

DEMO = Endpoints(
    name="demo",
    spot_rest="https://demo-api.binance.com/api",
    spot_stream="wss://demo-stream.binance.com:9443/",
    spot_ws_api="wss://demo-ws-api.binance.com/ws-api/v3",
    futures_rest="https://demo-fapi.binance.com/fapi",
    futures_stream="wss://fstream.binancefuture.com/",
    sapi_rest=None,
)

LIVE = Endpoints(
    name="live",
    spot_rest="https://api.binance.com/api",
    spot_stream="wss://stream.binance.com:9443/",
    spot_ws_api="wss://ws-api.binance.com:443/ws-api/v3",
    futures_rest="https://fapi.binance.com/fapi",
    futures_stream="wss://fstream.binance.com/",
    sapi_rest="https://api.binance.com/sapi",
)

PUBLIC_PROFILES: dict[str, Endpoints] = {e.name: e for e in (TESTNET, DEMO, LIVE)}


def apply_to_client(client: Any, endpoints: Endpoints) -> None:
    """Point a python-binance (Async)Client at ``endpoints``.

    Only URL attributes are changed; the client stays unmodified otherwise. The client
    must have been created with ``testnet=False, demo=False`` so that these attributes
    are the ones it reads.
    """
    client.API_URL = endpoints.spot_rest
    client.FUTURES_URL = endpoints.futures_rest
    if endpoints.sapi_rest:
        client.MARGIN_API_URL = endpoints.sapi_rest
    client.ws_api._url = endpoints.spot_ws_api


def apply_to_socket_manager(bsm: Any, endpoints: Endpoints) -> None:
    """Point a python-binance BinanceSocketManager at ``endpoints``."""
    bsm.STREAM_URL = endpoints.spot_stream
    bsm.FSTREAM_URL = endpoints.futures_stream
