"""The ledger's identity (``executor.persistence.identity``): the client-id prefix generated
and stored at creation (or pinned by the config), and the venue (profile, REST host, account)
checked on every later open."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.config import ConfigError, load_config
from executor.core.ids import BINANCE_CLIENT_ID_RE, ClientIdFactory, make_run_tag
from executor.persistence.identity import (
    LedgerMismatch,
    VenueIdentity,
    bind_account,
    describe_meta,
    establish,
    generate_prefix,
    read_meta,
)
from executor.persistence.store import Store

SIM = VenueIdentity("sim", "127.0.0.1:4000")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")
    try:
        yield s
    finally:
        await s.close()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**41), st.integers(0, 2**20), st.integers(1, 9_999_999_999))
def test_generated_prefix_leaves_room_for_every_id(started_ms: int, nonce: int, seq: int) -> None:
    prefix = generate_prefix()
    ids = ClientIdFactory(prefix, make_run_tag(started_ms, nonce), next_order_seq=seq, next_cancel_seq=seq)
    for cid in (ids.next_order_id(), ids.next_cancel_id()):
        assert BINANCE_CLIENT_ID_RE.fullmatch(cid), cid


async def test_prefix_generated_once_and_kept(store: Store, tmp_path: Path) -> None:
    first = await establish(store.engine, "L", configured_prefix="", venue=SIM)
    again = await establish(store.engine, "L", configured_prefix=None, venue=SIM)
    assert first.prefix == again.prefix and first.prefix.startswith("b") and len(first.prefix) == 6
    other = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
    try:
        assert (await establish(other.engine, "O", configured_prefix="", venue=SIM)).prefix != first.prefix
    finally:
        await other.close()
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        meta = read_meta(conn)
    assert meta["client_prefix"] == first.prefix
    assert describe_meta(meta) == f"ledger: client id prefix {first.prefix} · venue sim at 127.0.0.1:4000"


async def test_explicit_prefix_is_stored_and_a_different_one_refused(store: Store) -> None:
    assert (await establish(store.engine, "L", configured_prefix="desk1", venue=SIM)).prefix == "desk1"
    assert (await establish(store.engine, "L", configured_prefix="", venue=SIM)).prefix == "desk1"
    with pytest.raises(LedgerMismatch, match="uses client id prefix 'desk1', but the config sets"):
        await establish(store.engine, "L", configured_prefix="desk2", venue=SIM)


async def test_another_profile_host_or_account_is_refused(store: Store) -> None:
    await establish(store.engine, "L", configured_prefix="", venue=SIM)
    with pytest.raises(LedgerMismatch, match=r"^ledger L belongs to sim at 127.0.0.1:4000, not testnet at "):
        await establish(store.engine, "L", configured_prefix="",
                        venue=VenueIdentity("testnet", "testnet.binance.vision"))
    with pytest.raises(LedgerMismatch, match=r"not sim at 127\.0\.0\.1:5000"):
        await establish(store.engine, "L", configured_prefix="", venue=VenueIdentity("sim", "127.0.0.1:5000"))
    await bind_account(store.engine, "L", "354937868")
    await bind_account(store.engine, "L", "354937868")
    with pytest.raises(LedgerMismatch, match="account 354937868, but these keys reach account 999"):
        await bind_account(store.engine, "L", "999")


async def test_a_ledger_from_before_the_identity_keeps_its_prefix(store: Store) -> None:
    await store.start_run("0.1.0", "sim", "h")
    await store.record_order_intent("bx-abc-o1", "BTCUSDT", "BUY", "LIMIT", quantity="1", price="1")
    ident = await establish(store.engine, "L", configured_prefix="", venue=SIM)
    assert ident.prefix == "bx"


async def test_a_ledger_of_runs_on_another_profile_is_refused(store: Store) -> None:
    await store.start_run("0.1.0", "testnet", "h")
    with pytest.raises(LedgerMismatch, match="holds runs of profile testnet and no venue record"):
        await establish(store.engine, "L", configured_prefix="",
                        venue=VenueIdentity("live", "api.binance.com"))


def test_config_default_database_is_per_profile_and_prefix_is_checked(tmp_path: Path) -> None:
    for profile in ("sim", "testnet", "demo", "live"):
        cfg = load_config(local=None, overrides={"profile": profile})
        # Relative files live in the data folder (absolute since the data-folder change).
        assert cfg.database.url == f"sqlite+aiosqlite:///{Path(cfg.data_dir) / f'{profile}.db'}"
        assert cfg.orders.client_id_prefix == ""
    with pytest.raises(ConfigError, match=r"'orders\.client_id_prefix' must be empty"):
        load_config(local=None, overrides={"orders": {"client_id_prefix": "with-dash"}})


async def test_two_first_opens_on_postgresql_record_one_identity(pg_databases: object) -> None:
    """Two bots opening one new PostgreSQL ledger at once: one identity, both get it (the
    second waits on the table lock, then reads the first's rows instead of inserting)."""
    import asyncio

    from executor.persistence.db import create_engine
    from tests.ledger_backends import SKIP_NO_PG, PgDatabases

    if not isinstance(pg_databases, PgDatabases):
        pytest.skip(SKIP_NO_PG)
    for _ in range(3):  # a race that a lock-free read-then-insert loses now and then
        url = await pg_databases.create()
        engines = [create_engine(url), create_engine(url)]
        try:
            got = await asyncio.gather(*(establish(e, "L", configured_prefix="", venue=SIM) for e in engines))
        finally:
            for e in engines:
                await e.dispose()
        assert got[0].prefix == got[1].prefix
