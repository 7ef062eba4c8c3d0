"""Revision 0002 rebuilds order_events: rows survive, the unique rules change as documented, and back.

0001: UNIQUE (dedupe_key) on every row and UNIQUE (symbol, exchange_order_id, execution_id).
0002: the triple stays; dedupe_key is unique only among rows with no execution id (a partial
unique index), since for a stream executionReport the key is derived from the triple.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy.engine import Connection

from executor.persistence.db import create_engine
from executor.persistence.migrate import alembic_config, head_revision
from tests.persistence.conftest import url_for

COLS = (
    "id, dedupe_key, order_id, symbol, exchange_order_id, client_order_id, event_client_id, execution_id, "
    "execution_type, status, executed_qty, cum_quote_qty, trade_id, source, event_ms, received_ms, payload"
)
# Spot executionReports (with execution ids), a REST observation and a futures event (without).
ROWS = [
    (3, "exec:BTCUSDT:11:101", 5, "BTCUSDT", 11, "bx-a", "bx-a", 101, "NEW", "NEW", "0", "0", None,
     "stream", 1_000, 1_001, '{"e":"executionReport"}'),
    (7, "exec:BTCUSDT:11:102", None, "BTCUSDT", 11, "bx-a", "bx-a", 102, "TRADE", "PARTIALLY_FILLED",
     "0.00100000", "67.12345678", 5_001, "stream", 1_010, 1_011, '{"x":"TRADE"}'),
    (8, "rest:BTCUSDT:11:FILLED:0.002", 5, "BTCUSDT", 11, "bx-a", None, None, None, "FILLED",
     "0.00200000", "134.2", None, "rest", None, 1_020, "{}"),
    (12, "fut:F:BTCUSDT:12:NEW", None, "F:BTCUSDT", 12, "bx-b", "bx-b", None, "NEW", "NEW", "0", "0",
     None, "stream", 1_030, 1_031, '{"e":"ORDER_TRADE_UPDATE"}'),
]


async def _migrate(path: Path, action: str, revision: str) -> None:
    """Run ``alembic upgrade/downgrade`` the way ``migrate._upgrade`` does: on the runner's
    connection (ledger settings, foreign_keys=ON) inside one transaction."""
    engine = create_engine(url_for(path))

    def run(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, revision)

    try:
        async with engine.connect() as conn:
            await conn.execution_options(sqlite_write=True)
            async with conn.begin():
                await conn.run_sync(run)
    finally:
        await engine.dispose()


def _rows(db: sqlite3.Connection) -> list[tuple[object, ...]]:
    return db.execute(f"SELECT {COLS} FROM order_events ORDER BY id").fetchall()


def _insert(db: sqlite3.Connection, row: tuple[object, ...]) -> None:
    db.execute(f"INSERT INTO order_events ({COLS}) VALUES ({', '.join('?' * len(row))})", row)


def _unique_indexes(db: sqlite3.Connection) -> dict[tuple[str, ...], bool]:
    """Column tuple of each unique index of order_events -> whether it is partial."""
    out: dict[tuple[str, ...], bool] = {}
    for _, name, unique, _origin, partial in db.execute("PRAGMA index_list(order_events)"):
        if unique:
            cols = tuple(r[2] for r in db.execute(f"PRAGMA index_info('{name}')"))
            out[cols] = bool(partial)
    return out


def _assert_clean(db: sqlite3.Connection) -> None:
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def _row(row_id: int, key: str, eid: int | None, order: int = 11) -> tuple[object, ...]:
    return (row_id, key, None, "BTCUSDT", order, None, None, eid, None, "NEW", "0", "0", None, "rest",
            None, 2_000, "{}")


@pytest.fixture
async def db_0001(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    await _migrate(path, "upgrade", "0001")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA foreign_keys=ON")
        # The order the events point at (order_events.order_id -> orders.id).
        db.execute(
            "INSERT INTO orders (id, client_order_id, symbol, side, type, status, status_source, "
            "executed_qty, cum_quote_qty, created_ms, updated_ms, external, resolved_from_unknown) "
            "VALUES (5, 'bx-a', 'BTCUSDT', 'BUY', 'LIMIT', 'FILLED', 'rest', '0.002', '134.2', 1, 2, 0, 0)"
        )
        for row in ROWS:
            _insert(db, row)
    return path


async def test_upgrade_keeps_rows_and_changes_uniqueness(db_0001: Path) -> None:
    with sqlite3.connect(db_0001) as db:
        before = _rows(db)
        assert _unique_indexes(db) == {("dedupe_key",): False,
                                       ("symbol", "exchange_order_id", "execution_id"): False}
    await _migrate(db_0001, "upgrade", "0002")
    with sqlite3.connect(db_0001) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0002",)]
        assert _rows(db) == before == ROWS  # ids and every column, types included
        assert db.execute("SELECT count(*) FROM orders").fetchone() == (1,)
        fks = db.execute("PRAGMA foreign_key_list(order_events)").fetchall()
        assert [fk[2:5] for fk in fks] == [("orders", "order_id", "id")]
        assert _unique_indexes(db) == {("dedupe_key",): True,
                                       ("symbol", "exchange_order_id", "execution_id"): False}
        partial_sql = db.execute(
            "SELECT sql FROM sqlite_master "
            "WHERE type='index' AND tbl_name='order_events' AND sql LIKE '%WHERE%'"
        ).fetchall()
        assert len(partial_sql) == 1 and "execution_id IS NULL" in partial_sql[0][0]
        assert db.execute("SELECT name FROM sqlite_master WHERE name LIKE '%0002%'").fetchall() == []
        index_names = [r[1] for r in db.execute("PRAGMA index_list(order_events)")]
        assert "ix_order_events_order_id" in index_names
        _assert_clean(db)
        # A repeated execution (same triple, even under another key) is refused.
        with pytest.raises(sqlite3.IntegrityError):
            _insert(db, _row(100, "other-key", 101))
        # A repeated keyless-by-execution row (same dedupe_key, no execution id) is refused.
        with pytest.raises(sqlite3.IntegrityError):
            _insert(db, _row(101, "rest:BTCUSDT:11:FILLED:0.002", None))
        # Now allowed: the key is unique only among rows without an execution id.
        _insert(db, _row(102, "exec:BTCUSDT:11:101", 999))
        _insert(db, _row(103, "exec:BTCUSDT:11:101", None))  # the only NULL-execution row with it
        with pytest.raises(sqlite3.IntegrityError):
            _insert(db, _row(104, "exec:BTCUSDT:11:101", None))
        db.rollback()
        _assert_clean(db)


async def test_downgrade_restores_constraint_then_head(db_0001: Path) -> None:
    await _migrate(db_0001, "upgrade", "0002")
    await _migrate(db_0001, "downgrade", "0001")
    with sqlite3.connect(db_0001) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
        assert _rows(db) == ROWS
        assert _unique_indexes(db) == {("dedupe_key",): False,
                                       ("symbol", "exchange_order_id", "execution_id"): False}
        _assert_clean(db)
        with pytest.raises(sqlite3.IntegrityError):
            _insert(db, _row(102, "exec:BTCUSDT:11:101", 999))  # table-wide UNIQUE (dedupe_key) is back
        with pytest.raises(sqlite3.IntegrityError):
            _insert(db, _row(100, "other-key", 101))
        db.rollback()
    await _migrate(db_0001, "upgrade", "head")
    with sqlite3.connect(db_0001) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
        assert _rows(db) == ROWS
        assert _unique_indexes(db)[("dedupe_key",)] is True
        _assert_clean(db)
