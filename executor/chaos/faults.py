"""The chaos run's fault menu: every fault kind the embedded exchange's switchboard has.

Each entry switches one fault on through the exchange's own in-process switches (the same
ones ``/sim/faults/...`` translates to) and returns a short description for the log. A fault
that lasts (a stall) is lifted before the next one and by the exchange's ``faults.reset()``
at the end of the run.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from decimal import ROUND_DOWN, Decimal
from typing import Any

from executor.sim.exchange import SimExchange
from executor.sim.futures_account import attach

__all__ = ["FAULT_KINDS", "FUTURES_KINDS", "inject"]

Inject = Callable[[SimExchange, random.Random], Awaitable[str]]


async def _drop(kind: str, sim: SimExchange, _rng: random.Random) -> str:
    n = await sim.faults.connections.drop(kind)
    return f"dropped {n} {kind} connection(s)"


async def _server_shutdown(sim: SimExchange, _rng: random.Random) -> str:
    n = await sim.faults.connections.shutdown(None)
    return f"serverShutdown on {n} connection(s)"


async def _stall(sim: SimExchange, rng: random.Random) -> str:
    kind = rng.choice(("ws_api", "market", "private"))
    n = sim.faults.connections.stall(kind)
    return f"stalled {n} {kind} connection(s) (lifted at the next fault)"


async def _expire_listen_key(sim: SimExchange, _rng: random.Random) -> str:
    keys = attach(sim).listen_keys.expire_now(None, None)
    return f"expired {len(keys)} listenKey(s)"


async def _order_unknown(sim: SimExchange, rng: random.Random) -> str:
    status, code = rng.choice(((503, None), (502, None), (400, -1007)))
    placed = rng.random() < 0.6
    sim.faults.fail_orders(1, http_status=status, code=code, placed=placed)
    return f"next order answers {status}{f' {code}' if code else ''} ({'placed' if placed else 'not placed'})"


async def _futures_order_unknown(sim: SimExchange, rng: random.Random) -> str:
    status = rng.choice((503, 502, 500))
    placed = rng.random() < 0.6
    sim.faults.fail_orders(1, http_status=status, placed=placed, venue="futures")
    return f"next POST /fapi/v1/order answers {status} ({'placed' if placed else 'not placed'})"


async def _adl(sim: SimExchange, rng: random.Random) -> str:
    # Auto-deleveraging: the exchange closes all or half of an open perpetual position by its
    # own order ("adl_autoclose"); the bot must count it and its strategy re-hedge or unwind.
    side = sim.futures
    for account, wallet in sorted(side.wallets.items()):
        for symbol, pos in sorted(wallet.positions.items()):
            amount = pos.amount
            if amount == 0:
                continue
            half = (abs(amount) / 2).quantize(Decimal("0.001"), ROUND_DOWN)
            qty = abs(amount) if rng.random() < 0.5 or half == 0 else half
            side.orders.auto_deleverage(account, symbol, qty)
            return f"ADL closed {qty} of {account}'s {symbol} position {amount}"
    return "ADL: no open perpetual position"


async def _late_order(sim: SimExchange, rng: random.Random) -> str:
    delay_ms = rng.randint(500, 4000)
    status = rng.choice((None, 503))
    sim.faults.late_order(1, delay_ms, http_status=status)
    lost = "connection cut" if status is None else f"answered {status}"
    return f"next order accepted, its answer lost ({lost}), visible only after {delay_ms} ms"


async def _hold(sim: SimExchange, rng: random.Random) -> str:
    seconds = round(rng.uniform(1.0, 4.0), 1)
    sim.faults.hold(1, seconds)
    return f"next REST response held {seconds} s"


async def _burst_429(sim: SimExchange, _rng: random.Random) -> str:
    sim.faults.burst_429(1)
    return "next REST request answers 429"


async def _waf(sim: SimExchange, rng: random.Random) -> str:
    n = rng.randint(1, 3)
    sim.faults.waf_block(n)
    return f"next {n} REST request(s) answer a WAF 403"


async def _clock_step(sim: SimExchange, rng: random.Random) -> str:
    # The exchange's clock steps forward past the bot's recvWindow: to the bot, its own clock
    # fell behind, so its signed requests meet -1021 until it re-syncs. A step forward, not
    # the switchboard's reversible skew: Binance's time never runs backwards, and the
    # ledger's exchange times (and ``audit verify``'s order of events) rely on that.
    ms = rng.randint(5_500, 9_000)
    sim.clock.advance(ms)
    return f"exchange clock stepped {ms} ms forward"


async def _events(kind: str, sim: SimExchange, rng: random.Random) -> str:
    n = rng.randint(1, 6)
    if kind == "duplicate":
        sim.faults.duplicate_events(n)
    elif kind == "reorder":
        sim.faults.reorder_events(n)
    else:
        sim.faults.delay_events(n, rng.randint(200, 2000))
    return f"{kind} the next {n} user event(s)"


def _bind(fn: Callable[..., Awaitable[str]], *args: Any) -> Inject:
    async def run(sim: SimExchange, rng: random.Random) -> str:
        return await fn(*args, sim, rng)
    return run


FAULT_KINDS: dict[str, Inject] = {
    "drop_market": _bind(_drop, "market"),
    "drop_user_stream": _bind(_drop, "ws_api"),
    "drop_futures_market": _bind(_drop, "futures_market"),
    "drop_futures_user": _bind(_drop, "private"),
    "server_shutdown": _server_shutdown,
    "stall": _stall,
    "expire_listen_key": _expire_listen_key,
    "order_unknown": _order_unknown,
    "futures_order_unknown": _futures_order_unknown,
    "adl": _adl,
    "late_order": _late_order,
    "hold_response": _hold,
    "rate_limit_429": _burst_429,
    "waf_403": _waf,
    "clock_step": _clock_step,
    "duplicate_events": _bind(_events, "duplicate"),
    "reorder_events": _bind(_events, "reorder"),
    "delay_events": _bind(_events, "delay"),
}


# Faults aimed at the futures side: a futures cycle draws from these half of the time.
FUTURES_KINDS = ("drop_futures_user", "expire_listen_key", "futures_order_unknown", "drop_futures_market",
                 "adl")


async def inject(sim: SimExchange, rng: random.Random, kind: str | None = None, *,
                 futures: bool = False) -> tuple[str, str]:
    """Lift the lasting fault (a stall), then switch on one fault (``kind`` or a random one;
    ``futures``: half of the time one of ``FUTURES_KINDS``); returns (kind, description)."""
    sim.faults.connections.unstall()
    if kind is None and futures and rng.random() < 0.5:
        kind = rng.choice(FUTURES_KINDS)
    kind = kind or rng.choice(sorted(FAULT_KINDS))
    return kind, await FAULT_KINDS[kind](sim, rng)
