"""The hold-and-release buffer used while a gap fill runs.

During a gap fill the reconciler rebuilds the truth from REST; stream events that arrive
meanwhile must not be applied in between (an older REST answer would then be compared
against a newer stream state, and the order of facts in the ledger would depend on
timing). They are held here, in arrival order, and released in that same order once the
REST picture is applied; idempotent application absorbs the overlap between the two.
``take_where`` lets a REST account snapshot apply only the held events that happened before
it (by exchange time) and keep the newer ones until its rows are written.

Pure: no I/O, no clock. Not thread-safe (one event loop owns it).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["HoldingBuffer"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Depth at which a warning is logged (once per hold): a gap fill this slow is worth knowing about.
WARN_DEPTH = 100_000


class HoldingBuffer(Generic[T]):
    """Items offered while holding are kept (FIFO); otherwise ``offer`` declines them.

    Typical use: ``hold()``; the writer ``offer``s every incoming item and applies those it
    gets back False for; when done, repeatedly ``take`` and apply until empty, then
    ``stop_holding()`` (``release`` does the take-all-and-stop in one step).
    """

    def __init__(self, warn_depth: int = WARN_DEPTH) -> None:
        self._items: deque[T] = deque()
        self._holding = False
        self._warn_depth = warn_depth
        self._warned = False
        self.held_total = 0  # items ever held, for status output
        self.max_depth = 0

    @property
    def holding(self) -> bool:
        return self._holding

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(tuple(self._items))

    def hold(self) -> None:
        """Start holding (idempotent: a second hold keeps what is already held)."""
        if not self._holding:
            self._holding = True
            self._warned = False

    def offer(self, item: T) -> bool:
        """Keep ``item`` and return True while holding; return False (not kept) otherwise."""
        if not self._holding:
            return False
        self._items.append(item)
        self.held_total += 1
        depth = len(self._items)
        if depth > self.max_depth:
            self.max_depth = depth
        if depth >= self._warn_depth and not self._warned:
            self._warned = True
            log.warning("holding %d stream events while a gap fill runs", depth)
        return True

    def take(self, limit: int | None = None) -> list[T]:
        """Remove and return up to ``limit`` held items (all if None), oldest first."""
        n = len(self._items) if limit is None else min(limit, len(self._items))
        return [self._items.popleft() for _ in range(n)]

    def take_where(self, due: Callable[[T], bool], limit: int | None = None) -> list[T]:
        """Remove and return up to ``limit`` held items for which ``due`` is true (all of
        them if None), oldest first; the others stay held, in their arrival order. Nothing
        is removed if ``due`` raises."""
        taken: list[T] = []
        kept: deque[T] = deque()
        for item in self._items:
            if (limit is None or len(taken) < limit) and due(item):
                taken.append(item)
            else:
                kept.append(item)
        self._items = kept
        return taken

    def stop_holding(self) -> None:
        """Stop holding; refuses while items are still held (they would be overtaken)."""
        if self._items:
            raise RuntimeError(f"{len(self._items)} held items must be taken before holding stops")
        self._holding = False

    def release(self) -> list[T]:
        """Take every held item (arrival order) and stop holding, in one step."""
        items = self.take()
        self._holding = False
        return items
