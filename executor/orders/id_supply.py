"""``IdSupply``: this run's order ids from blocks the ledger has durably reserved.

Why: under ``synchronous=FULL`` an order intent commits without its own fsync (see
``persistence.store``); what makes that safe is that its client id was reserved by a
fsynced commit first, so after a power cut the next start knows which ids may be on the
exchange and asks about them (``reconcile.id_blocks``).

``start()`` reserves the first block (awaited, before trading). From then on the tick path
never waits: when half a block is left the factory calls ``on_low`` and the next block is
reserved in a background task. Only if the ids run out before it is committed does a
``Place`` wait (``OrderManager`` catches ``IdsExhausted`` and awaits ``wait()``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from executor.core.ids import ClientIdFactory

__all__ = ["DEFAULT_BLOCK_SIZE", "IdSupply"]

log = logging.getLogger(__name__)

# 64 ids a block: one fsync per 64 orders, reserved while the first half is still being used.
DEFAULT_BLOCK_SIZE = 64


class IdSupply:
    """Reserves ``block_size`` order seqs at a time for ``factory`` (made with ``blocks=True``)."""

    def __init__(self, store: Any, factory: ClientIdFactory, *, block_size: int = DEFAULT_BLOCK_SIZE) -> None:
        if not factory.blocked:
            raise ValueError("IdSupply needs a ClientIdFactory made with blocks=True")
        if block_size < 2:
            raise ValueError(f"block_size must be at least 2, got {block_size}")
        self.store = store
        self.factory = factory
        self.block_size = block_size
        factory.low_water = block_size // 2
        factory.on_low = self._refill_soon
        self._refill: asyncio.Task[None] | None = None
        self.blocks_reserved = 0
        self.waits = 0  # how often a Place found the ids exhausted (the tick path waited)
        self.failures = 0

    async def start(self) -> None:
        """Reserve the first block (before the first order)."""
        await self._reserve()

    async def _reserve(self) -> None:
        first = self.factory.next_block_first
        lo, hi = await self.store.reserve_id_block(self.factory.run, first, self.block_size)
        self.factory.add_order_block(lo, hi)
        self.blocks_reserved += 1
        log.debug("order ids %s..%s of run %s reserved", lo, hi, self.factory.run)

    def _refill_soon(self) -> None:
        if self._refill is None or self._refill.done():
            self._refill = asyncio.get_running_loop().create_task(self._refill_once(), name="id-block-refill")

    async def _refill_once(self) -> None:
        try:
            await self._reserve()
        except Exception:
            # The ids left go on; when they run out, wait() tries again (and fails the Place).
            self.failures += 1
            log.exception("could not reserve the next block of order ids")

    async def wait(self) -> None:
        """Until an order id is available (reserving a block if none is on its way).
        Raises what the reservation raised: no id, no order."""
        self.waits += 1
        while self.factory.order_ids_left == 0:
            if self._refill is None or self._refill.done():
                await self._reserve()  # its error reaches the caller
            else:
                await asyncio.shield(self._refill)

    @property
    def pending(self) -> asyncio.Task[None] | None:
        """The background reservation in flight, if any (a test or a shutdown awaits it)."""
        task = self._refill
        return task if task is not None and not task.done() else None

    @property
    def used_to(self) -> int:
        """The highest order seq handed out (kept on the blocks a clean end releases)."""
        return self.factory.last_order_seq

    async def stop(self) -> None:
        """Let a reservation in flight finish (its block is then released with the others)."""
        task = self._refill
        if task is not None and not task.done():
            await asyncio.wait([task], timeout=5)
