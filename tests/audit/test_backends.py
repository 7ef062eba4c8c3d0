"""The audit reads a PostgreSQL ledger through its SQLAlchemy reader (``audit/reader.py``) and
gives the same report and verification as on SQLite, to the digit."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from executor.audit.query import AuditDB, Scope
from executor.audit.render import report_dict
from executor.audit.report import build_report
from executor.audit.verify import verify, verify_dict
from tests.audit.scenario import Built, build_scenario
from tests.ledger_backends import SKIP_NO_PG, PgDatabases


def audits(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(report, verification) of the ledger at ``url``, without where it was read from."""
    with AuditDB.from_url(url) as db:
        rep = report_dict(build_report(db, Scope(), use_checkpoint=False))
        ver = verify_dict(verify(db, Scope(), use_checkpoint=False))
    rep.pop("database", None)
    rep.pop("generated_ms", None)
    return rep, ver


@pytest.fixture
async def pg_scenario(pg_databases: PgDatabases | None, tmp_path: Path) -> Built:
    if pg_databases is None:
        pytest.skip(SKIP_NO_PG)
    url = await pg_databases.create(migrated=False)
    return await build_scenario(tmp_path / "unused.db", url)


async def test_report_and_verify_agree_across_backends(scenario: Built, pg_scenario: Built) -> None:
    sqlite_rep, sqlite_ver = audits(scenario.url)
    pg_rep, pg_ver = audits(pg_scenario.url)
    assert pg_rep == sqlite_rep
    assert pg_ver == sqlite_ver
    assert pg_ver["ok"] is True


async def test_hand_computed_pnl_on_postgresql(pg_scenario: Built) -> None:
    with AuditDB.from_url(pg_scenario.url) as db:
        assert not db.sqlite
        rep = build_report(db, Scope())
    btc = next(r for r in rep.symbols if r.symbol == "BTCUSDT")
    assert (btc.bought_qty, btc.bought_quote) == (D("2.0"), D("228"))
    assert btc.realized_fifo == D("69.264") and btc.realized_avg == D("65.092")


def test_unreachable_server_is_one_audit_error() -> None:
    from executor.audit.query import AuditError

    with pytest.raises(AuditError, match="cannot read"):
        AuditDB.from_url("postgresql+asyncpg://nobody:pw@127.0.0.1:1/none")


async def test_checkpoints_on_postgresql_change_no_result(pg_scenario: Built) -> None:
    """The checkpoint writer's PostgreSQL twin (``SqlReader(readonly=False)``): checkpoints
    written on the server give the same report and verification as folding from the start."""
    from executor.audit.checkpoint_job import write_checkpoints
    from executor.audit.checkpoints import KIND_REPORT, load_checkpoint

    cold_rep, cold_ver = audits(pg_scenario.url)
    lines = write_checkpoints(pg_scenario.url, everything=True)
    assert len(lines) == 2 and "not written" not in lines[1], lines
    with AuditDB.from_url(pg_scenario.url) as db:
        assert load_checkpoint(db.conn, KIND_REPORT) is not None
        rep = report_dict(build_report(db, Scope()))
        ver = verify_dict(verify(db, Scope()))
    rep.pop("database", None)
    rep.pop("generated_ms", None)
    assert any("folded from the audit checkpoint" in n for n in rep.pop("notes"))
    assert any("from the verify checkpoint" in n for n in ver.pop("notes"))
    cold_rep.pop("notes")
    cold_ver.pop("notes")
    assert (rep, ver) == (cold_rep, cold_ver)
    # Written again on top of the first ones: still the same.
    write_checkpoints(pg_scenario.url, everything=True)
    with AuditDB.from_url(pg_scenario.url) as db:
        again = verify_dict(verify(db, Scope()))
    again.pop("notes")
    assert again == cold_ver


async def test_scheduled_checkpoint_job_gets_the_url_outside_its_command_line(pg_scenario: Built) -> None:
    from executor.audit.checkpoint_job import run_in_child

    out = await run_in_child(pg_scenario.url, settle_s=0)
    assert "report checkpoint at" in out and "verify checkpoint at" in out


async def test_postgresql_audit_reads_spot_fills_only(pg_scenario: Built) -> None:
    """As on SQLite, the audit's ``fills`` leaves out USD-M futures fills ("UM:..."), and
    ``main.fills`` (the audit carry's name for the table) still has them."""
    from executor.audit.reader import SqlReader
    from executor.persistence.models import Fill

    cols = [c.name for c in Fill.__table__.columns if c.name != "id"]
    picked = ", ".join("'UM:' || symbol" if c == "symbol" else c for c in cols)
    with SqlReader(pg_scenario.url, readonly=False) as writer:
        writer.execute(f"INSERT INTO fills ({', '.join(cols)}) SELECT {picked} FROM fills "
                       "ORDER BY id LIMIT 1")
    writer.close()
    with AuditDB.from_url(pg_scenario.url) as db:
        spot = db.conn.execute("SELECT count(*) FROM fills WHERE symbol LIKE 'UM:%'").fetchone()
        every = db.conn.execute("SELECT count(*) FROM main.fills WHERE symbol LIKE 'UM:%'").fetchone()
    assert spot == (0,) and every == (1,)


async def test_columns_by_copy_are_the_rows_as_text(pg_scenario: Built) -> None:
    """``SqlReader.columns`` (COPY, split as text) gives each column of a SELECT of text as
    ``rows`` gives it, NULL as ''; None when COPY had to escape a value (a backslash, tab,
    newline or other control character in it), so that the caller reads ``rows`` instead;
    no rows: empty columns."""
    sql = ("SELECT CAST(price AS text), side, CASE WHEN is_maker THEN CAST(trade_ms AS text) END "
           "FROM fills WHERE symbol = ? ORDER BY id")
    with AuditDB.from_url(pg_scenario.url) as db:
        reader: Any = db.conn
        rows = reader.rows(sql, ["BTCUSDT"])
        cols = reader.columns(sql, ["BTCUSDT"], 3)
        assert rows and cols == [[r[i] or "" for r in rows] for i in range(3)]
        assert "" in cols[2] and any(cols[2])  # both NULL and values
        assert reader.columns(sql, ["NOSUCH"], 3) == [[], [], []]
        for odd in ("a\\b", "a\tb", "a\nb", "a\x0bb"):
            assert reader.columns("SELECT CAST(? AS text), 'x'", [odd], 2) is None
        assert reader.columns("SELECT CAST(? AS text), 'x'", ["a b"], 2) == [["a b"], ["x"]]


async def test_command_line_on_postgresql(pg_scenario: Built, scenario: Built) -> None:
    """``run.py audit [verify] --db postgresql+asyncpg://…`` as a shell runs it: SQLAlchemy is
    loaded there on demand (the SQLite start-up no longer imports it) and the tables, identity
    line included, are SQLite's apart from the line naming the ledger."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]

    def run(*args: str) -> str:
        p = subprocess.run([sys.executable, str(root / "run.py"), "audit", *args], capture_output=True,
                           text=True, timeout=120, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
        assert p.returncode == 0, p.stderr
        return p.stdout

    def same(text: str) -> list[str]:
        return [x for x in text.splitlines() if "audit of" not in x and "generated" not in x]

    assert run("verify", "--db", pg_scenario.url) == run("verify", "--db", scenario.url)
    assert same(run("--db", pg_scenario.url)) == same(run("--db", scenario.url))


async def test_fast_verify_keeps_each_quantitys_exponent_on_postgresql(
    pg_databases: PgDatabases | None, tmp_path: Path
) -> None:
    """``verify_fast`` on PostgreSQL reads quantities as Decimals: two fills of 0.5 and 0.50
    (equal values, NUMERIC keeps their scales) each add their own exponent, so the derived
    balance is the reference's 1.00, not 1.0 (a cache of ``sign * qty`` keyed by value would
    give both the first one's exponent). Forced onto the fast path (``set_based=False``), with
    no recorded balance after the fills, so the fast path confirms and its totals are used."""
    if pg_databases is None:
        pytest.skip(SKIP_NO_PG)
    from executor.audit.verify import verify_reference
    from executor.persistence.store import Store
    from tests.audit.scenario import T0

    url = await pg_databases.create(migrated=False)
    store = await Store.open(url)
    try:
        await store.start_run("0.1.0", "sim", "cafe", at_ms=T0)
        await store.set_balances([("USDT", "1000", "0"), ("ETH", "0", "0")], "rest_snapshot",
                                 f"updateTime={T0}", event_ms=T0, kind="rest_snapshot", force=True)
        for tid, qty in ((1, "0.5"), (2, "0.50")):
            await store.add_fill("ETHUSDT", tid, "100", qty, "stream", quote_qty="50", commission="0.05",
                                 commission_asset="USDT", is_maker=True, trade_ms=T0 + 10 * tid,
                                 side="BUY", received_ms=T0 + 10 * tid + 1)
    finally:
        await store.close()
    with AuditDB.from_url(url) as db:
        fast = verify_dict(verify(db, Scope(), use_checkpoint=False, set_based=False))
        ref = verify_dict(verify_reference(db, Scope()))
    assert fast == ref
    assert fast["derived_balances"]["ETH"] == "1.00"
