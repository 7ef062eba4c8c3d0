"""Each profile builds python-binance clients with exactly its endpoint set."""

from __future__ import annotations

import pytest

from executor.config import ConfigError, load_config
from executor.exchange.credentials import Credentials
from executor.venue.endpoints import DEAD_END, Endpoints
from executor.venue.profiles import endpoints_for, make_client, make_clients, make_socket_manager, venue_for

# Written out independently of executor/venue/endpoints.py, from reference.md §8 / §1 / §2.
EXPECTED = {
    "testnet": {
        "API_URL": "https://testnet.binance.vision/api",
        "FUTURES_URL": "https://testnet.binancefuture.com/fapi",
        "ws_api": "wss://ws-api.testnet.binance.vision/ws-api/v3",
        "ws_future": "wss://testnet.binancefuture.com/ws-fapi/v1",
        "STREAM_URL": "wss://stream.testnet.binance.vision/",
        "FSTREAM_URL": "wss://fstream.binancefuture.com/",
        "MARGIN_API_URL": None,  # no /sapi on testnet: must be unreachable, never live
    },
    "demo": {
        "API_URL": "https://demo-api.binance.com/api",
        "FUTURES_URL": "https://demo-fapi.binance.com/fapi",
        "ws_api": "wss://demo-ws-api.binance.com/ws-api/v3",
        "ws_future": "wss://testnet.binancefuture.com/ws-fapi/v1",
        "STREAM_URL": "wss://demo-stream.binance.com:9443/",
        "FSTREAM_URL": "wss://fstream.binancefuture.com/",
        "MARGIN_API_URL": None,
    },
    "live": {
        "API_URL": "https://api.binance.com/api",
        "FUTURES_URL": "https://fapi.binance.com/fapi",
        "ws_api": "wss://ws-api.binance.com:443/ws-api/v3",
        "ws_future": "wss://ws-fapi.binance.com/ws-fapi/v1",
        "STREAM_URL": "wss://stream.binance.com:9443/",
        "FSTREAM_URL": "wss://fstream.binance.com/",
        "MARGIN_API_URL": "https://api.binance.com/sapi",
    },
}

# Every URL attribute python-binance reads when built with testnet=False, demo=False.
UNUSED_CLIENT_URLS = ("FUTURES_DATA_URL", "FUTURES_COIN_URL", "FUTURES_COIN_DATA_URL", "OPTIONS_URL",
                      "OPTIONS_TESTNET_URL", "PAPI_URL", "WEBSITE_URL")


def _urls(client, bsm) -> dict[str, str]:
    out = {name: getattr(client, name) for name in ("API_URL", "FUTURES_URL", "MARGIN_API_URL")}
    out["ws_api"] = client.ws_api._url
    out["ws_future"] = client.ws_future._url
    out["STREAM_URL"] = bsm.STREAM_URL
    out["FSTREAM_URL"] = bsm.FSTREAM_URL
    return out


def _dead(url: str) -> bool:
    return ".invalid" in url and "binance" not in url.split("/")[2]


@pytest.mark.parametrize("profile", ["testnet", "demo", "live"])
async def test_public_profile_client_has_exactly_its_endpoints(profile: str) -> None:
    endpoints = endpoints_for(profile)
    creds = Credentials(api_key="k" * 64, api_secret="s" * 64)
    client = make_client(endpoints, creds)
    try:
        bsm = make_socket_manager(client, endpoints)
        got = _urls(client, bsm)
        for name, want in EXPECTED[profile].items():
            if want is None:
                assert _dead(got[name]), (name, got[name])
            else:
                assert got[name] == want, name
        for name in UNUSED_CLIENT_URLS:
            assert _dead(getattr(client, name)), name
        assert _dead(bsm.DSTREAM_URL)
        # what python-binance actually builds from them
        assert client._create_api_uri("ping") == EXPECTED[profile]["API_URL"] + "/v3/ping"
        assert client._create_futures_api_uri("ping").startswith(EXPECTED[profile]["FUTURES_URL"])
        assert client.testnet is False and client.demo is False
    finally:
        await client.close_connection()


@pytest.mark.parametrize("profile", ["testnet", "demo"])
async def test_paper_profiles_never_point_at_live_hosts(profile: str) -> None:
    client = make_client(endpoints_for(profile))
    try:
        bsm = make_socket_manager(client, endpoints_for(profile))
        urls = [*_urls(client, bsm).values(), *(getattr(client, n) for n in UNUSED_CLIENT_URLS),
                bsm.DSTREAM_URL]
        live_hosts = ("api.binance.com", "fapi.binance.com", "stream.binance.com", "ws-api.binance.com",
                      "fstream.binance.com", "ws-fapi.binance.com")
        for url in urls:
            host = url.split("/")[2].split(":")[0]
            assert host not in live_hosts, url
        assert client._create_margin_api_uri("account/apiRestrictions").startswith(DEAD_END)
    finally:
        await client.close_connection()


class _FakeSimUrls:
    def endpoints(self) -> Endpoints:
        return Endpoints(name="sim", spot_rest="http://127.0.0.1:1/api", spot_stream="ws://127.0.0.1:2/",
                         spot_ws_api="ws://127.0.0.1:3/ws-api/v3", futures_rest="http://127.0.0.1:4/fapi",
                         futures_stream="ws://127.0.0.1:5/", sapi_rest="http://127.0.0.1:1/sapi")


async def test_sim_profile_uses_the_running_sims_urls() -> None:
    cfg = load_config(local=None)
    venue = venue_for(cfg, _FakeSimUrls())
    assert venue.profile == "sim" and not venue.split
    client = make_client(venue.orders)
    try:
        bsm = make_socket_manager(client, venue.orders)
        assert _urls(client, bsm) == {
            "API_URL": "http://127.0.0.1:1/api", "FUTURES_URL": "http://127.0.0.1:4/fapi",
            "MARGIN_API_URL": "http://127.0.0.1:1/sapi", "ws_api": "ws://127.0.0.1:3/ws-api/v3",
            "ws_future": client.ws_future._url, "STREAM_URL": "ws://127.0.0.1:2/",
            "FSTREAM_URL": "ws://127.0.0.1:5/"}
        assert _dead(client.ws_future._url)
    finally:
        await client.close_connection()
    with pytest.raises(ConfigError, match="running embedded exchange"):
        venue_for(cfg, None)


async def test_market_data_from_live_while_trading_on_testnet_is_keyless() -> None:
    cfg = load_config(local=None, overrides={"profile": "testnet", "market_data": {"venue": "live"}})
    venue = venue_for(cfg)
    assert venue.split and venue.orders.name == "testnet" and venue.market.name == "live"
    assert "market data (public, no keys) from live" in venue.describe()
    creds = Credentials(api_key="testnet-key-0123456789", api_secret="testnet-secret-0123456789")
    orders, market = make_clients(venue, creds)
    try:
        assert creds.api_key == orders.API_KEY and orders.API_URL == "https://testnet.binance.vision/api"
        assert market is not orders
        assert market.API_KEY is None and market.API_SECRET is None and market.PRIVATE_KEY is None
        assert market.API_URL == "https://api.binance.com/api"
    finally:
        await orders.close_connection()
        await market.close_connection()


async def test_same_venue_shares_one_client() -> None:
    cfg = load_config(local=None, overrides={"profile": "demo"})
    venue = venue_for(cfg)
    assert not venue.split
    orders, market = make_clients(venue, None)
    try:
        assert orders is market
    finally:
        await orders.close_connection()


def test_live_and_sim_refuse_a_foreign_market_data_venue() -> None:
    cfg = load_config(local=None, overrides={"profile": "demo", "market_data": {"venue": "testnet"}})
    assert venue_for(cfg).market.name == "testnet"
    with pytest.raises(ConfigError, match="not possible with profile 'live'"):
        venue_for(cfg, profile="live")   # --profile live on top of a paper config
    with pytest.raises(ConfigError, match="not possible with profile 'live'"):
        load_config(local=None, overrides={"profile": "live", "market_data": {"venue": "testnet"}})
    with pytest.raises(ConfigError, match="must be one of"):
        load_config(local=None, overrides={"market_data": {"venue": "mainnet"}})
