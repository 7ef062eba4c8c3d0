"""The schema comes from the migrations, matches the models, and is guarded on start."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from executor.config import ROOT
from executor.persistence.db import DatabaseUrlError, create_engine
from executor.persistence.migrate import (
    SchemaTooNewError,
    SchemaUnmanagedError,
    ensure_schema,
    head_revision,
    schema_state,
)
from executor.persistence.models import Base
from executor.persistence.store import Store
from tests.persistence.conftest import url_for


@pytest.fixture
def ledger_backend() -> str:
    """These tests check SQLite's own settings and files: SQLite only."""
    return "sqlite"

def _schema_sql(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall())


async def test_migrated_schema_equals_models(db_url: str) -> None:
    state = await ensure_schema(db_url)
    assert state.current == (head_revision(),)
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:

            def diff(sync_conn: sa.Connection) -> list:
                ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return compare_metadata(ctx, Base.metadata)

            assert await conn.run_sync(diff) == []
            tables = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def _normalised_schema(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (column definitions in order, set of table constraints) for tables; indexes as SQL."""
    out: dict[str, tuple[str, frozenset[str]]] = {}
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name != 'alembic_version'"
        ).fetchall()
    for kind, name, sql in rows:
        sql = re.sub(r"\s+", " ", sql).strip()
        if kind != "table":
            out[name] = (sql, frozenset())
            continue
        body = sql[sql.index("(") + 1 : sql.rindex(")")].strip()
        columns, *constraints = re.split(r",\s*(?=CONSTRAINT )", body)
        out[name] = (columns, frozenset(c.strip() for c in constraints))
    return out


async def test_migrated_schema_is_exactly_create_all(db_url: str, tmp_path: Path) -> None:
    """Stronger than compare_metadata: CHECK constraints, names, types and column order too."""
    await ensure_schema(db_url)
    scratch = tmp_path / "create_all.db"
    engine = sa.create_engine(f"sqlite:///{scratch}")
    Base.metadata.create_all(engine)
    engine.dispose()
    assert _normalised_schema(tmp_path / "ledger" / "test.db") == _normalised_schema(scratch)


async def test_models_alone_would_differ_from_an_empty_db(tmp_path: Path) -> None:
    """Guard the guard: compare_metadata does report a missing table and index."""
    engine = create_engine(url_for(tmp_path / "empty.db"))
    try:
        async with engine.connect() as conn:

            def diff(sync_conn: sa.Connection) -> list:
                sync_conn.exec_driver_sql("CREATE TABLE runs (id INTEGER PRIMARY KEY)")
                return compare_metadata(MigrationContext.configure(sync_conn), Base.metadata)

            diffs = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert any(d[0] == "add_table" and d[1].name == "fills" for d in diffs)
    assert any(d[0] == "add_column" and d[2] == "runs" for d in diffs)


async def test_compare_sees_a_dropped_index_and_the_unique_keys_exist(db_url: str) -> None:
    await ensure_schema(db_url)
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:

            def check(sync_conn: sa.Connection) -> list:
                insp = sa.inspect(sync_conn)
                uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints("fills")}
                assert ("symbol", "trade_id") in uniques
                uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints("order_events")}
                assert ("symbol", "exchange_order_id", "execution_id") in uniques
                sync_conn.exec_driver_sql("DROP INDEX ix_fills_symbol_trade_ms")
                return compare_metadata(MigrationContext.configure(sync_conn), Base.metadata)

            diffs = await conn.run_sync(check)
    finally:
        await engine.dispose()
    assert [d[0] for d in diffs] == ["add_index"]


async def test_upgrade_on_start_is_idempotent(db_url: str, tmp_path: Path) -> None:
    first = await ensure_schema(db_url)
    assert first.previous == ()
    path = tmp_path / "ledger" / "test.db"
    before = _schema_sql(path)
    second = await ensure_schema(db_url)
    assert second.previous is None  # nothing ran
    assert second.at_head
    assert _schema_sql(path) == before
    store = await Store.open(db_url)
    await store.close()
    assert _schema_sql(path) == before


async def test_newer_database_is_refused(db_url: str, tmp_path: Path) -> None:
    await ensure_schema(db_url)
    path = tmp_path / "ledger" / "test.db"
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    before = _schema_sql(path)
    with pytest.raises(SchemaTooNewError) as info:
        await ensure_schema(db_url)
    msg = str(info.value)
    assert "0099_from_the_future" in msg and "newer version" in msg and str(path) in msg
    with pytest.raises(SchemaTooNewError):
        await Store.open(db_url)
    with pytest.raises(SchemaTooNewError):
        await schema_state(db_url)
    assert _schema_sql(path) == before


async def test_unmanaged_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE fills (x INTEGER)")
    with pytest.raises(SchemaUnmanagedError, match="no schema version"):
        await ensure_schema(url_for(path))


async def test_wal_foreign_keys_and_sync_are_on(store: Store) -> None:
    async with store.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 10_000
    # Foreign keys are enforced, not just declared.
    with pytest.raises(sa.exc.IntegrityError):
        async with store.engine.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO fills (symbol, trade_id, order_id, price, qty, quote_qty, commission, source,"
                " received_ms) VALUES ('BTCUSDT', 1, 424242, '1', '1', '1', '0', 'stream', 0)"
            )


async def test_synchronous_full_from_url(tmp_path: Path) -> None:
    engine = create_engine(url_for(tmp_path / "full.db") + "?synchronous=full")
    try:
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 2
    finally:
        await engine.dispose()


def test_bad_urls_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUrlError, match="sqlite\\+aiosqlite"):
        create_engine("postgresql://localhost/x")
    with pytest.raises(DatabaseUrlError, match="in-memory"):
        create_engine("sqlite+aiosqlite:///:memory:")
    with pytest.raises(DatabaseUrlError, match="synchronous"):
        create_engine(url_for(tmp_path / "x.db") + "?synchronous=off")


def test_relative_path_is_from_project_root(tmp_path: Path) -> None:
    from executor.persistence.db import database_path

    assert database_path("sqlite+aiosqlite:///data/x.db") == ROOT / "data" / "x.db"
    assert database_path("sqlite+aiosqlite:///data/x.db", base=tmp_path) == tmp_path / "data" / "x.db"
    assert database_path(f"sqlite+aiosqlite:///{tmp_path}/y.db") == tmp_path / "y.db"


def _run_cli(tmp_path: Path, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "test.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{db}"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--config", str(cfg), "db", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )


def test_cli_db_upgrade_and_refusal(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "cli.db"
    up = _run_cli(tmp_path, db, "upgrade")
    assert up.returncode == 0, up.stderr
    head = head_revision()
    assert f"schema revision {head} (head)" in up.stdout
    assert db.exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'zzzz'")
    refused = _run_cli(tmp_path, db, "upgrade")
    assert refused.returncode == 5  # README "Exit codes": the ledger cannot be used
    assert "zzzz" in refused.stderr and "newer version" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_db_command_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from executor.config import load_config
    from executor.persistence.migrate import db_command

    cfg_file = tmp_path / "t.toml"
    cfg_file.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "d" / "x.db"}"\n')
    cfg = load_config(cfg_file, local=None)
    assert db_command(cfg, "current") == 5  # no ledger there: the database exit code
    assert "no database" in capsys.readouterr().err
    assert db_command(cfg, "upgrade") == 0
    assert "upgraded from empty" in capsys.readouterr().out
    assert db_command(cfg, "upgrade") == 0
    assert "already at" in capsys.readouterr().out
    assert db_command(cfg, "current") == 0
    assert "(head)" in capsys.readouterr().out
