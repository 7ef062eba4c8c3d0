"""Fixtures for the ledger tests: a migrated database file under tmp_path and a Store on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from executor.persistence.store import Store


class FakeClock:
    """A clock that advances one millisecond per read, so every write has a distinct time."""

    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:
        self.ms = start_ms

    def __call__(self) -> int:
        self.ms += 1
        return self.ms


def url_for(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return url_for(tmp_path / "ledger" / "test.db")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["fast", "generic"])
def store_path(request: pytest.FixtureRequest) -> bool:
    """Whether the store runs its statements through the driver shortcut (aiosqlite or
    asyncpg, ``executor.persistence.sql``) or SQLAlchemy's generic execution."""
    return request.param == "fast"


@pytest.fixture
async def store(ledger_url: str, store_path: bool, clock: Callable[[], int]) -> AsyncIterator[Store]:
    """A Store on a fresh ledger, for each backend and (SQLite) each execution path."""
    s = await Store.open(ledger_url, clock=clock, upgrade=False, fast=store_path)
    try:
        yield s
    finally:
        await s.close()
