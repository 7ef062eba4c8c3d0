"""``/sapi`` on the spot REST host: the API key's restrictions, and an admin switch for them.

``GET /sapi/v1/account/apiRestrictions`` (USER_DATA, signed with the same checks as every
other signed endpoint) answers the calling key's ``api_restrictions`` from the account
model. ``GET``/``POST /sim/keys/restrictions`` reads and changes them per key (or for all
keys of an account), so tests can produce every preflight refusal. When ``rest_spot``
already routes the GET through its dispatcher (weight, faults), that route is kept and
only the admin routes are added here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from executor.sim import auth, errors
from executor.sim.accounts import DEFAULT_ID, ApiKey, default_api_restrictions
from executor.sim.appkeys import SIM

RESTRICTIONS_PATH = "/sapi/v1/account/apiRestrictions"
RESTRICTION_FIELDS = frozenset(default_api_restrictions()) - {"createTime"}


class RestrictionError(ValueError):
    """An admin request naming an unknown key/account/field or a non-boolean value."""


def _keys(sim: Any, api_key: str | None, account_id: str | None) -> list[ApiKey]:
    if api_key:
        found = sim.accounts.by_api_key(api_key)
        if found is None:
            raise RestrictionError(f"unknown API key {api_key[:6]}…")
        return [found[1]]
    account = sim.accounts.find(account_id or DEFAULT_ID)
    if account is None:
        raise RestrictionError(f"unknown account {account_id!r}")
    return list(account.api_keys)


def set_restrictions(sim: Any, changes: Mapping[str, Any], *, api_key: str | None = None,
                     account_id: str | None = None) -> list[dict[str, Any]]:
    """Apply ``changes`` (restriction name -> bool) to one key, or every key of an account
    (default: the default account); returns the resulting restriction dicts."""
    for name, value in changes.items():
        if name not in RESTRICTION_FIELDS:
            known = ", ".join(sorted(RESTRICTION_FIELDS))
            raise RestrictionError(f"unknown restriction {name!r}; known: {known}")
        if not isinstance(value, bool):
            raise RestrictionError(f"restriction {name!r} must be true or false, got {value!r}")
    keys = _keys(sim, api_key, account_id)
    for api in keys:
        api.api_restrictions.update(changes)
    return [dict(api.api_restrictions) for api in keys]


def reset_restrictions(sim: Any, *, api_key: str | None = None, account_id: str | None = None) -> None:
    """Back to the safe defaults (trusted IPs only, no withdrawals, trading on)."""
    for api in _keys(sim, api_key, account_id):
        create_time = api.api_restrictions.get("createTime", 0)
        api.api_restrictions = {**default_api_restrictions(), "createTime": create_time}


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


async def api_restrictions(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    try:
        query = request.rel_url.raw_query_string
        body = await request.text() if request.can_read_body else ""
        params = auth.parse_params(query, body)
        _, api = auth.authenticate_signed(sim.accounts, request.headers, query, body, params,
                                          sim.clock.now_ms(), sim.clock.time_scale)
    except errors.BinanceError as exc:
        return _json(exc.body(), exc.http_status, exc.headers)
    return _json(dict(api.api_restrictions))


async def admin_get(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    try:
        keys = _keys(sim, request.query.get("apiKey"), request.query.get("account"))
    except RestrictionError as exc:
        return _json({"error": str(exc)}, 400)
    return _json([{"apiKey": api.key, "kind": api.kind, "account": api.account_id,
                   "restrictions": dict(api.api_restrictions)} for api in keys])


async def admin_set(request: web.Request) -> web.Response:
    """Body: ``{"apiKey": K | "account": A, "restrictions": {...}, "reset": bool}``."""
    sim = request.app[SIM]
    try:
        data = await request.json()
    except ValueError:
        return _json({"error": "body must be JSON"}, 400)
    if not isinstance(data, dict) or not isinstance(data.get("restrictions", {}), dict):
        return _json({"error": "body must be an object with a 'restrictions' object"}, 400)
    try:
        if data.get("reset"):
            reset_restrictions(sim, api_key=data.get("apiKey"), account_id=data.get("account"))
        result = set_restrictions(sim, data.get("restrictions", {}), api_key=data.get("apiKey"),
                                  account_id=data.get("account"))
    except RestrictionError as exc:
        return _json({"error": str(exc)}, 400)
    return _json(result)


def add_routes(app: web.Application, sim: Any) -> None:
    # rest_spot may already serve the endpoint through its own dispatcher (weight, 429
    # faults); then that one stays and only the admin routes are added here.
    taken = {getattr(r, "canonical", None) for r in app.router.resources()}
    if RESTRICTIONS_PATH not in taken:
        app.router.add_get(RESTRICTIONS_PATH, api_restrictions)
    app.router.add_get("/sim/keys/restrictions", admin_get)
    app.router.add_post("/sim/keys/restrictions", admin_set)
