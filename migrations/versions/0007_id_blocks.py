"""Durably reserved client-id blocks: ``id_blocks`` (see ``models.IdBlock``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Written by hand, like 0001; names follow executor.persistence.models.NAMING. The same
statements on SQLite and PostgreSQL (tests/persistence compares the migrated schema with
the models on both).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "id_blocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("run_tag", sa.String(14), nullable=False),
        sa.Column("kind", sa.String(1), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("reserved_ms", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("closed_ms", sa.BigInteger(), nullable=True),
        sa.Column("used_to", sa.BigInteger(), nullable=True),
        sa.Column("adopted", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_id_blocks"),
        sa.UniqueConstraint("run_tag", "kind", "first_seq", name="uq_id_blocks_run_tag_kind_first_seq"),
    )
    op.create_index("ix_id_blocks_state", "id_blocks", ["state"])


def downgrade() -> None:
    op.drop_index("ix_id_blocks_state", table_name="id_blocks")
    op.drop_table("id_blocks")
