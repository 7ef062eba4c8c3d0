"""An order manager wired to a real embedded exchange over HTTP, minus streams and strategy.

Market state is filled from the sim's own book (fresh receipt times), so the risk checks
see live prices; the ledger is a SQLite file under the test's tmp_path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from executor.config import load_config
from executor.core.filters import SymbolRules
from executor.core.ids import ClientIdFactory
from executor.exchange.binance_reports import SPOT
from executor.exchange.client import make_client
from executor.exchange.rest import RestGateway
from executor.market.state import MarketState
from executor.orders.manager import OrderManager, ResolveTiming
from executor.orders.tracker import OrderTracker
from executor.persistence.store import Store
from executor.reconcile.reconciler import Reconciler
from executor.risk.checks import KillSwitch, RiskChecker
from executor.strategy.base import StrategyContext
from tests.conftest import SimHandle

SYMBOLS = ("BTCUSDT", "ETHUSDT")
FAST = ResolveTiming(first_s=0.05, max_s=0.2, not_found_grace_s=0.3)


@dataclass
class Harness:
    sim: SimHandle
    store: Store
    gateway: RestGateway
    reconciler: Reconciler
    tracker: OrderTracker
    risk: RiskChecker
    manager: OrderManager
    market: MarketState
    rules: dict[str, SymbolRules]
    ctx: StrategyContext

    def refresh_market(self, symbol: str, mark: Decimal | None = None) -> tuple[Decimal, Decimal]:
        """Copy the sim's best bid/ask into market state (fresh); mark defaults to the mid."""
        t = self.sim.exchange.market.book(symbol).ticker()
        bid, ask = Decimal(t["b"]), Decimal(t["a"])
        st = self.market.get(symbol)
        u = (st.update_id if st else 0) + 1
        now, wall = time.monotonic(), time.time()
        self.market.apply_book(symbol, u, bid, Decimal(t["B"]), ask, Decimal(t["A"]), now, wall)
        m = mark if mark is not None else (bid + ask) / 2
        ev = (st.mark_event_ms if st else 0) + 1
        self.market.apply_mark(symbol, ev, m, m, m, Decimal(0), None, now, wall)
        return bid, ask

    def exchange_orders(self, client_id: str | None = None) -> list[Any]:
        out = [o for s in SYMBOLS for o in self.sim.exchange.engine.orders[s] if o.account_id == "default"]
        return [o for o in out if client_id is None or o.client_order_id == client_id]

    async def close(self) -> None:
        await self.manager.stop(2)
        await self.reconciler.stop()
        await self.gateway.close()
        await self.store.close()


async def build(sim: SimHandle, tmp_path: Path, *, timing: ResolveTiming = FAST,
                risk_overrides: dict[str, Any] | None = None) -> Harness:
    cfg = load_config(local=None)
    risk_cfg = replace(cfg.risk, kill_switch_file=str(tmp_path / "KILL"), **(risk_overrides or {}))
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")
    await store.start_run("test", "sim", "x")
    client = make_client(sim.endpoints, sim.creds, timeout_s=5.0)
    gateway = RestGateway(client, max_requests_per_s=200)
    await gateway.start()
    info = await gateway.exchange_info(SYMBOLS)
    rules = {s["symbol"]: SymbolRules.from_exchange_info(s) for s in info["symbols"]}
    tracker = OrderTracker(lambda s: rules[s].base_asset)
    reconciler = Reconciler(store, gateway, prefix="bx", translate=SPOT, symbols=SYMBOLS,
                            on_order_update=tracker.apply_update)
    await reconciler.start()
    market = MarketState(SYMBOLS)
    risk = RiskChecker(risk_cfg, kill_switch=KillSwitch(risk_cfg.kill_switch_file))
    ctx = StrategyContext(market, rules, tracker.views, tracker.inventory, stale_after_s=5.0)
    manager = OrderManager(gateway=gateway, store=store, reconciler=reconciler, tracker=tracker, risk=risk,
                           view=ctx, rules=rules, ids=ClientIdFactory("bx", "test1"), market=market,
                           timing=timing)
    h = Harness(sim, store, gateway, reconciler, tracker, risk, manager, market, rules, ctx)
    for s in SYMBOLS:
        h.refresh_market(s)
    return h
