"""order_events: one unique index per row kind instead of two on every row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Written by hand. Until now every order_events row paid for two unique indexes: one on
``dedupe_key`` and one on (symbol, exchange_order_id, execution_id). For a stream
executionReport both say the same thing (its key is ``exec:<symbol>:<orderId>:<executionId>``,
derived from exactly that triple), so each insert maintained a redundant B-tree. After this
revision:

* rows with an execution id (spot executionReports) are unique by the triple, the
  constraint the exchange's identity of an execution demands (unchanged);
* rows without one (REST observations, futures events) are unique by ``dedupe_key``
  through a partial unique index ``WHERE execution_id IS NULL`` (SQLite treats NULLs as
  distinct, so the triple cannot cover them).

The ``dedupe_key`` column stays, NOT NULL and filled for every row. SQLite cannot drop a
table constraint in place, so the table is rebuilt (copy, drop, rename) inside the
migration's transaction, keeping row ids, every column and the other constraints with
their NAMING names; ``downgrade`` rebuilds it back.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Text  # DecimalText's storage type
MS = sa.BigInteger
TMP = "_order_events_0002"
COLUMNS = (
    "id, dedupe_key, order_id, symbol, exchange_order_id, client_order_id, event_client_id, execution_id, "
    "execution_type, status, executed_qty, cum_quote_qty, trade_id, source, event_ms, received_ms, payload"
)


def _rebuild(*, dedupe_key_unique_everywhere: bool) -> None:
    """Recreate order_events with or without the table-wide UNIQUE (dedupe_key), rows kept."""
    extra: list[sa.SchemaItem] = []
    if dedupe_key_unique_everywhere:
        extra.append(sa.UniqueConstraint("dedupe_key", name="uq_order_events_dedupe_key"))
    op.create_table(
        TMP,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(200), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("exchange_order_id", sa.BigInteger(), nullable=True),
        sa.Column("client_order_id", sa.String(64), nullable=True),
        sa.Column("event_client_id", sa.String(64), nullable=True),
        sa.Column("execution_id", sa.BigInteger(), nullable=True),
        sa.Column("execution_type", sa.String(24), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("executed_qty", MONEY(), nullable=True),
        sa.Column("cum_quote_qty", MONEY(), nullable=True),
        sa.Column("trade_id", sa.BigInteger(), nullable=True),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("event_ms", MS(), nullable=True),
        sa.Column("received_ms", MS(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_order_events"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_order_events_order_id_orders"),
        *extra,
        sa.UniqueConstraint(
            "symbol",
            "exchange_order_id",
            "execution_id",
            name="uq_order_events_symbol_exchange_order_id_execution_id",
        ),
    )
    op.execute(f"INSERT INTO {TMP} ({COLUMNS}) SELECT {COLUMNS} FROM order_events")
    op.drop_table("order_events")  # its indexes go with it
    op.rename_table(TMP, "order_events")
    op.create_index("ix_order_events_order_id", "order_events", ["order_id"])


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    if _sqlite():
        _rebuild(dedupe_key_unique_everywhere=False)
    else:
        # PostgreSQL drops a constraint in place (and needs no copy: index names are
        # schema-wide there, so a copied table could not reuse them anyway).
        op.drop_constraint("uq_order_events_dedupe_key", "order_events", type_="unique")
    op.create_index(
        "ix_order_events_dedupe_key",
        "order_events",
        ["dedupe_key"],
        unique=True,
        sqlite_where=sa.text("execution_id IS NULL"),
        postgresql_where=sa.text("execution_id IS NULL"),
    )


def downgrade() -> None:
    if _sqlite():
        _rebuild(dedupe_key_unique_everywhere=True)
    else:
        op.drop_index("ix_order_events_dedupe_key", "order_events")
        op.create_unique_constraint("uq_order_events_dedupe_key", "order_events", ["dedupe_key"])
