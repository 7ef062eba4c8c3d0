"""Signal handling for a graceful stop: the first SIGINT/SIGTERM asks, the second insists.

``Shutdown`` is the run's stop switch. The first signal (or ``request``, e.g. when
``--duration`` is up) sets ``stopping`` and names the reason; the app then stops the
strategy, cancels our orders, reconciles and closes the run row, each step bounded by
``step``. A second signal sets ``forced``: every step still waiting is abandoned at once
(its coroutine cancelled), the run row is closed as ``forced`` and the app exits. That
never leaves the database inconsistent, because every ledger write is its own
transaction: an abandoned step has either committed or left nothing. A third signal
exits the process immediately (``os._exit``), for a step that ignores cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable
from typing import Any, TypeVar

from executor.run.failures import EXIT_FORCED

__all__ = ["Shutdown", "StepSkipped"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class StepSkipped(Exception):
    """A shutdown step did not finish: forced exit or its time limit."""


class Shutdown:
    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.forced = asyncio.Event()
        self.reason = ""
        self.signals = 0
        self._installed: list[int] = []

    # -- triggers ------------------------------------------------------------------------

    def request(self, reason: str) -> None:
        """Ask for a graceful stop (idempotent: the first reason is kept)."""
        if not self.stopping.is_set():
            self.reason = reason
            self.stopping.set()

    def on_signal(self, signum: int) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            log.warning("%s: stopping gracefully (strategy off, cancel ours, reconcile); "
                        "press Ctrl-C again to force", name)
            self.request(name)
        elif self.signals == 2:
            log.warning("%s again: forcing exit (every ledger write is its own transaction)", name)
            self.forced.set()
        else:
            os._exit(EXIT_FORCED)

    def install(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        loop = loop or asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.on_signal, int(sig))
                self._installed.append(int(sig))

    def uninstall(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        loop = loop or asyncio.get_running_loop()
        for sig in self._installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        self._installed = []

    # -- waiting -------------------------------------------------------------------------

    async def wait(self, timeout: float | None = None) -> bool:
        """Until a stop is requested (True) or ``timeout`` passes (False)."""
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def step(self, name: str, work: Awaitable[T], timeout: float) -> T:
        """Run one shutdown step unless forced; raises ``StepSkipped`` if it cannot finish."""
        task: asyncio.Future[T] = asyncio.ensure_future(work)
        if self.forced.is_set():
            await _cancel_step(name, task)
            raise StepSkipped(f"{name}: skipped (forced exit)")
        forced = asyncio.ensure_future(self.forced.wait())
        try:
            done, _ = await asyncio.wait({task, forced}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            forced.cancel()
        if task in done:
            return task.result()
        await _cancel_step(name, task)
        why = "forced exit" if self.forced.is_set() else f"no result within {timeout:g} s"
        log.warning("shutdown step %s abandoned: %s", name, why)
        raise StepSkipped(f"{name}: {why}")

    async def try_step(self, name: str, work: Awaitable[Any], timeout: float) -> bool:
        """``step`` that logs instead of raising; True if the step finished."""
        try:
            await self.step(name, work, timeout)
        except StepSkipped:
            return False
        except Exception as exc:
            from executor.run.failures import classify

            log.warning("shutdown step %s failed: %s", name, classify(exc).line)
            log.debug("shutdown step %s failed", name, exc_info=exc)
            return False
        return True


async def _cancel_step(name: str, task: asyncio.Future[Any]) -> None:
    """Cancel an abandoned step and wait for it to unwind. Its own end (cancelled, or an
    error while unwinding) is logged, never swallowed; a cancellation of the caller
    propagates (``asyncio.wait`` does not absorb it)."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        log.warning("shutdown step %s failed while being cancelled", name, exc_info=task.exception())
