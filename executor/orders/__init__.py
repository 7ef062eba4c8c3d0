"""Orders: the order manager (intent -> recorded, sent, resolved order) and the tracker
(the in-memory view of our orders and inventory the strategy and risk checks read)."""

from executor.orders.manager import OrderManager, ResolveTiming
from executor.orders.tracker import OrderTracker, TrackedOrder

__all__ = ["OrderManager", "OrderTracker", "ResolveTiming", "TrackedOrder"]
