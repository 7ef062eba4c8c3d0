"""Profiles: which venue a run trades on, and which venue its market data comes from.

A profile name (``sim``, ``testnet``, ``demo``, ``live``) resolves to an ``Endpoints`` set
(URLs themselves live only in ``executor.venue.endpoints``; the sim's come from the running
embedded exchange). ``Venue`` pairs the order endpoints with the market-data endpoints
chosen by ``[market_data] venue``. Clients built here carry credentials only towards the
order venue: a market-data client for another venue is always keyless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from binance import AsyncClient, BinanceSocketManager

from executor.config import Config, ConfigError
from executor.venue.endpoints import PUBLIC_PROFILES, Endpoints, apply_to_client, apply_to_socket_manager

if TYPE_CHECKING:
    from executor.exchange.credentials import Credentials


class HasEndpoints(Protocol):
    """A running sim's URLs (``executor.sim.server.SimUrls``)."""

    def endpoints(self) -> Endpoints: ...


@dataclass(frozen=True)
class Venue:
    """Where orders go (``orders``) and where the strategy's prices come from (``market``)."""

    profile: str
    orders: Endpoints
    market: Endpoints

    @property
    def split(self) -> bool:
        """True when market data comes from a different venue than orders."""
        return self.market != self.orders

    @property
    def is_live(self) -> bool:
        return self.profile == "live"

    def describe(self) -> str:
        if not self.split:
            return f"profile {self.profile}: orders and market data on {self.orders.name}"
        return (f"profile {self.profile}: orders on {self.orders.name}, "
                f"market data (public, no keys) from {self.market.name}")


def endpoints_for(profile: str, sim_urls: HasEndpoints | None = None) -> Endpoints:
    """The endpoint set of ``profile``; ``sim`` needs the running sim's URLs."""
    if profile == "sim":
        if sim_urls is None:
            raise ConfigError("profile 'sim' needs a running embedded exchange (its URLs)")
        return sim_urls.endpoints()
    try:
        return PUBLIC_PROFILES[profile]
    except KeyError:
        raise ConfigError(f"unknown profile {profile!r}; use sim, testnet, demo or live") from None


def venue_for(cfg: Config, sim_urls: HasEndpoints | None = None, profile: str | None = None) -> Venue:
    """Resolve ``cfg``'s profile (or ``profile``) and ``[market_data] venue`` to a ``Venue``."""
    name = profile or cfg.profile
    orders = endpoints_for(name, sim_urls)
    wanted = cfg.market_data.venue
    if wanted in ("same", name):
        return Venue(name, orders, orders)
    # config validation already refuses these; checked again because ``profile`` may differ
    if name in ("sim", "live") or wanted == "sim":
        raise ConfigError(f"market_data.venue = {wanted!r} is not possible with profile {name!r}; "
                          "use \"same\"")
    return Venue(name, orders, endpoints_for(wanted))


def make_client(endpoints: Endpoints, credentials: Credentials | None = None, *,
                timeout_s: float = 10.0, recv_window_ms: int | None = None) -> AsyncClient:
    """An unmodified python-binance ``AsyncClient`` pointed at exactly ``endpoints``.

    With credentials this is ``executor.exchange.client.make_client`` (timeouts, response
    tap); without, a keyless client for public market data. No request is made; call
    ``close_connection()`` when done. Must be called inside a running event loop.
    """
    if credentials is not None:
        from executor.exchange.client import make_client as make_keyed_client

        return make_keyed_client(endpoints, credentials, timeout_s=timeout_s, recv_window_ms=recv_window_ms)
    client = AsyncClient(testnet=False, demo=False, requests_params={"timeout": timeout_s})
    client.REQUEST_TIMEOUT = timeout_s
    apply_to_client(client, endpoints)
    return client


def make_socket_manager(client: AsyncClient, endpoints: Endpoints, **kwargs: Any) -> BinanceSocketManager:
    """A ``BinanceSocketManager`` whose stream bases are ``endpoints``'."""
    bsm = BinanceSocketManager(client, **kwargs)
    apply_to_socket_manager(bsm, endpoints)
    return bsm


def make_clients(venue: Venue, credentials: Credentials | None,
                 cfg: Config | None = None) -> tuple[AsyncClient, AsyncClient]:
    """(order client, market-data client). They are one object unless the venue is split;
    then the market-data client is keyless so no key ever reaches the other venue."""
    timeout = float(cfg.orders.request_timeout_s) if cfg else 10.0
    recv_window = cfg.orders.recv_window_ms if cfg else None
    orders = make_client(venue.orders, credentials, timeout_s=timeout, recv_window_ms=recv_window)
    if not venue.split:
        return orders, orders
    return orders, make_client(venue.market, None, timeout_s=timeout)
