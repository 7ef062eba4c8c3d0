"""``run.py chaos``: a short run passes (the real bot as child processes, SIGKILLed and
restarted under random faults, its ledger equal to the exchange's ground truth), and the
comparison it relies on reports each kind of difference a broken ledger would have."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from executor.chaos.runner import ChaosOptions, run_chaos
from executor.chaos.truth import compare_ledger
from executor.persistence.db import database_path
from executor.sim.accounts import DEFAULT_ID
from tests.conftest import SimHandle
from tests.scenarios.harness import SIM_OPTIONS, BotRun, scenario_config

pytestmark = pytest.mark.timeout(180)


async def test_a_short_chaos_run_passes(tmp_path: Path) -> None:
    """Cycles alternate between the spot bot and the cash-and-carry bot (spot and perpetual
    legs), each SIGKILLed or stopped under faults, then each has a last clean run."""
    out = io.StringIO()
    opts = ChaosOptions(minutes=0.25, seed=11, workdir=tmp_path, up_s=(2.0, 4.0), fault_gap_s=(0.5, 1.5),
                        down_s=(0.1, 0.5), final_run_s=4.0, futures_share=0.5, stop_timeout_s=10.0)
    report = await run_chaos(opts, out)
    text = report.render()
    assert report.ok, text + "\n" + out.getvalue()[-3000:]
    finals = 2  # the last clean run of each bot
    assert report.cycles >= 4 and report.kills + report.graceful == report.cycles - finals, text
    assert 1 <= report.futures_cycles - 1 < report.cycles - finals, text  # both bots had cycles
    assert sum(report.faults.values()) >= 3
    assert report.comparison is not None and report.comparison.trades > 0
    f = report.futures_comparison
    assert f is not None and f.futures_trades > 0 and f.futures_orders > 0, text
    assert "futures bot: cycles" in text and "RESULT: PASS" in text


@pytest.fixture
async def runs() -> AsyncIterator[list[BotRun]]:
    made: list[BotRun] = []
    yield made
    for run in made:
        await run.close()


@pytest.mark.sim_options(**SIM_OPTIONS)
async def test_the_comparison_finds_every_kind_of_difference(sim: SimHandle, tmp_path: Path,
                                                             runs: list[BotRun]) -> None:
    cfg = scenario_config(tmp_path)
    run = BotRun(sim, cfg)
    runs.append(run)
    await run.start()
    await run.trade(3)
    assert await run.stop() == "clean"
    url = cfg.database.url
    clean = await compare_ledger(sim.exchange, url, DEFAULT_ID)
    assert clean.ok, clean.examples
    with sqlite3.connect(database_path(url)) as conn:
        first, second = [r[0] for r in conn.execute("SELECT id FROM fills ORDER BY id LIMIT 2")]
        conn.execute("DELETE FROM fills WHERE id = ?", (first,))
        conn.execute("UPDATE fills SET price = '1' WHERE id = ?", (second,))
        conn.execute("UPDATE balances SET free = '0.5' WHERE asset = 'BTC'")
        # An order of ours the exchange never saw, not marked as never placed.
        cols = [r[1] for r in conn.execute("PRAGMA table_info(orders)")
                if r[1] not in ("id", "client_order_id", "exchange_order_id", "status")]
        conn.execute(f"INSERT INTO orders (client_order_id, status, {', '.join(cols)}) "
                     f"SELECT client_order_id || '-ghost', 'NEW', {', '.join(cols)} FROM orders "
                     "WHERE external = 0 ORDER BY id LIMIT 1")
    broken = await compare_ledger(sim.exchange, url, DEFAULT_ID)
    assert (broken.missing, broken.mismatched, broken.balance_diffs, broken.orders_phantom) == (1, 1, 1, 1), \
        broken.examples
    assert not broken.ok
