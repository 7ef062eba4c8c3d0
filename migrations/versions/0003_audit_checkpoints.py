"""Audit checkpoints: the audit's folded state of the ledger up to a cut time, so an audit of a
large ledger folds only what came after it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Written by hand, like 0001; names follow executor.persistence.models.NAMING.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("cut_ms", sa.BigInteger(), nullable=False),
        sa.Column("max_fill_id", sa.Integer(), nullable=False),
        sa.Column("max_order_id", sa.Integer(), nullable=False),
        sa.Column("max_balance_event_id", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_checkpoints"),
        sa.UniqueConstraint("kind", name="uq_audit_checkpoints_kind"),
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
