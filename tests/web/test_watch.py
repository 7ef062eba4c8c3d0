"""The ledger watch: its live figures equal ``figures.pnl`` over the ledger's fills, also
when a fill older than those already folded arrives late (the fold starts again), and its
listeners hear of each new fill and finished reconciliation once."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from executor.figures import pnl, positions
from executor.oversight import watch as watch_module
from executor.oversight.watch import LedgerWatch
from executor.persistence.store import Store

PAIRS = {"BTCUSDT": ("BTC", "USDT")}
DAY = 86_400_000
now = 10 * DAY + 5_000


async def test_live_figures_equal_the_batch_figures_with_late_fills(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch_module, "PAGE", 2)  # folding afresh pages through the ledger
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}", clock=lambda: now)
    marks = {"BTCUSDT": Decimal("105")}
    try:
        run_id = await store.start_run("t", "sim", "x")

        async def add(trade_id: int, t: int | None, side: str, price: str, qty: str,
                      fee: str = "0.001") -> None:
            await store.add_fill("BTCUSDT", trade_id, Decimal(price), Decimal(qty), "stream", side=side,
                                 trade_ms=t, commission=Decimal(fee), commission_asset="BTC")

        await add(1, 10 * DAY - 1_000, "BUY", "100", "1")  # yesterday
        await add(5, 10 * DAY - 2_000, "BUY", "99", "0.2")
        await add(6, None, "BUY", "101", "0.1")  # no trade time: placed by arrival (now)
        await add(7, 10 * DAY + 4_000, "SELL", "104", "0.3")
        watch = LedgerWatch(store, PAIRS, run_id, lambda: marks, clock_ms=lambda: now, equity_every_s=0)
        await watch.start()
        heard: list[int] = []
        recons: list[int] = []
        watch.on_fill.append(lambda f: heard.append(f.trade_id))
        watch.on_reconciliation.append(lambda r: recons.append(r["id"]))
        await add(3, 10 * DAY + 3_000, "SELL", "110", "0.5")
        await watch.poll()
        await add(2, 10 * DAY + 1_000, "BUY", "90", "1")  # arrives late, sorts before trade 3
        rid = await store.start_reconciliation("test")
        await store.finish_reconciliation(rid, found=2)
        await watch.poll()
        await watch.poll()
        fills = await store.fills()
        for period, kw in (("all", {}), ("run", {"run_id": run_id}), ("day", {"since_ms": 10 * DAY})):
            assert watch.pnl(period) == pnl(fills, marks, PAIRS, period=period, **kw), period
        assert watch.pnl("day").fills == 4 and watch.pnl("all").fills == 6
        assert watch.positions == positions(fills, PAIRS)
        assert heard == [3, 2] and recons == [rid]
        assert [f.trade_id for f in watch.last_fills(2)] == [6, 7]
        await watch.stop()
    finally:
        await store.close()
