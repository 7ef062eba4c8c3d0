"""The bot keeps the audit checkpoint as it trades: the scheduled job folds what has settled
(fills before the last successful reconciliation) in a child process, and the audit of the
ledger afterwards, resumed from that checkpoint, equals a fold of every row."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from executor.audit.checkpoints import KIND_REPORT, load_checkpoint
from executor.audit.query import AuditDB, Scope
from executor.audit.report import build_report
from tests.conftest import SimHandle
from tests.scenarios.harness import SIM_OPTIONS, BotRun, scenario_config, until


def _folded_fills(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cp = load_checkpoint(conn, KIND_REPORT)
    finally:
        conn.close()
    if cp is None:
        return 0
    return sum(g["f"][0] for rid, _sym, g in cp.state["fold"]["groups"] if rid is None)


@pytest.mark.sim_options(**SIM_OPTIONS)
async def test_the_bots_checkpoint_job_keeps_the_audit_exact(sim: SimHandle, tmp_path: Path) -> None:
    cfg = scenario_config(
        tmp_path, {"scheduler": {"reconcile_s": 1, "audit_checkpoint_s": 1, "audit_settle_s": 0}}
    )
    path = tmp_path / "ledger.db"
    run = BotRun(sim, cfg)
    try:
        bot = await run.start()
        await run.trade(3)
        assert bot.scheduler is not None
        job = bot.scheduler.stats["audit_checkpoint"]
        await until(lambda: job.ok >= 1 and _folded_fills(path) >= 1, 30, "a checkpoint holding fills")
        assert job.errors == 0 and "report checkpoint at" in (job.last_result or "")
        await run.trade(2)
        assert await run.stop() == "clean"
    finally:
        await run.close()
    with AuditDB(path) as db:
        fresh = build_report(db, Scope(), use_checkpoint=False)
        resumed = build_report(db, Scope())
    assert any("folded from the audit checkpoint" in n for n in resumed.notes), resumed.notes
    assert replace(resumed, generated_ms=0, notes=[]) == replace(fresh, generated_ms=0, notes=[])
    assert resumed.symbols[0].fills >= 5
