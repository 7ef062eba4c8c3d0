"""Where each profile's exchange lives: the one place endpoint URLs are kept.

Binance splits its surface over several hosts (spot REST, spot streams, spot WS API,
futures REST, futures streams with /market and /private routes). A profile is one such
set; ``apply_to_client`` points an unmodified python-binance client at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from executor.exchange.binance_private import point_ws_clients

# RFC 2606 reserves .invalid: a URL on it fails at DNS and reaches nobody. Every
# python-binance URL attribute a profile does not define is pointed here, so no request
# can silently go to the library's built-in (live) defaults.
DEAD_END = "https://unconfigured.invalid"


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
    futures_ws_api: str | None = None

    @property
    def sapi_or_dead_end(self) -> str:
        """Where /sapi requests go: the venue's own, or a host that can never resolve.

        A venue without /sapi (testnet, demo) must not fall back to python-binance's
        default, which is live Binance: a testnet key would then travel to production.
        """
        return self.sapi_rest or f"{DEAD_END}/{self.name}-has-no-sapi"

    @property
    def futures_market_stream(self) -> str:
        return self.futures_stream + "market/"

    @property
    def futures_public_stream(self) -> str:
        """High-frequency futures book data (bookTicker, depth) since the 2026 split."""
        return self.futures_stream + "public/"

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
    futures_ws_api="wss://testnet.binancefuture.com/ws-fapi/v1",
)

DEMO = Endpoints(
    name="demo",
    spot_rest="https://demo-api.binance.com/api",
    spot_stream="wss://demo-stream.binance.com:9443/",
    spot_ws_api="wss://demo-ws-api.binance.com/ws-api/v3",
    futures_rest="https://demo-fapi.binance.com/fapi",
    # reference.md gives no demo futures stream host; futures demo shares the testnet's
    # streams and WS API (python-binance's FSTREAM_DEMO_URL / WS_FUTURES_DEMO_URL agree).
    futures_stream="wss://fstream.binancefuture.com/",
    sapi_rest=None,
    futures_ws_api="wss://testnet.binancefuture.com/ws-fapi/v1",
)

LIVE = Endpoints(
    name="live",
    spot_rest="https://api.binance.com/api",
    spot_stream="wss://stream.binance.com:9443/",
    spot_ws_api="wss://ws-api.binance.com:443/ws-api/v3",
    futures_rest="https://fapi.binance.com/fapi",
    futures_stream="wss://fstream.binance.com/",
    sapi_rest="https://api.binance.com/sapi",
    futures_ws_api="wss://ws-fapi.binance.com/ws-fapi/v1",
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
    client.MARGIN_API_URL = endpoints.sapi_or_dead_end
    point_ws_clients(client, endpoints.spot_ws_api,
                     endpoints.futures_ws_api or f"{_ws(DEAD_END)}/{endpoints.name}-ws-fapi")
    # Surfaces we do not use (coin-M, options, portfolio margin, futures data, website):
    # unreachable rather than live.
    for attr in ("FUTURES_DATA_URL", "FUTURES_COIN_URL", "FUTURES_COIN_DATA_URL", "OPTIONS_URL",
                 "OPTIONS_TESTNET_URL", "PAPI_URL", "WEBSITE_URL"):
        setattr(client, attr, f"{DEAD_END}/{endpoints.name}-{attr.lower()}")


def _ws(url: str) -> str:
    return "wss://" + url.split("://", 1)[1]


def apply_to_socket_manager(bsm: Any, endpoints: Endpoints) -> None:
    """Point a python-binance BinanceSocketManager at ``endpoints``."""
    bsm.STREAM_URL = endpoints.spot_stream
    bsm.FSTREAM_URL = endpoints.futures_stream
    bsm.DSTREAM_URL = f"{_ws(DEAD_END)}/{endpoints.name}-dstream/"
