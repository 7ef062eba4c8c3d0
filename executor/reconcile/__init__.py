"""Reconciliation: the ledger as the truth of what happened on the account.

* ``Reconciler`` (``reconciler.py``) applies user-stream events and REST order answers
  idempotently, in group commits, and reports our orders' updates to the strategy loop;
* ``gap_fill`` (``gapfill.py``) rebuilds the truth from REST at start and after a stream
  gap, holding stream events meanwhile (``holding.py``);
* ``snapshot_balances`` (``balances.py``) compares a REST account snapshot with the
  stored balances; the exchange wins.
"""

from executor.reconcile.balances import BalanceDiscrepancy, SnapshotResult, compare_snapshot
from executor.reconcile.gapfill import GapFillReport
from executor.reconcile.holding import HoldingBuffer
from executor.reconcile.reconciler import (
    FUTURES_PREFIX,
    ApplyResult,
    OrderUpdate,
    Reconciler,
    futures_symbol,
)

__all__ = [
    "FUTURES_PREFIX",
    "ApplyResult",
    "BalanceDiscrepancy",
    "GapFillReport",
    "HoldingBuffer",
    "OrderUpdate",
    "Reconciler",
    "SnapshotResult",
    "compare_snapshot",
    "futures_symbol",
]
