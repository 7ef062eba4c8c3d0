"""The only places the bot touches python-binance's private members, each wrapped once.

python-binance offers no public way to do these three things; every other module calls
these functions instead of reaching into the client (ruff SLF001 is on for ``executor/``):

* ``public_get``: ``GET /api/v3/exchangeInfo`` filtered by ``symbol``/``symbols``.
  ``AsyncClient.get_exchange_info()`` takes no parameters (it always reads every symbol,
  weight 20), and ``get_symbol_info`` returns the symbol row, not the answer's
  ``rateLimits``; the client's own ``_get`` is what its public methods call underneath;
* ``ws_api_signature``: the WS API request signature (HMAC, RSA or Ed25519, whichever key
  the client holds). The client signs its own WS API requests with
  ``_generate_ws_api_signature`` and exposes no public signer;
* ``point_ws_clients``: the WS API URLs of the spot and futures WS API managers, which
  the client builds from its testnet/demo flags at construction and keeps in ``_url``
  with no setter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

__all__ = ["point_ws_clients", "public_get", "ws_api_signature"]


def public_get(client: Any, path: str, data: Mapping[str, Any]) -> Awaitable[Any]:
    """``GET /api/v3/<path>`` with query ``data`` through the client's own request path."""
    # python-binance: no public method takes exchangeInfo's symbol/symbols filter.
    return client._get(path, data=dict(data))  # noqa: SLF001 - no public equivalent (module docstring)


def ws_api_signature(client: Any, params: Mapping[str, Any]) -> str:
    """The signature python-binance would put on a WS API request with ``params``."""
    # python-binance: the signer of its WS API requests is private, and no public one exists.
    return client._generate_ws_api_signature(dict(params))  # noqa: SLF001 - no public equivalent


def point_ws_clients(client: Any, spot_ws_api: str, futures_ws_api: str) -> None:
    """Point the client's spot and futures WS API managers at these URLs."""
    # python-binance: the managers read their URL from ``_url`` and offer no setter.
    client.ws_api._url = spot_ws_api  # noqa: SLF001 - no public setter (module docstring)
    client.ws_future._url = futures_ws_api  # noqa: SLF001 - no public setter (module docstring)
