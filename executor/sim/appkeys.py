"""Typed aiohttp application keys shared by the sim's route modules.

``SimServer`` stores the exchange, the host's name and itself on every listener's
``web.Application`` under these keys; route handlers read them with ``request.app[SIM]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from executor.sim.exchange import SimExchange

SIM: web.AppKey[SimExchange] = web.AppKey("sim")
HOST_NAME: web.AppKey[str] = web.AppKey("host_name", str)
# The SimServer itself (typed Any: server.py imports the route modules that import this).
SERVER: web.AppKey[Any] = web.AppKey("server")
