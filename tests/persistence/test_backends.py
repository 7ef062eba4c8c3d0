"""The ledger on both backends: one chain of migrations builds the same schema on SQLite and
PostgreSQL (money TEXT there, NUMERIC here), money round-trips exactly on each, and
concurrent writers on PostgreSQL keep the idempotent inserts and the status merge atomic.

PostgreSQL cases skip unless ``BX_TEST_PG_URL`` names a server (``.ci/run`` starts one)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.persistence.db import create_engine, describe_url
from executor.persistence.models import Base
from executor.persistence.store import Store
from executor.persistence.types import DecimalText
from tests.ledger_backends import LedgerFactory
from tests.persistence.test_types import money

D = Decimal


_MONEY = {
    (t.name, c.name)
    for t in Base.metadata.sorted_tables
    for c in t.columns
    if isinstance(c.type, DecimalText)
}


def _schema(conn: sa.Connection) -> dict[str, Any]:
    """Tables, columns (name, type family, nullable), unique keys and indexes, by name."""
    insp = sa.inspect(conn)
    out: dict[str, Any] = {}
    for table in sorted(set(insp.get_table_names()) - {"alembic_version"}):
        cols = []
        for c in insp.get_columns(table):
            t = c["type"]
            family = t._type_affinity.__name__  # the generic type: VARCHAR and TEXT are both String
            if (table, c["name"]) in _MONEY:
                family = "money"  # TEXT on SQLite, NUMERIC on PostgreSQL, by design
            cols.append((c["name"], family, c["nullable"]))
        uniques = sorted((u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(table))
        indexes = sorted(
            (i["name"], tuple(i["column_names"]), bool(i["unique"]))
            for i in insp.get_indexes(table)
            if "duplicates_constraint" not in i  # PostgreSQL lists a UNIQUE's index as well
        )
        pk = insp.get_pk_constraint(table)
        out[table] = {
            "columns": cols,
            "uniques": uniques,
            "indexes": indexes,
            "pk": tuple(pk["constrained_columns"]),
        }
    return out


async def _read(url: str, fn: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _diff(conn: sa.Connection) -> list[Any]:
    return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)


async def test_migrated_schema_equals_models_on_each_backend(ledger_url: str) -> None:
    assert await _read(ledger_url, _diff) == []


async def test_money_columns_are_numeric_on_postgresql(ledger_backend: str, ledger_url: str) -> None:
    def money_types(conn: sa.Connection) -> set[str]:
        insp = sa.inspect(conn)
        found = set()
        for table in Base.metadata.sorted_tables:
            types = {c["name"]: c["type"] for c in insp.get_columns(table.name)}
            for col in table.columns:
                if isinstance(col.type, DecimalText):
                    found.add(type(types[col.name]).__name__)
        return found

    want = {"NUMERIC"} if ledger_backend == "postgresql" else {"TEXT"}
    assert await _read(ledger_url, money_types) == want


async def test_covering_indexes_on_postgresql(ledger_backend: str, ledger_url: str) -> None:
    """Every index carries the models' INCLUDE columns on PostgreSQL (migration 0009: what
    ``audit verify`` reads of an asset's events and fills, for index-only scans); SQLite has
    no INCLUDE and the same keys. The schema comparisons above see only the keys."""

    def includes(conn: sa.Connection) -> dict[tuple[str, str], list[str]]:
        insp = sa.inspect(conn)
        return {
            (table, i["name"]): list(i.get("dialect_options", {}).get("postgresql_include", []))
            for table in insp.get_table_names()
            for i in insp.get_indexes(table)
        }

    want = {
        (t.name, ix.name): list(ix.dialect_options["postgresql"]["include"] or [])
        for t in Base.metadata.sorted_tables
        for ix in t.indexes
    }
    got = await _read(ledger_url, includes)
    if ledger_backend == "postgresql":
        assert {k: got.get(k) for k in want} == want
        events = want[("balance_events", "ix_balance_events_asset_event_ms")]
        assert events == ["kind", "free", "locked", "delta", "id"]
        assert want[("fills", "ix_fills_audit_sums")] == ["trade_ms"]
    else:
        assert all(not v for v in got.values())


async def test_same_migrations_build_the_same_schema_on_both(
    pg_databases: Any, sqlite_template: Any, tmp_path: Any
) -> None:
    if pg_databases is None:
        from tests.ledger_backends import SKIP_NO_PG

        pytest.skip(SKIP_NO_PG)
    sqlite = await LedgerFactory("sqlite", tmp_path, sqlite_template, None)()
    pg = await LedgerFactory("postgresql", tmp_path, sqlite_template, pg_databases)()
    a, b = await _read(sqlite, _schema), await _read(pg, _schema)
    assert a.keys() == b.keys()
    for table in a:
        assert a[table] == b[table], table


def _same_or_numeric_form(got: Decimal, want: Decimal, backend: str) -> bool:
    """SQLite: identical (sign, digits, exponent). PostgreSQL: identical too, except what
    NUMERIC cannot say (types.py): positive exponents come back as the plain integer and
    negative zero as zero; still the equal value."""
    if got != want:
        return False
    if backend == "sqlite":
        return got.as_tuple() == want.as_tuple()
    exp = want.as_tuple().exponent
    assert isinstance(exp, int)
    if exp > 0:
        return got.as_tuple().exponent == 0
    if want.is_zero() and want.is_signed():
        return got.as_tuple().exponent == exp
    return got.as_tuple() == want.as_tuple()


_counter = iter(range(1, 10**9))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(money, min_size=2, max_size=12))
async def test_decimals_round_trip_on_each_backend(
    ledger_backend: str, ledger_url: str, values: list[Decimal]
) -> None:
    store = await Store.open(ledger_url, upgrade=False)
    try:
        symbol = f"S{next(_counter)}"
        rows = [(i, values[i], values[(i + 1) % len(values)]) for i in range(len(values))]
        async with store.batch() as b:
            for trade_id, price, qty in rows:
                b.add_fill(symbol, trade_id, price, qty, "stream", quote_qty=qty, commission=price)
        got = {f.trade_id: f for f in await store.fills(symbol=symbol)}
        for trade_id, price, qty in rows:
            f = got[trade_id]
            assert _same_or_numeric_form(f.price, price, ledger_backend), (f.price, price)
            assert _same_or_numeric_form(f.qty, qty, ledger_backend), (f.qty, qty)
            assert _same_or_numeric_form(f.commission, price, ledger_backend)
    finally:
        await store.close()


async def test_wire_values_keep_their_digits_on_each_backend(ledger_url: str) -> None:
    store = await Store.open(ledger_url, upgrade=False)
    try:
        await store.add_fill("BTCUSDT", 1, "60000.01000000", "0.00100000", "stream", commission="0E-8")
        await store.add_fill("BTCUSDT", 2, "60000", "1", "stream")
        f1, f2 = await store.fills(symbol="BTCUSDT")
        assert str(f1.price) == "60000.01000000" and str(f1.qty) == "0.00100000"
        assert str(f1.quote_qty) == "60.0000100000000000" and str(f1.commission) == "0E-8"
        assert str(f2.price) == "60000" and str(f2.quote_qty) == "60000"
    finally:
        await store.close()


async def test_concurrent_writers_merge_atomically(ledger_url: str) -> None:
    """Two stores (two engines, as two processes or two machines would) race on one order's
    reports and fills in opposite orders: every fill is stored once, and the order ends at
    the furthest state, never overwritten by the slower writer's older view."""
    a = await Store.open(ledger_url, upgrade=False)
    b = await Store.open(ledger_url, upgrade=False)
    try:
        await a.record_order_intent("bx-c-1", "BTCUSDT", "BUY", "LIMIT", quantity="20", price="10")
        steps = list(range(1, 21))

        async def feed(s: Store, order: list[int]) -> None:
            for k in order:
                status = "FILLED" if k == 20 else "PARTIALLY_FILLED"
                async with s.batch() as batch:
                    batch.add_fill("BTCUSDT", 100 + k, "10", "1", "stream", client_order_id="bx-c-1",
                                   exchange_order_id=7)
                    batch.update_order_status("bx-c-1", status, source="stream", symbol="BTCUSDT",
                                              exchange_order_id=7, executed_qty=D(k), cum_quote_qty=D(10 * k))

        await asyncio.wait_for(asyncio.gather(feed(a, steps), feed(b, steps[::-1])), timeout=60)
        order = await a.get_order_by_client_id("bx-c-1")
        assert order is not None
        assert (order.status, order.executed_qty, order.cum_quote_qty) == ("FILLED", D(20), D(200))
        fills = await b.fills(symbol="BTCUSDT")
        assert sorted(f.trade_id for f in fills) == [100 + k for k in steps]
    finally:
        await a.close()
        await b.close()


def test_describe_url_hides_the_password() -> None:
    text = describe_url("postgresql+asyncpg://bot:s3cret@db.example:5432/ledger")
    assert "s3cret" not in text and "db.example" in text


def test_db_upgrade_on_an_unreachable_server_is_one_line(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from executor.config import load_config
    from executor.persistence.migrate import db_command

    cfg_file = tmp_path / "t.toml"
    cfg_file.write_text('[database]\nurl = "postgresql+asyncpg://bx:s3cret@127.0.0.1:1/ledger"\n')
    cfg = load_config(cfg_file, local=None)
    assert db_command(cfg, "upgrade") == 5  # README "Exit codes": the ledger cannot be opened
    err = capsys.readouterr().err
    assert err.startswith("database error: cannot reach") and err.count("\n") == 1
    assert "s3cret" not in err and "Traceback" not in err
