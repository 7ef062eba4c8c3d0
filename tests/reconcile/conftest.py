"""Fixtures for the reconciler tests: Binance payload samples, a migrated ledger per test,
a snapshot of the ledger's state for equality checks, and a fake REST gateway."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from executor.exchange.binance_reports import SPOT
from executor.persistence.migrate import ensure_schema
from executor.persistence.store import Store
from executor.reconcile import OrderUpdate, Reconciler
from tests.fixtures import FIXTURES_FILE
from tests.ledger_backends import LedgerFactory

PREFIX = "bx"


def load_fixtures() -> dict[str, Any]:
    return json.loads(FIXTURES_FILE.read_text())


@pytest.fixture
def fx() -> dict[str, Any]:
    return copy.deepcopy(load_fixtures())


class FakeClock:
    def __init__(self, start_ms: int = 1_785_571_000_000) -> None:
        self.ms = start_ms

    def __call__(self) -> int:
        self.ms += 1
        return self.ms


def url_for(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated database, copied per test (migrating every time would be slow)."""
    path = tmp_path_factory.mktemp("template") / "ledger.db"
    asyncio.run(ensure_schema(url_for(path)))
    return path


@pytest.fixture
async def make_store(make_ledger: LedgerFactory) -> AsyncIterator[Callable[..., Any]]:
    """``await make_store(name)``: a Store on a fresh migrated ledger of the test's backend
    (the same name opens the same ledger again, as a restarted bot would)."""
    opened: list[Store] = []

    async def make(name: str = "ledger", *, clock: Callable[[], int] | None = None) -> Store:
        url = await make_ledger(name)
        store = await Store.open(url, clock=clock or FakeClock(), upgrade=False)
        opened.append(store)
        return store

    yield make
    for st in opened:
        await st.close()


@pytest.fixture
async def store(make_store: Callable[..., Any]) -> Store:
    return await make_store()


class Updates(list[OrderUpdate]):
    def __call__(self, update: OrderUpdate) -> None:
        self.append(update)


@pytest.fixture
def updates() -> Updates:
    return Updates()


@pytest.fixture
def rec(store: Store, updates: Updates) -> Reconciler:
    return Reconciler(store, prefix=PREFIX, translate=SPOT, symbols=["BTCUSDT"], on_order_update=updates)


_VOLATILE = {"id", "updated_ms", "received_ms", "acked_ms", "order_id", "status_source", "run_id"}


async def ledger_state(store: Store) -> dict[str, Any]:
    """Everything a reconciliation decides, without row ids and local receive times."""

    def read(conn: sa.Connection) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for table, key in (("orders", "client_order_id"), ("fills", "trade_id"),
                           ("order_events", "dedupe_key"), ("balances", "asset"),
                           ("balance_events", "dedupe_key"), ("futures_account_updates", "dedupe_key")):
            rows = conn.execute(sa.text(f"SELECT * FROM {table}")).mappings().all()
            out[table] = sorted(
                ({k: v for k, v in r.items() if k not in _VOLATILE} for r in rows),
                key=lambda r: str(r[key]))
        return out

    async with store.engine.connect() as conn:
        return await conn.run_sync(read)


def dec(text: str) -> Decimal:
    return Decimal(text)
