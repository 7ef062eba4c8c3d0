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
