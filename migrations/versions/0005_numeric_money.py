"""Money as NUMERIC on PostgreSQL.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Written by hand. ``DecimalText`` (``executor.persistence.types``) stores money as canonical
TEXT on SQLite and as unconstrained NUMERIC on PostgreSQL, where NUMERIC keeps every digit
and the scale it was given, and lets the audit sum money in SQL. Revisions 0001-0004 create
the money columns as TEXT on both; this one converts them on PostgreSQL (``USING
col::numeric``, exact for the canonical text) and is a no-op on SQLite, so the same chain
of migrations builds both schemas. The column list is fixed here, as of this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "orders": (
        "price",
        "quantity",
        "quote_order_qty",
        "executed_qty",
        "cum_quote_qty",
        "decision_bid",
        "decision_ask",
        "decision_mark",
    ),
    "order_events": ("executed_qty", "cum_quote_qty"),
    "fills": ("price", "qty", "quote_qty", "commission"),
    "balances": ("free", "locked"),
    "balance_events": ("free", "locked", "delta"),
    "risk_refusals": ("price", "quantity"),
}


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _postgresql():
        return
    for table, cols in MONEY_COLUMNS.items():
        for col in cols:
            op.alter_column(
                table, col, type_=sa.Numeric(), existing_type=sa.Text(), postgresql_using=f"{col}::numeric"
            )


def downgrade() -> None:
    if not _postgresql():
        return
    for table, cols in MONEY_COLUMNS.items():
        for col in cols:
            op.alter_column(
                table, col, type_=sa.Text(), existing_type=sa.Numeric(), postgresql_using=f"{col}::text"
            )
