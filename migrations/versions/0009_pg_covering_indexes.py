"""Covering indexes for ``audit verify`` on PostgreSQL (issue 16): each asset's running
balance is checked from index-only scans, not from the heap.

``verify_sql`` reads, per asset, its balance events along ``ix_balance_events_asset_event_ms``
and its fills along ``ix_fills_audit_sums`` (by symbol). An asset's events lie on nearly every
page of ``balance_events``, so each asset read the whole table through a bitmap heap scan,
and each asset's fills were a scan of every fill. With the columns those reads need carried
in the index (``INCLUDE``, PostgreSQL only), both are index-only scans of that asset's
entries (bench/RESULTS.md, "#16 session 10": the BTC statement at 1M fills, 1.5-2.3 s ->
1.1-1.3 s; events 527 -> 163 ms, fills 324 -> 197 ms).

The keys, and so the names and everything SQLite sees, are unchanged: on SQLite this
revision does nothing (``postgresql_include`` is PostgreSQL's; SQLite's verify reads its
own way, ``verify_fast``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08

Written by hand, like 0001; names follow executor.persistence.models.NAMING.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENTS = ("ix_balance_events_asset_event_ms", "balance_events", ["asset", "event_ms"])
EVENTS_INCLUDE = ["kind", "free", "locked", "delta", "id"]
SUMS = ("ix_fills_audit_sums", "fills",
        ["symbol", "side", "is_maker", "commission_asset", "qty", "quote_qty", "commission"])
SUMS_INCLUDE = ["trade_ms"]


def _postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    if not _postgresql():
        return
    for (name, table, cols), include in ((EVENTS, EVENTS_INCLUDE), (SUMS, SUMS_INCLUDE)):
        op.drop_index(name, table_name=table)
        op.create_index(name, table, cols, postgresql_include=include)


def downgrade() -> None:
    if not _postgresql():
        return
    for name, table, cols in (EVENTS, SUMS):
        op.drop_index(name, table_name=table)
        op.create_index(name, table, cols)
