"""The ledger database: models, async engine, migrations runner and the repository.

The rest of the bot uses ``Store`` (``executor.persistence.store``) and, on start,
``ensure_schema`` (``executor.persistence.migrate``), the lease (``lease``: one owner per
ledger) and the ledger's identity (``identity``: its client-id prefix and venue); nothing
else touches the tables.
"""

from executor.persistence.migrate import SchemaError, SchemaTooNewError, SchemaUnmanagedError, ensure_schema
from executor.persistence.store import (
    BalanceRecord,
    BalanceRow,
    Batch,
    BatchResult,
    DuplicateClientOrderId,
    FillRecord,
    OrderRecord,
    StatusChange,
    Store,
    StoreError,
)

__all__ = [
    "BalanceRecord",
    "BalanceRow",
    "Batch",
    "BatchResult",
    "DuplicateClientOrderId",
    "FillRecord",
    "OrderRecord",
    "SchemaError",
    "SchemaTooNewError",
    "SchemaUnmanagedError",
    "StatusChange",
    "Store",
    "StoreError",
    "ensure_schema",
]
