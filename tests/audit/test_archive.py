"""``run.py db archive``: old runs' rows move to an archive file, and the audit (report and
verify) gives the same answer before and after, reading the ledger and its archive."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from executor.cli import main
from executor.persistence.store import Store
from tests.audit.scenario import T0, SetClock, build_scenario

LATER = T0 + 86_400_000  # the second run, a day later


async def second_run(url: str) -> int:
    """Run 2: one buy filled, then a snapshot and a reconciliation; left open (still running)."""
    clock = SetClock()
    clock.ms = LATER
    store = await Store.open(url, clock=clock)
    try:
        run_id = await store.start_run("0.1.0", "sim", "cafe", at_ms=LATER)
        await store.record_order_intent("H", "BTCUSDT", "BUY", "LIMIT", quantity="0.5", price="100",
                                        time_in_force="GTC", decision_bid="99", decision_ask="101",
                                        decision_ms=LATER, created_ms=LATER)
        await store.mark_order_sent("H", at_ms=LATER + 1)
        clock.ms = LATER + 10
        await store.update_order_status("H", "NEW", source="order_response", exchange_order_id=21,
                                        event_ms=LATER + 10)
        await store.add_fill("BTCUSDT", 21, "100", "0.5", "stream", commission="0.05",
                             commission_asset="USDT", is_maker=True, trade_ms=LATER + 20, side="BUY",
                             client_order_id="H", exchange_order_id=21, received_ms=LATER + 25)
        clock.ms = LATER + 30
        await store.update_order_status("H", "FILLED", source="stream", exchange_order_id=21,
                                        executed_qty="0.5", cum_quote_qty="50", event_ms=LATER + 30)
        await store.set_balances([("USDT", "1031.85", "0"), ("BTC", "1.798", "0")], "stream",
                                 f"E={LATER + 20},u={LATER + 20}", event_ms=LATER + 20,
                                 kind="outboundAccountPosition")
        rid = await store.start_reconciliation("periodic", at_ms=LATER + 40)
        await store.finish_reconciliation(rid, found=0, fixed=0, counts={"orders": 1}, discrepancies=[],
                                          at_ms=LATER + 50)
    finally:
        await store.close()
    return run_id


def counts(path: Path) -> dict[str, int]:
    con = sqlite3.connect(path)
    try:
        tables = ("runs", "orders", "order_events", "fills", "balance_events", "reconciliation_runs")
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        con.close()


def audit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code = main(["audit", *args, "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    out.pop("generated_ms", None)  # when the report was made, not what it says
    return code, out


@pytest.mark.parametrize("checkpointed", [False, True])
def test_archive_moves_old_runs_and_audit_totals_do_not_change(tmp_path: Path, checkpointed: bool,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # Synchronous: the commands run their own event loops, as from the shell.
    built = asyncio.run(build_scenario(tmp_path / "ledger.db"))
    run2 = asyncio.run(second_run(built.url))
    db = ["--db", built.url]
    if checkpointed:  # the audit then folds from its checkpoint plus newer rows
        assert main(["db", "checkpoint", *db, "--all"]) == 0
        capsys.readouterr()
    code, report_before = audit(capsys, "report", *db)
    assert code == 0
    code_v, verify_before = audit(capsys, "verify", *db)
    before = counts(built.path)

    cutoff = str(T0 + 60_000)  # run 1 stopped at T0 + 7 s; run 2 is still running
    assert main(["db", "archive", "--before", cutoff, *db]) == 0
    said = capsys.readouterr().out
    assert "runs stopped before" in said and ": 1;" in said
    archive = tmp_path / "ledger-archive.db"
    after, moved = counts(built.path), counts(archive)
    # Run 1's rows left the ledger (except each table's newest row, kept so no id is reused).
    assert after["orders"] == 1 and after["fills"] == 1 and after["runs"] == 1
    assert moved["orders"] == before["orders"] - 1 and moved["fills"] == before["fills"] - 1
    assert moved["runs"] == 1
    # Nothing lost, nothing doubled: the two files together hold every row once.
    con = sqlite3.connect(built.path)
    con.execute("ATTACH ? AS a", (str(archive),))
    for table, n in before.items():
        union = con.execute(f"SELECT count(*) FROM (SELECT id FROM main.{table} UNION "
                            f"SELECT id FROM a.{table})").fetchone()[0]
        assert union == n, table
    con.close()

    # The audit reads the archive beside the ledger by itself, and with --archive.
    code, report_after = audit(capsys, "report", *db)
    assert code == 0 and report_after == report_before
    code, report_explicit = audit(capsys, "report", *db, "--archive", str(archive))
    assert report_explicit == report_before
    assert audit(capsys, "verify", *db) == (code_v, verify_before)
    assert audit(capsys, "report", *db, "--run", str(run2))[1] == \
        audit(capsys, "report", *db, "--run", str(run2), "--archive", str(archive))[1]

    # Again: idempotent, and the rows kept back move once newer rows exist.
    assert main(["db", "archive", "--before", cutoff, *db]) == 0
    capsys.readouterr()
    assert counts(built.path) == after
    assert audit(capsys, "report", *db)[1] == report_before


def test_archive_refuses_another_ledgers_archive_and_bad_dates(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    one = asyncio.run(build_scenario(tmp_path / "one.db"))
    two = asyncio.run(build_scenario(tmp_path / "two.db"))
    shared = tmp_path / "shared-archive.db"
    assert main(["db", "archive", "--before", str(T0 + 60_000), "--db", one.url, "--to", str(shared)]) == 0
    capsys.readouterr()
    assert main(["db", "archive", "--before", str(T0 + 60_000), "--db", two.url, "--to", str(shared)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("db archive:") and "another ledger" in err and len(err.splitlines()) == 1
    assert main(["db", "archive", "--before", "yesterday-ish", "--db", two.url]) == 1
    assert "--before" in capsys.readouterr().err
