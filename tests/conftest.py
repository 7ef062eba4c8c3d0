"""Shared fixtures: a started embedded exchange (``sim``) and python-binance clients on it.

``sim`` starts a ``SimExchange`` + ``SimServer`` on free 127.0.0.1 ports and yields a
``SimHandle``: ``.exchange`` (the in-process ground truth), ``.urls`` (``SimUrls``),
``.endpoints`` (``Endpoints`` for ``apply_to_client``), ``.creds`` (default HMAC key),
``.ed25519_creds`` and ``.rsa_creds`` (RSA is generated lazily on first use).
``client`` is an unmodified python-binance ``AsyncClient`` pointed at the sim;
``make_client(creds)`` builds more (closed at teardown). ``@pytest.mark.sim_options(time_scale=60,
...)`` passes keyword overrides to ``SimExchange.for_tests`` for one test.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from executor.exchange.credentials import Credentials
from executor.sim.exchange import SimExchange
from executor.sim.server import SimServer, SimUrls
from executor.venue.endpoints import Endpoints, apply_to_client
from tests.ledger_backends import (  # noqa: F401 - fixtures for every folder
    ledger_backend,
    ledger_url,
    make_ledger,
    pg_databases,
    sqlite_template,
)

# Bytecode caching on, whatever the environment says: with PYTHONDONTWRITEBYTECODE=1 (some
# images export it) every pytest process (the controller and each xdist worker) parses and
# rewrites every test module again (~6 s of CPU each) and every ``run.py`` a test spawns
# compiles the project from source. Set here, in the first conftest loaded, so the workers
# and the bots they spawn inherit it. The caches are git-ignored.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# No per-example deadline: the suite shares two cores with the embedded exchanges and bots
# of the other workers, and a 200 ms deadline fails a correct property when the machine is
# busy (hypothesis then reports a "flaky" failure). The test timeout still bounds each test.
settings.register_profile("shared-cores", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared-cores")


@dataclass
class SimHandle:
    exchange: SimExchange
    server: SimServer
    urls: SimUrls
    endpoints: Endpoints = field(init=False)

    def __post_init__(self) -> None:
        self.endpoints = self.urls.endpoints()

    @cached_property
    def creds(self) -> Credentials:
        return self.exchange.credentials("HMAC")

    @cached_property
    def ed25519_creds(self) -> Credentials:
        return self.exchange.credentials("Ed25519")

    @cached_property
    def rsa_creds(self) -> Credentials:
        return self.exchange.credentials("RSA")


async def start_sim(exchange: SimExchange | None = None) -> SimHandle:
    """Start ``exchange`` (default: ``SimExchange.for_tests()``) on free ports."""
    exchange = exchange or SimExchange.for_tests()
    server = SimServer(exchange, host="127.0.0.1")
    urls = await server.start()
    return SimHandle(exchange=exchange, server=server, urls=urls)


def build_client(creds: Credentials, endpoints: Endpoints) -> Any:
    """An unmodified AsyncClient (not ``create``: that pings real Binance) aimed at ``endpoints``."""
    from binance import AsyncClient

    if creds.api_secret:
        client = AsyncClient(creds.api_key, creds.api_secret)
    else:
        client = AsyncClient(creds.api_key, private_key=creds.private_key_pem,
                             private_key_pass=creds.private_key_pass)
    apply_to_client(client, endpoints)
    return client


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sim_options(**kw): SimExchange.for_tests() overrides for the `sim` fixture")


# The files whose tests take longest (5-40 s each: child processes, chaos cycles, replays),
# longest first. They are collected first and xdist hands tests out two at a time
# (``--maxschedchunk 2`` in pyproject), so they spread over the workers at once instead of
# leaving one worker with a long test at the end while the others sit idle.
LONG_FIRST = (
    "tests/chaos/test_chaos.py",
    "tests/scenarios/test_futures_faults.py",
    "tests/replay/test_replay.py",
    "tests/scenarios/test_ledger_owner.py",
    "tests/scenarios/test_ledger_positions.py",
    "tests/scenarios/test_restart.py",
    "tests/scenarios/test_faults.py",
    "tests/streams/test_multi_day.py",
    "tests/replay/test_import.py",
    "tests/app/test_endings.py",
    "tests/app/test_status_tty.py",
    "tests/app/test_carry.py",
    "tests/scenarios/test_shutdown_ban.py",
    "tests/replay/test_cli.py",
    "tests/scenarios/test_day_cut.py",
    "tests/app/test_startup_failures.py",
    "tests/replay/test_sweep.py",
    "tests/scenarios/test_restart_power_cut.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONG_FIRST)}

    def key(item: pytest.Item) -> int:
        return rank.get(item.nodeid.split("::", 1)[0], len(LONG_FIRST))

    items.sort(key=key)  # stable: every other test keeps its collection order


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[SimHandle]:
    marker = request.node.get_closest_marker("sim_options")
    handle = await start_sim(SimExchange.for_tests(**marker.kwargs) if marker else None)
    try:
        yield handle
    finally:
        await handle.server.stop()


@pytest.fixture
async def make_client(sim: SimHandle) -> AsyncIterator[Callable[[Credentials], Any]]:
    clients: list[Any] = []

    def make(creds: Credentials | None = None) -> Any:
        client = build_client(creds or sim.creds, sim.endpoints)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close_connection()


@pytest.fixture
async def client(make_client: Callable[[Credentials], Any]) -> Any:
    return make_client()


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` on the event loop until true (fails the test after ``timeout``)."""
    import asyncio

    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(loop(), timeout)


Waiter = Callable[[Callable[[], bool], float], Awaitable[None]]
