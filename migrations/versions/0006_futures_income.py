"""USD-M futures income: ``futures_income`` (funding fees, commissions, realized PnL and
transfers as ``GET /fapi/v1/income`` books them), unique by Binance's ``tranId``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Written by hand, like 0001; names follow executor.persistence.models.NAMING.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

def MONEY() -> sa.types.TypeEngine:
    """DecimalText's storage type: TEXT on SQLite, NUMERIC on PostgreSQL (as 0005 made it)."""
    return sa.Text().with_variant(sa.Numeric(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "futures_income",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tran_id", sa.BigInteger(), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("income_type", sa.String(32), nullable=False),
        sa.Column("amount", MONEY(), nullable=False),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("trade_id", sa.String(32), nullable=True),
        sa.Column("info", sa.String(64), nullable=True),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_futures_income_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_futures_income"),
        sa.UniqueConstraint("tran_id", name="uq_futures_income_tran_id"),
    )
    op.create_index("ix_futures_income_time_ms", "futures_income", ["time_ms"])
    op.create_index("ix_futures_income_income_type_time_ms", "futures_income", ["income_type", "time_ms"])


def downgrade() -> None:
    op.drop_index("ix_futures_income_income_type_time_ms", table_name="futures_income")
    op.drop_index("ix_futures_income_time_ms", table_name="futures_income")
    op.drop_table("futures_income")
