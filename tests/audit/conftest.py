"""Fixtures for the audit tests: the hand-computed scenario in a migrated ledger file.

The ledger is built once per session through the real Store and migrations, and each test
gets its own copy (some tests tamper with it)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest

from executor.persistence.migrate import ensure_schema
from tests.audit.scenario import Built, build_scenario


@pytest.fixture(scope="session")
def scenario_template(tmp_path_factory: pytest.TempPathFactory) -> Built:
    path = tmp_path_factory.mktemp("audit-template") / "ledger.db"
    built = asyncio.run(build_scenario(path))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file, so a copy is whole
    conn.close()
    return built


@pytest.fixture
def scenario(scenario_template: Built, tmp_path: Path) -> Built:
    path = tmp_path / "ledger.db"
    shutil.copyfile(scenario_template.path, path)
    return Built(f"sqlite+aiosqlite:///{path}", path, scenario_template.run_id)


@pytest.fixture(scope="session")
def empty_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated ledger with no rows, for tests that write their own (copy it first)."""
    path = tmp_path_factory.mktemp("empty-ledger") / "empty.db"
    asyncio.run(ensure_schema(f"sqlite+aiosqlite:///{path}"))
    return path
