"""A hand-made aiohttp app on a free 127.0.0.1 port, as the ``Endpoints`` a gateway is given
(for the gateway tests whose server must answer in ways the embedded exchange never does)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from executor.venue.endpoints import Endpoints


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[Endpoints]:
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        yield Endpoints("t", base + "/api", "ws://x/", "ws://x/ws-api/v3", base + "/fapi", "ws://x/")
    finally:
        await runner.cleanup()
