"""Signing WebSocket API request parameters (HMAC, Ed25519 or RSA keys).

A signed WS API request carries ``apiKey``, ``timestamp`` (and optionally ``recvWindow``)
inside ``params`` plus a ``signature`` over every other param, sorted by name and joined
as a percent-encoded query string (``ws_signature_payload``).

Decision: the signature itself is computed by the python-binance client the bot already
built (``AsyncClient._generate_ws_api_signature``), not re-implemented here. That client
is the one place that holds the key material and knows its quirks (RSA vs Ed25519
detection, the Ed25519 passphrase that ``exchange.client.make_client`` decrypts up
front), and its WS API signature is the one python-binance's own ``ws_*`` calls send, so
both paths agree by construction. The cost is leaning on an underscore method of a
pinned version (1.0.37): the constructor checks it exists and fails with a clear error,
and tests verify the signatures of all three key types against the embedded exchange's
independent verifier, so an upgrade that changes it is caught at once.

The timestamp is the client's own signing time, ``time.time()*1000 +
client.timestamp_offset``, which ``exchange.clock.ServerClock`` keeps synced with the
exchange; a ``now_ms`` callable can replace it. Signed parameters are never logged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from executor.exchange.binance_private import ws_api_signature

__all__ = ["WsSigner", "ws_signature_payload"]

MAX_RECV_WINDOW_MS = 60_000


def ws_signature_payload(params: Mapping[str, Any]) -> str:
    """What a WS API signature covers: every param except ``signature``, sorted by name,
    as a percent-encoded ``k=v&...`` string."""
    return urlencode(sorted((k, _wire(k, v)) for k, v in params.items() if k != "signature"))


def _wire(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        raise TypeError(f"WS API parameter {key!r} is a float; use Decimal, int or str")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"WS API parameter {key!r} is not finite")
        return format(value, "f")
    return str(value)


class WsSigner:
    """Adds ``apiKey``, ``timestamp``, ``recvWindow`` and ``signature`` to WS API params."""

    def __init__(self, client: Any, *, recv_window_ms: int | None = 5000,
                 now_ms: Callable[[], float] | None = None) -> None:
        if not callable(getattr(client, "_generate_ws_api_signature", None)):
            raise TypeError("WsSigner needs a python-binance client with _generate_ws_api_signature "
                            "(python-binance 1.0.37); this client has none")
        api_key = getattr(client, "API_KEY", None)
        if not api_key:
            raise ValueError("WsSigner needs a client with an API key")
        if recv_window_ms is not None and not 0 < recv_window_ms <= MAX_RECV_WINDOW_MS:
            raise ValueError(f"recv_window_ms must be in 1..{MAX_RECV_WINDOW_MS}, got {recv_window_ms!r}")
        self._client = client
        self.api_key: str = api_key
        self.recv_window_ms = recv_window_ms
        self._now_ms = now_ms or self._client_now_ms

    def _client_now_ms(self) -> float:
        # The exact formula python-binance signs REST requests with.
        return time.time() * 1000 + self._client.timestamp_offset

    def sign(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A new dict: ``params`` plus authentication, sorted by name, ``signature`` last."""
        out: dict[str, Any] = {k: _wire(k, v) for k, v in (params or {}).items()}
        for reserved in ("apiKey", "timestamp", "signature"):
            if reserved in out:
                raise ValueError(f"WS API params must not carry {reserved!r}; the signer adds it")
        out["apiKey"] = self.api_key
        out["timestamp"] = int(self._now_ms())
        if self.recv_window_ms is not None and "recvWindow" not in out:
            out["recvWindow"] = self.recv_window_ms
        ordered = dict(sorted(out.items()))
        return {**ordered, "signature": ws_api_signature(self._client, ordered)}

    def __repr__(self) -> str:
        return f"WsSigner(api_key={self.api_key[:4]}…, recv_window_ms={self.recv_window_ms})"
