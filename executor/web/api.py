"""The JSON API ``/api/v1/...`` over a running bot, and the dashboard's live snapshot.

Handlers read a ``BotSource`` (what the bot exposes to the web: its ledger, live figures,
controls and health) and answer JSON in which every money value is a decimal string
(``format_decimal``: exact, never an exponent). Figures come from ``executor.figures``
through ``LedgerWatch`` (PnL per period, positions, balances) or the ledger itself (orders,
fills, runs, reconciliations).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from executor.core.money import format_decimal
from executor.figures import PERIODS, PnlFigures, last_fills, open_orders
from executor.oversight.control import ACTIONS, Operator
from executor.oversight.metrics import MetricsSample
from executor.oversight.watch import LedgerWatch
from executor.persistence.records import FillRow, OrderRecord

__all__ = ["BotSource", "add_routes", "dumps", "snapshot"]

MAX_LIMIT = 1000


@dataclass
class BotSource:
    """What the web server may read and do. Built by ``executor.oversight.hub`` from the bot."""

    run_id: int | None
    profile: str
    venue: str
    symbols: list[str]
    started_ms: int
    store: Any
    watch: LedgerWatch
    operator: Operator
    streams: Callable[[], list[dict[str, Any]]]  # name, kind, state, age_s, reconnects, ...
    jobs: Callable[[], list[dict[str, Any]]]  # name, runs, ok, errors, last_start_ms
    metrics: Callable[[], MetricsSample]


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format_decimal(value)
    raise TypeError(type(value).__name__)


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(data), status=status, content_type="application/json")


def _bad(msg: str) -> web.Response:
    return _json({"error": msg}, 400)


def _int_arg(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit():
        raise web.HTTPBadRequest(body=dumps({"error": f"{name} must be a whole number"}),
                                 content_type="application/json")
    return max(lo, min(hi, int(text)))


# ---------------------------------------------------------------- row shapes


def order_json(o: OrderRecord) -> dict[str, Any]:
    return {"client_order_id": o.client_order_id, "exchange_order_id": o.exchange_order_id,
            "run_id": o.run_id, "symbol": o.symbol, "side": o.side, "type": o.type,
            "time_in_force": o.time_in_force,
            "price": o.price, "quantity": o.quantity, "status": o.status, "executed_qty": o.executed_qty,
            "cum_quote_qty": o.cum_quote_qty, "created_ms": o.created_ms, "updated_ms": o.updated_ms,
            "reason": o.reason, "external": o.external, "reject_reason": o.reject_reason}


def fill_json(f: FillRow) -> dict[str, Any]:
    return {"symbol": f.symbol, "trade_id": f.trade_id, "client_order_id": f.client_order_id,
            "side": f.side.value if f.side is not None else None, "price": f.price, "qty": f.qty,
            "quote_qty": f.quote_qty, "commission": f.commission, "commission_asset": f.commission_asset,
            "is_maker": f.is_maker, "time_ms": f.time_ms, "run_id": f.run_id, "source": f.source}


def pnl_json(p: PnlFigures) -> dict[str, Any]:
    return {"period": p.period, "since_ms": p.since_ms, "fills": p.fills, "totals": p.totals,
            "symbols": [{"symbol": s.symbol, "base": s.base, "quote": s.quote, "realized": s.realized,
                         "realized_gross": s.realized_gross, "fees": s.fees, "unrealized": s.unrealized,
                         "position": s.position, "position_cost": s.position_cost, "mark": s.mark,
                         "fills": s.fills, "fees_by_asset": dict(s.fees_by_asset),
                         "fees_unconverted": dict(s.fees_unconverted)} for s in p.symbols]}


def status_json(src: BotSource) -> dict[str, Any]:
    now = time.time_ns() // 1_000_000
    op = src.operator
    risk = op.risk
    return {"run_id": src.run_id, "profile": src.profile, "venue": src.venue, "symbols": src.symbols,
            "started_ms": src.started_ms, "now_ms": now, "uptime_s": round((now - src.started_ms) / 1000, 1),
            "paused": op.paused, "kill_switch": {"engaged": op.kill_switch_engaged,
                                                 "file": str(risk.kill_switch.path),
                                                 "reason": risk.kill_switch.reason() if op.kill_switch_engaged
                                                 else None},
            "streams": src.streams(), "jobs": src.jobs()}


def balances_json(src: BotSource) -> dict[str, Any]:
    from executor.figures import equity_at_mark

    marks = src.watch.marks()
    value, unpriced = equity_at_mark(src.watch.balances, marks, src.watch.quote)
    return {"balances": [{"asset": b.asset, "free": b.free, "locked": b.locked, "total": b.total}
                         for b in src.watch.balances],
            "equity": {"quote": src.watch.quote, "value": value, "unpriced": unpriced}}


def positions_json(src: BotSource) -> dict[str, Any]:
    marks = src.watch.marks()
    out = []
    for asset, qty in sorted(src.watch.positions.items()):
        quote = src.watch.quote
        mark = marks.get(f"{asset}{quote}")
        out.append({"asset": asset, "position": qty, "quote": quote, "mark": mark,
                    "value": None if mark is None else qty * mark})
    return {"positions": out, "note": "net of our fills in this ledger, base-asset commissions deducted"}


async def snapshot(src: BotSource, *, fills: int = 20, orders: int = 50, equity_points: int = 300) -> bytes:
    """Everything the dashboard shows, as one JSON document."""
    rows = await src.store.recent_orders(orders, open_only=True)
    series = list(src.watch.equity)[-equity_points:]
    return dumps({"status": status_json(src),
                  "pnl": {p: pnl_json(src.watch.pnl(p)) for p in PERIODS},
                  **balances_json(src), **positions_json(src),
                  "equity_series": [[t, v] for t, v in series],
                  "orders": [order_json(o) for o in open_orders(rows)],
                  "fills": [fill_json(f) for f in src.watch.last_fills(fills)]})


# ---------------------------------------------------------------- routes


def add_routes(app: web.Application, get_src: Callable[[], BotSource]) -> None:
    """The API routes; ``get_src()`` is the bot's source at request time (the server binds its
    port before the bot is running, and answers 503 until then)."""

    async def ping(_: web.Request) -> web.Response:
        return _json({"ok": True})

    async def status(_: web.Request) -> web.Response:
        src = get_src()
        return _json(status_json(src))

    async def balances(_: web.Request) -> web.Response:
        src = get_src()
        return _json(balances_json(src))

    async def positions(_: web.Request) -> web.Response:
        src = get_src()
        return _json(positions_json(src))

    async def orders(request: web.Request) -> web.Response:
        src = get_src()
        state = request.query.get("state", "open")
        if state not in ("open", "all"):
            return _bad("state must be open or all")
        limit = _int_arg(request, "limit", 100, 1, MAX_LIMIT)
        rows = await src.store.recent_orders(limit, open_only=state == "open")
        if state == "open":
            rows = open_orders(rows)
        return _json({"state": state, "orders": [order_json(o) for o in rows]})

    async def fills(request: web.Request) -> web.Response:
        src = get_src()
        limit = _int_arg(request, "limit", 100, 1, MAX_LIMIT) or 100
        since = _int_arg(request, "since", None, 0, 2**62)
        if since is None:
            rows = await src.store.recent_fills(limit)
        else:
            rows = await src.store.fills(since_ms=since)
        return _json({"since_ms": since, "fills": [fill_json(f) for f in last_fills(rows, limit, since)]})

    async def pnl(request: web.Request) -> web.Response:
        src = get_src()
        period = request.query.get("period", "run")
        if period not in PERIODS:
            return _bad(f"period must be one of {', '.join(PERIODS)}")
        await src.watch.poll()  # the figures include every fill the ledger has right now
        return _json(pnl_json(src.watch.pnl(period)))

    async def runs(request: web.Request) -> web.Response:
        src = get_src()
        limit = _int_arg(request, "limit", 50, 1, MAX_LIMIT) or 50
        return _json({"runs": await src.store.runs(limit)})

    async def reconciliations(request: web.Request) -> web.Response:
        src = get_src()
        limit = _int_arg(request, "limit", 50, 1, MAX_LIMIT) or 50
        return _json({"reconciliations": await src.store.recent_reconciliations(limit)})

    async def live(_: web.Request) -> web.Response:
        src = get_src()
        return web.Response(body=await snapshot(src), content_type="application/json")

    def control(action: str) -> Callable[[web.Request], Any]:
        async def handler(_: web.Request) -> web.Response:
            src = get_src()
            res = await src.operator.act(action, "web")
            return _json({"action": res.action, "detail": res.detail, "recorded": res.recorded,
                          "paused": src.operator.paused, "kill_switch": src.operator.kill_switch_engaged})

        return handler

    r = app.router
    r.add_get("/api/v1/ping", ping)
    r.add_get("/api/v1/status", status)
    r.add_get("/api/v1/balances", balances)
    r.add_get("/api/v1/positions", positions)
    r.add_get("/api/v1/orders", orders)
    r.add_get("/api/v1/fills", fills)
    r.add_get("/api/v1/pnl", pnl)
    r.add_get("/api/v1/runs", runs)
    r.add_get("/api/v1/reconciliations", reconciliations)
    r.add_get("/api/v1/snapshot", live)
    for action in ACTIONS:
        r.add_post(f"/api/v1/{action}", control(action))
