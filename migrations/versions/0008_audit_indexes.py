"""Indexes for the cold audit (issue 16): the per-symbol fill sums and the first fill of each
order read from an index alone, with no sort of a million rows.

* ``ix_fills_audit_sums`` (symbol, side, is_maker, commission_asset, qty, quote_qty,
  commission): the report's ``GROUP BY symbol, side, is_maker, commission_asset`` with its
  money sums walks this index in group order (SQLite: 2.8 s -> 0.5 s at a million fills);
* ``ix_fills_order_id_received_ms_symbol`` replaces ``ix_fills_order_id``: the same lookups
  by order, and ``min(received_ms) ... GROUP BY order_id`` over the spot fills (the audit's
  first-fill latency; its ``fills`` view leaves out symbols ``UM:...``) from the index alone.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

Written by hand, like 0001; names follow executor.persistence.models.NAMING (the sums index
is named explicitly: its generated name would pass PostgreSQL's 63-character limit).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUMS = ["symbol", "side", "is_maker", "commission_asset", "qty", "quote_qty", "commission"]


def upgrade() -> None:
    op.create_index("ix_fills_audit_sums", "fills", SUMS)
    op.create_index("ix_fills_order_id_received_ms_symbol", "fills", ["order_id", "received_ms", "symbol"])
    op.drop_index("ix_fills_order_id", table_name="fills")


def downgrade() -> None:
    op.create_index("ix_fills_order_id", "fills", ["order_id"])
    op.drop_index("ix_fills_order_id_received_ms_symbol", table_name="fills")
    op.drop_index("ix_fills_audit_sums", table_name="fills")
