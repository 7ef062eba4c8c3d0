"""The bot's figures, computed one way for every place that shows them.

Plain functions over ledger rows (``executor.persistence.records``) and current marks, no
I/O: the web API and dashboard use them now; the terminal status and the audit are meant to
call the same ones (one function per figure, no copies).

* ``pnl``: realized PnL (FIFO, net of fees), unrealized at mark and fees, per symbol and in
  total per quote asset, for a period (``run``, ``day``, ``all``); ``PnlFold`` is the same
  computation fed one fill at a time (the live views keep one per period).
* ``positions``: position per base asset from our fills, net of base-asset commissions.
* ``balances``: balances per asset, and equity valued at mark.
* ``orders``: open orders and the last fills.
"""

from executor.figures.balances import BalanceFigure, balances, equity_at_mark
from executor.figures.orders import last_fills, open_orders
from executor.figures.pnl import PERIODS, PnlFigures, PnlFold, SymbolPnl, period_start_ms, pnl
from executor.figures.positions import positions

__all__ = [
    "PERIODS",
    "BalanceFigure",
    "PnlFigures",
    "PnlFold",
    "SymbolPnl",
    "balances",
    "equity_at_mark",
    "last_fills",
    "open_orders",
    "period_start_ms",
    "pnl",
    "positions",
]
