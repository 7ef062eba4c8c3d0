"""Alembic environment for the ledger.

Two ways in. Programmatic (``executor.persistence.migrate``): the runner opens the
connection itself (with the ledger's WAL / foreign-key settings) and passes it in
``config.attributes["connection"]``. Command line (``alembic`` with the root
``alembic.ini``, for writing new migrations): the URL comes from ``sqlalchemy.url`` or the
``LEDGER_URL`` environment variable and an engine is made here with the same factory.
``render_as_batch`` because SQLite can only change most table shapes by copying the table.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from executor.persistence.models import Base

config = context.config
target_metadata = Base.metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = os.environ.get("LEDGER_URL") or config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online_with_new_engine() -> None:
    from executor.persistence.db import create_engine

    url = os.environ.get("LEDGER_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url in alembic.ini or the LEDGER_URL environment variable")
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_configure_and_run)
            await conn.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
    else:
        asyncio.run(_run_online_with_new_engine())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
