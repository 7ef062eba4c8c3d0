"""A fleet on one PostgreSQL: each bot named by ``?bot=NAME`` keeps its ledger in its own
schema (``bot_NAME``), migrated on first use; bots never see each other's rows, and
``audit --bot NAME`` / ``audit verify --bot NAME`` read one bot. Skips without a server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from executor.cli import main
from executor.persistence.db import DatabaseUrlError, bot_schema, create_engine, with_bot
from executor.persistence.store import Store
from tests.audit.scenario import build_scenario
from tests.ledger_backends import SKIP_NO_PG, PgDatabases


def test_bot_names_are_checked() -> None:
    assert bot_schema("postgresql+asyncpg://u@h/db?bot=alpha_1") == "bot_alpha_1"
    assert bot_schema("postgresql+asyncpg://u@h/db") is None
    for bad in ("Alpha", "1x", "a-b", "a" * 41):
        with pytest.raises(DatabaseUrlError, match="bot name"):
            bot_schema(f"postgresql+asyncpg://u@h/db?bot={bad}")
    with pytest.raises(DatabaseUrlError, match="for PostgreSQL"):
        create_engine("sqlite+aiosqlite:///x.db?bot=alpha")
    assert "bot=beta" in with_bot("postgresql+asyncpg://u:pw@h/db", "beta")


@pytest.fixture
def fleet_url(pg_databases: PgDatabases | None) -> str:
    if pg_databases is None:
        pytest.skip(SKIP_NO_PG)
    return asyncio.run(pg_databases.create(migrated=False))


def test_two_bots_share_one_database_apart(
    fleet_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alpha, beta = with_bot(fleet_url, "alpha"), with_bot(fleet_url, "beta")

    async def build() -> None:
        await build_scenario(tmp_path / "unused-a.db", alpha)
        await build_scenario(tmp_path / "unused-b.db", beta)  # the same trade ids: no clash
        store = await Store.open(beta)
        try:
            await store.add_fill(
                "ETHUSDT", 77, "3000", "0.5", "gap_fill", side="BUY", trade_ms=1_767_225_609_000
            )
            assert len(await store.fills()) == 6
        finally:
            await store.close()
        store = await Store.open(alpha)
        try:
            assert len(await store.fills()) == 5
        finally:
            await store.close()

    asyncio.run(build())
    assert main(["audit", "--db", fleet_url, "--bot", "alpha", "--format", "json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(["audit", "--db", fleet_url, "--bot", "beta", "--format", "json"]) == 0
    b = json.loads(capsys.readouterr().out)
    symbols = {s["symbol"] for s in a["symbols"]}, {s["symbol"] for s in b["symbols"]}
    assert "ETHUSDT" not in symbols[0] and "ETHUSDT" in symbols[1]
    assert main(["audit", "verify", "--db", fleet_url, "--bot", "alpha"]) == 0
    assert "OK" in capsys.readouterr().out
    # A bot with no ledger yet, and a bad name: one line each, exit 2.
    assert main(["audit", "--db", fleet_url, "--bot", "gamma"]) == 2
    assert main(["audit", "--db", fleet_url, "--bot", "No"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("audit:") == 2


def test_fleet_summary_lists_every_bot(
    fleet_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def build() -> None:
        for name in ("alpha", "beta"):
            await build_scenario(tmp_path / f"unused-{name}.db", with_bot(fleet_url, name))

    asyncio.run(build())
    assert main(["audit", "verify", "--db", fleet_url, "--bot", "all"]) == 0
    out = capsys.readouterr().out
    assert "FLEET" in out and "2 bots, 10 fills" in out
    lines = [ln for ln in out.splitlines() if ln.startswith(("alpha", "beta"))]
    assert len(lines) == 2 and all(ln.rstrip().endswith("OK") for ln in lines)
    assert "69.2640 USDT" in lines[0]  # the scenario's hand-computed FIFO PnL (69.264)
    assert main(["audit", "--db", fleet_url, "--bot", "all"]) == 0
    assert "FLEET" in capsys.readouterr().out
