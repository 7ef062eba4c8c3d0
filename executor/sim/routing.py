"""Mounting a table of REST routes on an aiohttp app: one handler per path that picks the
route by HTTP method (405 for a method the path does not have) and hands it to the host's
dispatcher (weights, faults, auth and Binance-shaped errors live there, per host)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from aiohttp import web

R = TypeVar("R")
Dispatch = Callable[[web.Request, R], Awaitable[web.StreamResponse]]


def mount(app: web.Application, table: Mapping[tuple[str, str], R], dispatch: Dispatch[R]) -> None:
    """Serve every (method, path) of ``table`` through ``dispatch(request, route)``."""
    by_path: dict[str, dict[str, R]] = {}
    for (method, path), route in table.items():
        by_path.setdefault(path, {})[method] = route

    def make(path: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            route = by_path[path].get(request.method)
            if route is None:
                return web.Response(status=405)
            return await dispatch(request, route)
        return handle

    for path in by_path:
        app.router.add_route("*", path, make(path))
