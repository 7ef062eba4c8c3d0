"""The ledger watch: its live figures equal ``figures.pnl`` over the ledger's fills, also
when a fill older than those already folded arrives late (the fold starts again), and its
listeners hear of each new fill and finished reconciliation once."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from executor.figures import pnl, positions
from executor.persistence.store import Store
from executor.watch import LedgerWatch

PAIRS = {"BTCUSDT": ("BTC", "USDT")}
DAY = 86_400_000


async def test_live_figures_equal_the_batch_figures_with_late_fills(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")
    marks = {"BTCUSDT": Decimal("105")}
    now = 10 * DAY + 5_000
    try:
        run_id = await store.start_run("t", "sim", "x")

        async def add(trade_id: int, t: int, side: str, price: str, qty: str, fee: str = "0.001") -> None:
            await store.add_fill("BTCUSDT", trade_id, Decimal(price), Decimal(qty), "stream", side=side,
                                 trade_ms=t, commission=Decimal(fee), commission_asset="BTC")

        await add(1, 10 * DAY - 1_000, "BUY", "100", "1")  # yesterday
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
        assert watch.pnl("day").fills == 2 and watch.pnl("all").fills == 3
        assert watch.positions == positions(fills, PAIRS)
        assert heard == [3, 2] and recons == [rid]
        assert [f.trade_id for f in watch.last_fills(2)] == [3, 2]
        await watch.stop()
    finally:
        await store.close()
