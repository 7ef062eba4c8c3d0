"""Shared fixtures for the adapter tests: the authoritative Binance payload samples."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.fixtures import FIXTURES_FILE


def load_fixtures() -> dict[str, Any]:
    return json.loads(FIXTURES_FILE.read_text())


@pytest.fixture
def fx() -> dict[str, Any]:
    """A fresh deep copy of fixtures.json per test (tests may mutate it)."""
    return copy.deepcopy(load_fixtures())
