"""The store's write lock: order-path writes go ahead of waiting batches, nothing is lost."""

from __future__ import annotations

import asyncio

import pytest

from executor.persistence.store import _WriteLock


async def _holder(lock: _WriteLock, name: str, order: list[str], *, urgent: bool = False,
                  release: asyncio.Event | None = None) -> None:
    async with lock.hold(urgent):
        order.append(name)
        if release is not None:
            await release.wait()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_urgent_waiter_goes_before_waiting_batches_and_batches_stay_fifo() -> None:
    lock = _WriteLock()
    order: list[str] = []
    gate = asyncio.Event()
    first = asyncio.create_task(_holder(lock, "batch-0", order, release=gate))
    await _settle()
    tasks = [asyncio.create_task(_holder(lock, f"batch-{i}", order)) for i in (1, 2)]
    await _settle()
    tasks.append(asyncio.create_task(_holder(lock, "intent", order, urgent=True)))
    await _settle()
    assert order == ["batch-0"] and lock.locked()
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, *tasks), 5)
    # The batch in progress is never interrupted; the intent then jumps the queue.
    assert order == ["batch-0", "intent", "batch-1", "batch-2"]
    assert not lock.locked()


async def test_urgent_fast_path_and_no_barging_past_waiters() -> None:
    lock = _WriteLock()
    order: list[str] = []
    await asyncio.wait_for(_holder(lock, "alone", order, urgent=True), 5)
    assert order == ["alone"] and not lock.locked()


async def test_cancelled_waiter_does_not_leak_the_lock() -> None:
    lock = _WriteLock()
    order: list[str] = []
    gate = asyncio.Event()
    first = asyncio.create_task(_holder(lock, "a", order, release=gate))
    await _settle()
    doomed = asyncio.create_task(_holder(lock, "doomed", order, urgent=True))
    later = asyncio.create_task(_holder(lock, "b", order))
    await _settle()
    doomed.cancel()
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, later), 5)
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert order == ["a", "b"] and not lock.locked()


async def test_waiter_cancelled_after_handover_passes_the_lock_on() -> None:
    lock = _WriteLock()
    order: list[str] = []
    await lock.acquire()
    waiter = asyncio.create_task(_holder(lock, "handed", order))
    after = asyncio.create_task(_holder(lock, "next", order))
    await _settle()
    lock.release()  # hands over to ``waiter``, whose task has not resumed yet
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.wait_for(after, 5)
    assert order == ["next"] and not lock.locked()


async def test_release_when_not_held_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _WriteLock().release()
