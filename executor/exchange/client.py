"""Building the python-binance ``AsyncClient`` the bot uses, and tapping its responses.

``make_client`` constructs the client directly (``AsyncClient.create`` would ping real
Binance), points it at a profile's endpoints, and makes the configured timeout the one
every request uses (python-binance's ``REQUEST_TIMEOUT``, the per-request
``requests_params`` timeout and the session default all agree).

python-binance keeps only the *last* response on ``client.response``; with concurrent
requests that attribute can belong to someone else's request by the time a caller reads
it. The client built here carries an aiohttp trace hook that records each response's
status and headers into a per-task ``capture_response()`` slot, so the REST gateway reads
the usage headers of exactly its own request.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
from binance import AsyncClient

from executor.exchange.credentials import Credentials
from executor.venue.endpoints import Endpoints, apply_to_client


@dataclass
class CapturedResponse:
    """Status and headers of the last HTTP response seen inside ``capture_response()``."""

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def seen(self) -> bool:
        return self.status is not None


_CURRENT: contextvars.ContextVar[CapturedResponse | None] = contextvars.ContextVar(
    "executor_rest_capture", default=None)


async def _on_request_end(_session: aiohttp.ClientSession, _ctx: SimpleNamespace,
                          params: aiohttp.TraceRequestEndParams) -> None:
    slot = _CURRENT.get()
    if slot is not None:
        slot.status = params.response.status
        slot.headers = params.response.headers


def response_tap() -> aiohttp.TraceConfig:
    """An aiohttp trace config feeding ``capture_response()``; ``make_client`` installs it."""
    config = aiohttp.TraceConfig()
    config.on_request_end.append(_on_request_end)
    return config


@contextlib.contextmanager
def capture_response() -> Iterator[CapturedResponse]:
    """Collect the status/headers of requests made by this task inside the block."""
    slot = CapturedResponse()
    token = _CURRENT.set(slot)
    try:
        yield slot
    finally:
        _CURRENT.reset(token)


def _key_arguments(creds: Credentials) -> dict[str, Any]:
    if creds.api_secret:
        return {"api_key": creds.api_key, "api_secret": creds.api_secret}
    pem = creds.private_key_pem
    assert pem
    password = creds.private_key_pass
    if password and creds.kind != "RSA":
        # python-binance imports Ed25519 keys without the passphrase (and mistakes a long
        # encrypted PEM for RSA), so decrypt here and hand it the plain PEM.
        from Crypto.PublicKey import ECC

        try:
            pem = ECC.import_key(pem, passphrase=password).export_key(format="PEM")
        except (ValueError, IndexError, TypeError):
            raise ValueError("could not decrypt the Ed25519 private key (wrong passphrase?)") from None
        password = None
    return {"api_key": creds.api_key, "private_key": pem, "private_key_pass": password}


def make_client(endpoints: Endpoints, creds: Credentials, *, timeout_s: float,
                recv_window_ms: int | None = None) -> AsyncClient:
    """A python-binance ``AsyncClient`` for ``endpoints``, with no network I/O.

    Call it inside the running event loop (the aiohttp session binds to it). Close it
    with ``await client.close_connection()``. The clock offset starts at 0: sync it with
    ``ServerClock`` (the ``RestGateway`` does so in ``start()``).
    """
    timeout = float(timeout_s)
    if not timeout > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    if recv_window_ms is not None and not 0 < recv_window_ms <= 60_000:
        raise ValueError(f"recv_window_ms must be in 1..60000, got {recv_window_ms!r}")
    client = AsyncClient(
        **_key_arguments(creds),
        requests_params={"timeout": timeout},
        session_params={
            "timeout": aiohttp.ClientTimeout(total=timeout),
            "trace_configs": [response_tap()],
        },
        testnet=False,
        demo=False,
    )
    client.REQUEST_TIMEOUT = timeout
    if recv_window_ms is not None:
        client.REQUEST_RECVWINDOW = recv_window_ms
    apply_to_client(client, endpoints)
    return client
