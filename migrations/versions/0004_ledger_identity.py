"""Ledger identity and ownership: ``ledger_meta`` (namespace prefix, venue), ``ledger_leases``
(one owner per ledger), ``operator_actions`` (pause/resume/cancel-all/kill, from where).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

Written by hand, like 0001; names follow executor.persistence.models.NAMING.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("set_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_ledger_meta"),
    )
    op.create_table(
        "ledger_leases",
        sa.Column("bot", sa.String(64), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("acquired_ms", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_ms", sa.BigInteger(), nullable=False),
        sa.Column("ttl_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_ledger_leases_run_id_runs"),
        sa.PrimaryKeyConstraint("bot", name="pk_ledger_leases"),
    )
    op.create_table(
        "operator_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_operator_actions_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_operator_actions"),
    )
    op.create_index("ix_operator_actions_at_ms", "operator_actions", ["at_ms"])
    op.create_index("ix_operator_actions_run_id", "operator_actions", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_operator_actions_run_id", table_name="operator_actions")
    op.drop_index("ix_operator_actions_at_ms", table_name="operator_actions")
    op.drop_table("operator_actions")
    op.drop_table("ledger_leases")
    op.drop_table("ledger_meta")
