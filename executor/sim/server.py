"""Serves a ``SimExchange`` over HTTP and WebSocket, one listener per Binance host.

Keeping the hosts on separate ports is deliberate: a client that sends a futures request
to the spot host, or subscribes to markPrice on the spot stream host, fails here as it
would on Binance. Each route module exposes ``add_routes(app, sim)``; the tables below say
which host serves which module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from aiohttp import web

from executor.sim.appkeys import HOST_NAME, SERVER, SIM
from executor.sim.exchange import SimExchange
from executor.venue.endpoints import Endpoints

HOSTS = ("spot_rest", "spot_stream", "spot_ws_api", "futures_rest", "futures_stream")

# host -> route modules (each has add_routes(app, sim)). Admin lives under /sim/ on the
# spot REST host: a path real Binance does not have.
ROUTE_MODULES: dict[str, tuple[str, ...]] = {
    "spot_rest": ("executor.sim.rest_spot", "executor.sim.rest_market", "executor.sim.admin",
                  "executor.sim.rest_sapi", "executor.sim.admin_faults"),
    "spot_stream": ("executor.sim.market_ws",),
    "spot_ws_api": ("executor.sim.wsapi",),
    "futures_rest": ("executor.sim.rest_futures", "executor.sim.rest_futures_orders"),
    "futures_stream": ("executor.sim.futures_ws",),
}


@dataclass(frozen=True)
class SimUrls:
    host: str
    ports: dict[str, int]

    def _base(self, name: str, scheme: str) -> str:
        return f"{scheme}://{self.host}:{self.ports[name]}"

    @property
    def spot_rest(self) -> str:
        return self._base("spot_rest", "http") + "/api"

    @property
    def admin(self) -> str:
        return self._base("spot_rest", "http") + "/sim"

    @property
    def spot_stream(self) -> str:
        return self._base("spot_stream", "ws") + "/"

    @property
    def spot_ws_api(self) -> str:
        return self._base("spot_ws_api", "ws") + "/ws-api/v3"

    @property
    def futures_rest(self) -> str:
        return self._base("futures_rest", "http") + "/fapi"

    @property
    def futures_stream(self) -> str:
        return self._base("futures_stream", "ws") + "/"

    def endpoints(self) -> Endpoints:
        return Endpoints(
            name="sim",
            spot_rest=self.spot_rest,
            spot_stream=self.spot_stream,
            spot_ws_api=self.spot_ws_api,
            futures_rest=self.futures_rest,
            futures_stream=self.futures_stream,
            sapi_rest=self._base("spot_rest", "http") + "/sapi",
        )


class SimServer:
    """Starts and stops the listeners; the exchange object stays usable in-process."""

    def __init__(self, sim: SimExchange, host: str = "127.0.0.1",
                 ports: dict[str, int] | None = None) -> None:
        self.sim = sim
        self.host = host
        self._wanted = {name: (ports or {}).get(name, 0) for name in HOSTS}
        self._runners: list[web.AppRunner] = []
        self.urls: SimUrls | None = None

    def _build_app(self, host_name: str) -> web.Application:
        app = web.Application()
        app[SIM] = self.sim
        app[HOST_NAME] = host_name
        app[SERVER] = self  # lets GET /sim/urls publish every listener's URL
        for module_name in ROUTE_MODULES[host_name]:
            importlib.import_module(module_name).add_routes(app, self.sim)
        return app

    async def start(self) -> SimUrls:
        bound: dict[str, int] = {}
        try:
            for name in HOSTS:
                runner = web.AppRunner(self._build_app(name), access_log=None,
                                       handle_signals=False, shutdown_timeout=0.5)
                await runner.setup()
                self._runners.append(runner)
                site = web.TCPSite(runner, self.host, self._wanted[name], reuse_address=True)
                await site.start()
                bound[name] = runner.addresses[0][1]  # one site per runner: its bound port
        except BaseException:
            await self.stop()
            raise
        await self.sim.start()
        self.urls = SimUrls(self.host, bound)
        return self.urls

    async def stop(self) -> None:
        await self.sim.stop()
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()

    async def __aenter__(self) -> SimUrls:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
