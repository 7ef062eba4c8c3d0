"""Admin routes for the fault switchboard and futures ground truth, under ``/sim/``.

Served on the spot REST host next to ``admin.py``; a prefix real Binance does not have.
Bodies and answers are JSON. Every switch here is also callable in-process on
``sim.faults`` / ``sim.futures`` (these routes only translate).

Faults (``/sim/faults/...``, POST): ``drop`` {kind?}, ``shutdown`` {kind?}, ``stall``
{kind, account?}, ``unstall`` {kind?}, ``expire-listen-key`` {listenKey?, account?},
``orders`` {count, status=503, code?, placed=true, venue?}, ``late-orders`` {count, delayMs, status?}
(accepted, answer lost -- connection cut, or ``status`` -- and on the book only ``delayMs``
exchange ms later), ``hold`` {count, seconds}, ``429``
{count}, ``waf`` {count} (HTTP 403 HTML), ``skew`` {ms},
``events`` {duplicate?, reorder?, delay?, delayMs?, channel?},
``flush``, ``reset``; ``GET /sim/faults/state`` shows the state.
Futures (``/sim/futures/...``): POST ``transfer`` {asset, amount, account?, fromSpot?},
POST ``position`` {symbol, amount, entryPrice, account?}, POST ``fill`` {symbol, side, qty,
price, clientOrderId?, maker?, account?}, POST ``funding`` (settle now),
POST ``basis`` {symbol, basis|null}, GET ``account?account=``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from executor.sim import errors
from executor.sim.accounts import DEFAULT_ID
from executor.sim.appkeys import SIM
from executor.sim.faults import WS_KINDS
from executor.sim.futures_account import attach

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AdminError(Exception):
    """A bad admin request: answered 400 with the message."""


def _route(fn: Callable[[Any, dict[str, Any]], Awaitable[Any]]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        sim = request.app[SIM]
        body: dict[str, Any] = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "body must be JSON"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"error": "body must be a JSON object"}, status=400)
        body.update({k: v for k, v in request.query.items() if k not in body})
        try:
            return web.json_response(await fn(sim, body))
        except (AdminError, ValueError, KeyError, InvalidOperation) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except errors.BinanceError as exc:
            return web.json_response(exc.body(), status=exc.http_status)
    return handler


def _kind(body: dict[str, Any], required: bool = False) -> str | None:
    kind = body.get("kind")
    if kind is None and not required:
        return None
    if kind not in WS_KINDS:
        raise AdminError(f"kind must be one of {', '.join(WS_KINDS)}")
    return str(kind)


def _int(body: dict[str, Any], name: str, default: int | None = None) -> int:
    value = body.get(name, default)
    if value is None:
        raise AdminError(f"{name} is required")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AdminError(f"{name} must be an integer") from None


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


# -- faults ---------------------------------------------------------------------------------

async def state(sim: Any, body: dict[str, Any]) -> Any:
    f = sim.faults
    return {"orderFailures": [vars(o) for o in f.order_failures],
            "lateOrders": [{"delayMs": o.delay_ms, "status": o.http_status} for o in f.late_orders],
            "latePlaced": f.late_placed, "holdResponses": f.hold_responses,
            "holdSeconds": f.hold_seconds, "rateLimitBurst": f.rate_limit_burst,
            "wafBlocks": f.waf_blocks, "skewMs": sim.clock.skew_ms,
            "events": {"duplicate": f.events.duplicate, "reorder": f.events.reorder, "delay": f.events.delay,
                       "delayMs": f.events.delay_ms, "channel": f.events.channel},
            "connections": {k: f.connections.count(k) for k in WS_KINDS}}


async def drop(sim: Any, body: dict[str, Any]) -> Any:
    return {"dropped": await sim.faults.connections.drop(_kind(body))}


async def shutdown(sim: Any, body: dict[str, Any]) -> Any:
    return {"closed": await sim.faults.connections.shutdown(_kind(body))}


async def stall(sim: Any, body: dict[str, Any]) -> Any:
    kind = _kind(body, required=True)
    assert kind is not None
    return {"stalled": sim.faults.connections.stall(kind, body.get("account"))}


async def unstall(sim: Any, body: dict[str, Any]) -> Any:
    sim.faults.connections.unstall(_kind(body))
    return {}


async def expire_listen_key(sim: Any, body: dict[str, Any]) -> Any:
    keys = attach(sim).listen_keys.expire_now(body.get("listenKey"), body.get("account"))
    return {"expired": keys}


async def orders(sim: Any, body: dict[str, Any]) -> Any:
    status = _int(body, "status", 503)
    code = body.get("code")
    if status < 500 and code is None:
        raise AdminError("a non-5xx order failure needs a code (e.g. -1007)")
    venue = body.get("venue")
    if venue not in (None, "spot", "futures"):
        raise AdminError("venue must be spot or futures")
    sim.faults.fail_orders(_int(body, "count"), http_status=status,
                           code=None if code is None else int(code), placed=_bool(body, "placed", True),
                           venue=venue)
    return {"pending": len(sim.faults.order_failures)}


async def late_orders(sim: Any, body: dict[str, Any]) -> Any:
    delay = _int(body, "delayMs")
    if delay < 0:
        raise AdminError("delayMs must not be negative")
    status = body.get("status")
    if status is not None and _int(body, "status") < 500:
        raise AdminError("status must be a 5xx (or absent: the connection is cut)")
    sim.faults.late_order(_int(body, "count"), delay, http_status=None if status is None else int(status))
    return {"pending": len(sim.faults.late_orders)}


async def hold(sim: Any, body: dict[str, Any]) -> Any:
    seconds = float(body.get("seconds", 0))
    if seconds <= 0:
        raise AdminError("seconds must be positive")
    path = body.get("path", "")
    if not isinstance(path, str):
        raise AdminError("path must be a string (a REST path prefix)")
    sim.faults.hold(_int(body, "count"), seconds, path=path)
    return {}


async def burst_429(sim: Any, body: dict[str, Any]) -> Any:
    sim.faults.burst_429(_int(body, "count"))
    return {}


async def waf(sim: Any, body: dict[str, Any]) -> Any:
    sim.faults.waf_block(_int(body, "count"))
    return {}


async def skew(sim: Any, body: dict[str, Any]) -> Any:
    sim.faults.skew_clock(_int(body, "ms"))
    return {"skewMs": sim.clock.skew_ms}


async def events(sim: Any, body: dict[str, Any]) -> Any:
    channel = body.get("channel")
    if channel not in (None, "spot", "futures"):
        raise AdminError("channel must be spot or futures")
    f = sim.faults
    if "duplicate" in body:
        f.duplicate_events(_int(body, "duplicate"), channel)
    if "reorder" in body:
        f.reorder_events(_int(body, "reorder"), channel)
    if "delay" in body:
        f.delay_events(_int(body, "delay"), _int(body, "delayMs"), channel)
    return (await state(sim, body))["events"]


async def flush(sim: Any, body: dict[str, Any]) -> Any:
    return {"delivered": sim.faults.flush_events()}


async def reset(sim: Any, body: dict[str, Any]) -> Any:
    sim.faults.reset()
    return {}


# -- futures ground truth -------------------------------------------------------------------

def _account(sim: Any, body: dict[str, Any]) -> str:
    account_id = str(body.get("account", DEFAULT_ID))
    if account_id not in sim.accounts:
        raise AdminError(f"unknown account {account_id}")
    return account_id


async def futures_transfer(sim: Any, body: dict[str, Any]) -> Any:
    side = attach(sim)
    account_id = _account(sim, body)
    asset = str(body["asset"])
    amount = Decimal(str(body["amount"]))
    if _bool(body, "fromSpot", False):
        # Spot side moves first so a spot shortfall rejects the whole transfer.
        sim.engine.adjust_balance(sim.accounts.get(account_id), asset, -amount)
    return side.transfer(account_id, asset, amount)


async def futures_position(sim: Any, body: dict[str, Any]) -> Any:
    side = attach(sim)
    account_id = _account(sim, body)
    side.set_position(account_id, str(body["symbol"]), Decimal(str(body["amount"])),
                      Decimal(str(body["entryPrice"])))
    return side.account_view(account_id)["positions"]


async def futures_fill(sim: Any, body: dict[str, Any]) -> Any:
    side = attach(sim)
    return {"events": side.fill(_account(sim, body), str(body["symbol"]), str(body["side"]),
                                Decimal(str(body["qty"])), Decimal(str(body["price"])),
                                client_order_id=str(body.get("clientOrderId", "sim-fill")),
                                maker=_bool(body, "maker", False))}


async def futures_funding(sim: Any, body: dict[str, Any]) -> Any:
    return {"events": attach(sim).settle_funding()}


async def futures_basis(sim: Any, body: dict[str, Any]) -> Any:
    side = attach(sim)
    symbol = str(body["symbol"])
    if symbol not in side.market.symbols:
        raise AdminError(f"unknown futures symbol {symbol}")
    basis = body.get("basis")
    side.market.set_basis(symbol, None if basis is None else Decimal(str(basis)))
    state = side.market.state(symbol)
    return state.premium_index() if state else {}


async def futures_account(sim: Any, body: dict[str, Any]) -> Any:
    return attach(sim).account_view(_account(sim, body))


def add_routes(app: web.Application, sim: Any) -> None:
    attach(sim)
    r = app.router
    r.add_get("/sim/faults/state", _route(state))
    for path, fn in (("drop", drop), ("shutdown", shutdown), ("stall", stall), ("unstall", unstall),
                     ("expire-listen-key", expire_listen_key), ("orders", orders),
                     ("late-orders", late_orders), ("hold", hold),
                     ("429", burst_429), ("waf", waf), ("skew", skew), ("events", events), ("flush", flush),
                     ("reset", reset)):
        r.add_post(f"/sim/faults/{path}", _route(fn))
    r.add_post("/sim/futures/transfer", _route(futures_transfer))
    r.add_post("/sim/futures/position", _route(futures_position))
    r.add_post("/sim/futures/fill", _route(futures_fill))
    r.add_post("/sim/futures/funding", _route(futures_funding))
    r.add_post("/sim/futures/basis", _route(futures_basis))
    r.add_get("/sim/futures/account", _route(futures_account))
