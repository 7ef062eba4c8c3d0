"""Market state per symbol (latest book ticker, mark price, staleness); no I/O."""

from executor.market.state import APPLIED, CONFLATED, DROPPED, Changes, MarketState, SymbolState

__all__ = ["APPLIED", "CONFLATED", "DROPPED", "Changes", "MarketState", "SymbolState"]
