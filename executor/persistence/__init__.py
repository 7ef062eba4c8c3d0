"""The ledger database: models, async engine, migrations runner and the repository.

The rest of the bot uses ``Store`` (``executor.persistence.store``) and, on start,
``ensure_schema`` (``executor.persistence.migrate``), the lease (``lease``: one owner per
ledger) and the ledger's identity (``identity``: its client-id prefix and venue); nothing
else touches the tables.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from executor.persistence.migrate import (
        SchemaError,
        SchemaTooNewError,
        SchemaUnmanagedError,
        ensure_schema,
    )
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

# The names above are loaded on first use (PEP 562), not with the package: a module that needs
# only ``persistence.db`` or ``records`` (``audit``: a read-only command) does not pay for
# alembic and the store (~0.3 s of start-up, bench/RESULTS.md, issue 16).
# Every other name of ``__all__`` comes from ``store``.
_FROM_MIGRATE = ("SchemaError", "SchemaTooNewError", "SchemaUnmanagedError", "ensure_schema")


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    module = "migrate" if name in _FROM_MIGRATE else "store"
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


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
