"""Fixtures for the audit tests: the hand-computed scenario in a migrated ledger file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.audit.scenario import Built, build_scenario


@pytest.fixture
async def scenario(tmp_path: Path) -> Built:
    return await build_scenario(tmp_path / "ledger.db")
