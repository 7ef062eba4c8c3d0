"""``ServerSocket``: pings on the sim clock, the pong deadline, and the registry hooks."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import websockets
from aiohttp import WSMsgType, web

from executor.sim.clock import SimClock
from executor.sim.faults import Faults, ServerSocket, SocketRules

FAST = SocketRules(ping_every_s=1, pong_timeout_s=2, max_age_s=3600, min_wall_ping_s=0.01,
                   min_wall_pong_s=0.05)


async def _serve(clock: SimClock, faults: Faults, closed: list[str]) -> web.AppRunner:
    async def handler(request: web.Request) -> web.StreamResponse:
        sock = ServerSocket(request, "ws_api", clock, faults, rules=FAST)
        await sock.prepare()
        await sock.run()
        closed.append(sock.close_reason)
        return sock.ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def _port(runner: web.AppRunner) -> int:
    return runner.addresses[0][1]  # type: ignore[no-any-return]


async def test_client_that_never_pongs_is_cut_and_one_that_does_is_kept() -> None:
    clock, faults, closed = SimClock(time_scale=50), Faults(), []
    runner = await _serve(clock, faults, closed)
    url = f"http://127.0.0.1:{_port(runner)}/ws"
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url, autoping=False) as mute:
            first = await asyncio.wait_for(mute.receive(), 5)
            assert first.type == WSMsgType.PING
            rest = await asyncio.wait_for(mute.receive(), 5)
            while rest.type == WSMsgType.PING:
                rest = await asyncio.wait_for(mute.receive(), 5)
            assert rest.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
        # websockets answers pings in the background, as python-binance's connections do.
        async with websockets.connect(url.replace("http", "ws")) as polite:
            start = clock.now_ms()
            await asyncio.sleep(0.3)                           # > 10 ping periods of the sim clock
            assert clock.now_ms() - start > 10_000
            assert faults.connections.count("ws_api") == 1
            await polite.ping()
        await asyncio.wait_for(_until(lambda: len(closed) == 2), 5)
        assert closed[0] == "pong timeout"
    finally:
        await runner.cleanup()


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)
