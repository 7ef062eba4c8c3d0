"""``StatusPrinter``: shows the status while the bot runs.

On a terminal: a rich ``Live`` display redrawn every ``interval_s`` (0.5 s), with the log
lines routed through the same console (``terminal_log.route_logs``) so they print above it
and stay; ``print`` to stdout/stderr is redirected above it too. The last frame stays on the
screen when the run ends. Otherwise (a pipe, a file, CI): the plain lines, each prefixed
``status ``, every ``interval_s`` (5 s), so logs and CI output stay readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from contextlib import ExitStack
from typing import IO

from rich.console import Console
from rich.live import Live

from executor.status.model import build, plain_lines
from executor.status.screen import renderable
from executor.status.sources import StatusSources
from executor.status.terminal_log import route_logs

__all__ = ["StatusPrinter"]

log = logging.getLogger(__name__)


class StatusPrinter:
    """Draws the status: ``start()``, ``draw()`` as often as wanted, ``stop()``; or ``run(stop)``."""

    def __init__(self, src: StatusSources, out: IO[str] | None = None, *, tty: bool | None = None,
                 interval_s: float | None = None, console: Console | None = None,
                 route_logs_to_console: bool = True) -> None:
        self.src = src
        self.out = out or sys.stdout
        if console is not None:
            tty = console.is_terminal if tty is None else tty
        elif tty is None:
            isatty = getattr(self.out, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        if tty and console is None:
            # A real terminal is measured; a forced one (tests) gets 80 columns.
            is_real = self.out is sys.stdout and sys.stdout.isatty()
            console = Console(file=self.out, force_terminal=True, width=None if is_real else 80)
        self.console = console
        self.route_logs = route_logs_to_console
        self.interval_s = interval_s if interval_s is not None else (0.5 if tty else 5.0)
        self.printed = 0
        self._live: Live | None = None
        self._stack: ExitStack | None = None
        self._warned = False

    def start(self) -> None:
        """On a terminal: start the live display and route the log lines through it."""
        if not self.tty or self._live is not None:
            return
        assert self.console is not None
        stack = ExitStack()
        if self.route_logs:
            stack.enter_context(route_logs(self.console))
        live = Live(console=self.console, auto_refresh=False, transient=False,
                    redirect_stdout=True, redirect_stderr=True)
        stack.enter_context(live)
        self._live, self._stack = live, stack

    def stop(self) -> None:
        """Leave the last frame on the screen and give the terminal back to the log handlers."""
        stack, self._live, self._stack = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(OSError, ValueError):
                stack.close()

    def draw(self) -> None:
        try:
            view = build(self.src)
        except Exception as exc:  # noqa: BLE001 - a source not ready or broken must not end the status for the run
            if not self._warned:
                self._warned = True
                log.warning("status: cannot draw (%s: %s); retrying every %.1f s",
                            type(exc).__name__, exc, self.interval_s)
            return
        if self.tty:
            if self._live is None:
                self.start()
            assert self._live is not None
            with contextlib.suppress(OSError, ValueError):
                self._live.update(renderable(view), refresh=True)
        else:
            text = "\n".join("status " + line.rstrip() for line in plain_lines(view) if line.strip()) + "\n"
            with contextlib.suppress(OSError, ValueError):
                self.out.write(text)
                self.out.flush()
        self.printed += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Draw now and every ``interval_s`` until ``stop`` is set, then once more."""
        try:
            while not stop.is_set():
                self.draw()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval_s)
            self.draw()
        finally:
            self.stop()
