"""Helpers for the embedded exchange's part-2 tests (WS API, futures, faults).

The ``sim``, ``client`` and ``make_client`` fixtures come from ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
import websockets

from executor.venue.endpoints import apply_to_socket_manager
from tests.fixtures import FIXTURES_FILE

FIXTURES: dict[str, Any] = json.loads(FIXTURES_FILE.read_text())


def fixture_event(name: str) -> dict[str, Any]:
    """A fixture's bare event (spot user events are stored inside the WS API envelope)."""
    value = FIXTURES[name]
    return value["event"] if "subscriptionId" in value else value


async def recv_json(ws: Any, timeout: float = 5.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws: Any, predicate: Callable[[Any], bool], timeout: float = 5.0) -> Any:
    """Read frames until one satisfies ``predicate``; returns it."""
    async def loop() -> Any:
        while True:
            msg = json.loads(await ws.recv())
            if predicate(msg):
                return msg
    return await asyncio.wait_for(loop(), timeout)


async def expect_closed(ws: Any, timeout: float = 5.0) -> None:
    """The server closed ``ws`` (frames still in flight are read and ignored)."""
    async def loop() -> None:
        while True:
            await ws.recv()
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(loop(), timeout)


async def expect_silence(ws: Any, seconds: float = 0.3) -> None:
    """Nothing arrives within ``seconds`` (used only to show an absence)."""
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ws.recv(), seconds)


class WsApi:
    """A minimal WS API client over a plain websockets connection."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._id = 0
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
        self._id += 1
        req_id = f"r{self._id}"
        await self.ws.send(json.dumps({"id": req_id, "method": method, "params": params or {}}))
        while True:
            msg = await recv_json(self.ws, timeout)
            if msg.get("id") == req_id:
                return msg
            self.events.append(msg)

    async def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        if self.events:
            return self.events.pop(0)
        return await recv_json(self.ws, timeout)


@pytest.fixture
def bsm(sim: Any, client: Any) -> Any:
    from binance import BinanceSocketManager

    manager = BinanceSocketManager(client)
    apply_to_socket_manager(manager, sim.endpoints)
    return manager


def signed(creds: Any, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` plus apiKey and a signature over the sorted params, as Binance specifies."""
    import base64
    import hashlib
    import hmac
    from urllib.parse import urlencode

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    out = {"apiKey": creds.api_key, **params}
    payload = urlencode(sorted(out.items())).encode()
    if creds.api_secret:
        sig = hmac.new(creds.api_secret.encode(), payload, hashlib.sha256).hexdigest()
    else:
        key = load_pem_private_key(creds.private_key_pem.encode(), None)
        if isinstance(key, rsa.RSAPrivateKey):
            raw = key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            raw = key.sign(payload)  # type: ignore[call-arg, union-attr]
        sig = base64.b64encode(raw).decode()
    return {**out, "signature": sig}


async def close_quickly(sim: Any, kind: str, rws: Any, closing: Any) -> None:
    """Run ``closing`` (a python-binance close) and wake its read loop.

    python-binance stops a socket by flagging its read loop and waiting for the loop to
    notice, which it only does after a frame arrives or its 10 s recv timeout. On a quiet
    socket that is 10 s per close; a ``serverShutdown`` frame sent once the loop is flagged
    wakes it at once.
    """
    from binance.ws.constants import WSListenerState

    from tests.conftest import wait_for

    task = asyncio.ensure_future(closing)
    await wait_for(lambda: rws.ws_state == WSListenerState.EXITING or task.done(), 5)
    if not task.done():
        await sim.exchange.faults.connections.shutdown(kind)
    await asyncio.wait_for(task, 5)
