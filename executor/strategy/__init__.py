"""Strategies: the interface (``base``), loading by dotted path (``loader``), and the
reference basis strategy (``basis``). Pure decision code: no sockets, no database.
"""

from executor.strategy.base import OrderView, ParamError, Params, Strategy, StrategyContext

__all__ = ["OrderView", "ParamError", "Params", "Strategy", "StrategyContext"]
