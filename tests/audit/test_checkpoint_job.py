"""``run.py db checkpoint`` and the scheduled job's child process, on the hand-computed ledger."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from executor.audit.checkpoint_job import run_in_child
from executor.audit.checkpoints import KIND_REPORT, load_checkpoint
from executor.audit.query import AuditDB, Scope
from executor.audit.report import build_report
from tests.audit.scenario import Built

ROOT = Path(__file__).resolve().parents[2]


def _db(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "db", "checkpoint", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_db_checkpoint_folds_everything_and_the_audit_reads_from_it(scenario: Built) -> None:
    p = _db("--db", scenario.url, "--all")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("report checkpoint at 2026-01-01") and "from the start" in p.stdout
    with AuditDB(scenario.path) as db:
        cp = load_checkpoint(db.conn, KIND_REPORT)
        assert cp is not None and cp.max_fill_id == 5 and cp.state["first_unfolded_fill"] == 6
        fresh = build_report(db, Scope(), use_checkpoint=False)
        resumed = build_report(db, Scope())
    assert any("folded from the audit checkpoint" in n and "plus 0 later fills" in n for n in resumed.notes)
    assert replace(resumed, generated_ms=0, notes=[]) == replace(fresh, generated_ms=0, notes=[])
    again = _db("--db", scenario.url, "--all")
    assert again.returncode == 0 and "continued, +0 fills" in again.stdout


async def test_the_job_runs_it_in_a_child_process(scenario: Built) -> None:
    # The scenario's trades are months old: all settled.
    out = await run_in_child(scenario.url, settle_s=0)
    assert out.startswith("report checkpoint at") and "from the start, +5 fills, +7 orders" in out


def test_a_missing_ledger_is_a_clear_error(tmp_path: Path) -> None:
    p = _db("--db", f"sqlite+aiosqlite:///{tmp_path / 'nothing.db'}")
    assert p.returncode == 2 and "no database at" in p.stderr
