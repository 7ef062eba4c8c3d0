"""The ledger backends the tests run on: SQLite always, PostgreSQL when ``BX_TEST_PG_URL``
names a server (``.ci/run`` starts a throwaway one with ``.ci/pg``).

``ledger_backend`` is parametrized ``sqlite`` / ``postgresql``; the PostgreSQL case skips with
a reason when no server is given. ``fresh_ledger_url(backend, tmp_path)`` gives a migrated,
empty ledger: a file under ``tmp_path``, or a new database on the server copied from a
template migrated once per session (``CREATE DATABASE ... TEMPLATE``, tens of ms) and
dropped at the end of the session.

Imported by ``tests/conftest.py`` so every folder can use the fixtures.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from executor.persistence.migrate import ensure_schema

PG_ENV = "BX_TEST_PG_URL"
SKIP_NO_PG = f"{PG_ENV} is not set: no PostgreSQL server for the ledger tests (.ci/run starts one)"
BACKENDS = ("sqlite", "postgresql")


def pg_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def needs_pg() -> str:
    """The server's URL, or skip the calling test with the reason."""
    url = pg_url()
    if url is None:
        pytest.skip(SKIP_NO_PG)
    return url


class PgDatabases:
    """Databases made on the test server in this session (dropped at its end)."""

    def __init__(self, base: str) -> None:
        self.base = base
        tag = uuid.uuid4().hex[:8]
        self.template = f"bx_tpl_{tag}"
        self.prefix = f"bx_t_{tag}_"
        self.made: list[str] = []
        self._template_ready = False

    def url(self, name: str) -> str:
        return make_url(self.base).set(database=name).render_as_string(hide_password=False)

    async def _admin(self, *statements: str) -> None:
        engine = create_async_engine(self.base, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                for s in statements:
                    await conn.execute(sa.text(s))
        finally:
            await engine.dispose()

    async def create(self, *, migrated: bool = True) -> str:
        """A new database: migrated (copied from the session's template) or empty."""
        if migrated and not self._template_ready:
            await self._admin(f'CREATE DATABASE "{self.template}"')
            self.made.append(self.template)
            await ensure_schema(self.url(self.template))
            self._template_ready = True
        name = f"{self.prefix}{len(self.made)}"
        template = self.template if migrated else "template0"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        self.made.append(name)
        return self.url(name)

    async def drop_all(self) -> None:
        for name in reversed(self.made):
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.made.clear()


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases | None]:
    url = pg_url()
    if url is None:
        yield None
        return
    dbs = PgDatabases(url)
    yield dbs
    asyncio.run(dbs.drop_all())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite ledger, copied per test (migrating every time would be slow)."""
    path = tmp_path_factory.mktemp("ledger-template") / "ledger.db"
    asyncio.run(ensure_schema(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(params=BACKENDS)
def ledger_backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        needs_pg()
    return str(request.param)


class LedgerFactory:
    """``await make(name)``: a migrated, empty ledger URL on this test's backend; the same
    name gives the same ledger again (a restarted bot)."""

    def __init__(self, backend: str, tmp_path: Path, template: Path, pg: PgDatabases | None) -> None:
        self.backend = backend
        self.tmp_path = tmp_path
        self.template = template
        self.pg = pg
        self.urls: dict[str, str] = {}

    async def __call__(self, name: str = "ledger", *, migrated: bool = True) -> str:
        if name in self.urls:
            return self.urls[name]
        if self.backend == "postgresql":
            assert self.pg is not None, SKIP_NO_PG
            url = await self.pg.create(migrated=migrated)
        else:
            path = self.tmp_path / f"{name}.db"
            if migrated:
                shutil.copy(self.template, path)
            url = f"sqlite+aiosqlite:///{path}"
        self.urls[name] = url
        return url


@pytest.fixture
def make_ledger(
    ledger_backend: str, tmp_path: Path, sqlite_template: Path, pg_databases: PgDatabases | None
) -> LedgerFactory:
    return LedgerFactory(ledger_backend, tmp_path, sqlite_template, pg_databases)


@pytest.fixture
async def ledger_url(make_ledger: LedgerFactory) -> str:
    return await make_ledger()


def commit_elsewhere(url: str, sql: str) -> None:
    """Run ``sql`` and commit it on a new connection of its own (another writer, as a bot
    would be, while a test holds a reader open on the same ledger)."""
    from executor.persistence.db import create_engine

    async def run() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.text(sql))
        finally:
            await engine.dispose()

    asyncio.run(run())
