"""The live status of a running bot, for the person at the terminal.

* ``sources``: ``StatusSources``, where the status reads from (every field read at render
  time; the figures come from ``executor.figures`` through the ledger watch, never computed
  here).
* ``model``: ``build(src)``, the pure view of one moment as labelled rows and small tables
  (PnL, market, positions, balances, open orders, streams in words, activity, health).
* ``screen``: that view drawn with ``rich`` (80 columns and up) or as plain ``status`` lines.
* ``printer``: ``StatusPrinter``: a rich ``Live`` display on a terminal with the log lines
  printed above it through the same console (``terminal_log``), plain lines otherwise.
"""

from executor.status.model import build, render
from executor.status.printer import StatusPrinter
from executor.status.sources import StatusSources

__all__ = ["StatusPrinter", "StatusSources", "build", "render"]
