"""``_WriteLock``: the store's in-process write lock, with a fast lane for the order path."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class _WriteLock:
    """The store's in-process write lock, with a fast lane for the order path.

    Waiters are served first come, first served, except that ``urgent`` ones (the
    record-before-send statements: one short autocommit each) go ahead of every waiting
    batch. A batch that already holds the lock is never interrupted, so every write stays
    its own whole transaction; an urgent write waits for at most the one transaction in
    progress (the reconciler caps its batches with ``batch_max``) instead of the whole
    queue behind it. Release hands the lock straight to the next waiter, so a late
    arrival cannot slip in between.
    """

    __slots__ = ("_held", "_normal", "_urgent")

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._held

    async def acquire(self, urgent: bool = False) -> None:
        if not self._held and not self._urgent and (urgent or not self._normal):
            self._held = True
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._normal
        queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed over just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(fut)
            raise

    def release(self) -> None:
        if not self._held:
            raise RuntimeError("store write lock released while not held")
        for queue in (self._urgent, self._normal):
            while queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_result(None)  # ownership passes over; the lock stays held
                    return
        self._held = False

    @asynccontextmanager
    async def hold(self, urgent: bool = False) -> AsyncIterator[None]:
        await self.acquire(urgent)
        try:
            yield
        finally:
            self.release()
