"""``run.py db copy``: a ledger moves SQLite -> PostgreSQL -> SQLite with every row, exact
money and identical audits; an interrupted copy resumes; a foreign destination is refused.
The PostgreSQL legs skip unless ``BX_TEST_PG_URL`` names a server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from executor.cli import main
from executor.persistence.copy import CopyError, audits_of, copy_ledger
from executor.persistence.db import create_engine
from executor.persistence.models import Run
from tests.audit.scenario import build_scenario
from tests.ledger_backends import SKIP_NO_PG, PgDatabases


async def _rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    from executor.persistence.copy import tables

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            out = {}
            for t in tables():
                order = list(t.primary_key.columns)
                out[t.name] = [tuple(r) for r in await conn.execute(sa.select(t).order_by(*order))]
            return out
    finally:
        await engine.dispose()


@pytest.fixture
async def source(tmp_path: Path) -> str:
    return (await build_scenario(tmp_path / "source.db")).url


async def test_sqlite_to_postgresql_and_back_keeps_every_row_and_the_audit(
    source: str, tmp_path: Path, pg_databases: PgDatabases | None, capsys: pytest.CaptureFixture[str]
) -> None:
    if pg_databases is None:
        pytest.skip(SKIP_NO_PG)
    pg = await pg_databases.create(migrated=False)
    back = f"sqlite+aiosqlite:///{tmp_path / 'back.db'}"
    res = await copy_ledger(source, pg, batch=3)
    assert res.counts_agree and res.rows["fills"] == 5
    res = await copy_ledger(pg, back, batch=2)
    assert res.counts_agree
    original, there, returned = await _rows(source), await _rows(pg), await _rows(back)
    assert there == original  # Decimals compare by value: NUMERIC holds the same numbers
    assert returned == original
    assert audits_of(back) == audits_of(pg) == audits_of(source)
    # The id sequences moved past the copied ids: the bot can keep writing on the server.
    from executor.persistence.store import Store

    store = await Store.open(pg)
    try:
        assert await store.add_fill("BTCUSDT", 999_999, "1", "1", "stream")
    finally:
        await store.close()


def test_cli_copy_sqlite_to_sqlite_and_resume(
    source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = f"sqlite+aiosqlite:///{tmp_path / 'dest.db'}"

    class Stop(Exception):
        pass

    seen: list[str] = []

    def interrupt(line: str) -> None:
        seen.append(line)
        if line.startswith("fills:"):
            raise Stop  # as if the process died after the first committed batch of fills

    with pytest.raises(Stop):
        asyncio.run(copy_ledger(source, dest, batch=2, progress=interrupt))
    partial = asyncio.run(_rows(dest))
    assert 0 < len(partial["fills"]) < 5
    code = main(["db", "copy", "--from", source, "--to", dest, "--batch", "2"])
    out = capsys.readouterr()
    assert code == 0, out
    assert "agree on both sides" in out.out and "verify is clean" in out.out
    assert "fills: 5/5 rows (100%)" in out.err
    assert asyncio.run(_rows(dest)) == asyncio.run(_rows(source))
    # Copying again changes nothing.
    assert main(["db", "copy", "--from", source, "--to", dest]) == 0
    assert "copied 0 rows" in capsys.readouterr().out


def test_foreign_destination_and_bad_input_are_refused(
    source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def another_ledger() -> str:
        other = await build_scenario(tmp_path / "other.db")
        # The scenario is deterministic: give this one another run history.
        engine = create_engine(other.url)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.update(Run.__table__).values(config_hash="another"))
        finally:
            await engine.dispose()
        return other.url

    other = asyncio.run(another_ledger())
    with pytest.raises(CopyError, match="another ledger"):
        asyncio.run(copy_ledger(source, other))
    assert main(["db", "copy", "--from", source, "--to", source]) == 2
    assert main(["db", "copy", "--from", f"sqlite+aiosqlite:///{tmp_path / 'none.db'}",
                 "--to", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"]) == 2
    assert main(["db", "copy", "--from", "mysql://x/y", "--to", source]) == 2
    err = capsys.readouterr().err
    assert "same ledger" in err and "no ledger" in err and "database url must be" in err
    assert "Traceback" not in err
