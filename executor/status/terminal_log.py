"""Log lines on the terminal while the live status is drawn: through the status's console.

``ConsoleLogHandler`` prints each record with ``console.print``; a rich ``Live`` display on
that console then prints it above itself and redraws below, so a redraw never covers a log
line. ``route_logs(console)`` swaps the root logger's terminal handlers (stream handlers
writing to a TTY, such as the one ``executor.run.logs.setup_logging`` installs on stderr) for
one such handler, keeping their formatter, filters (secret redaction) and level, and puts
them back on exit. WARNING and up always reach the terminal: when the configured level is
higher, the root level is lowered to WARNING and the other handlers keep the configured one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.text import Text

from executor.run.logs import RedactingFilter, TextFormatter

__all__ = ["ConsoleLogHandler", "route_logs"]

_STYLES = {logging.WARNING: "yellow", logging.ERROR: "bold red", logging.CRITICAL: "bold white on red"}


class ConsoleLogHandler(logging.Handler):
    """Prints records through a rich console (no markup: a log text is shown as it is)."""

    def __init__(self, console: Console, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            style = _STYLES.get(record.levelno) if record.levelno < logging.CRITICAL else \
                _STYLES[logging.CRITICAL]
            self.console.print(Text(text, style=style or ""), soft_wrap=False, overflow="fold",
                               highlight=False, markup=False)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def _writes_to_terminal(handler: logging.Handler) -> bool:
    if isinstance(handler, logging.FileHandler) or not isinstance(handler, logging.StreamHandler):
        return False
    isatty = getattr(handler.stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def route_logs(console: Console, *, replace: Callable[[logging.Handler], bool] = _writes_to_terminal,
               ) -> Iterator[ConsoleLogHandler]:
    """Route terminal log output through ``console`` until the block ends."""
    root = logging.getLogger()
    old_level = root.level
    replaced = [h for h in root.handlers if replace(h)]
    handler = ConsoleLogHandler(console)
    if replaced:
        first = replaced[0]
        handler.setFormatter(first.formatter or TextFormatter())
        for f in first.filters:
            handler.addFilter(f)
        handler.setLevel(min(first.level or old_level, logging.WARNING))
    else:
        # Nothing was writing to the terminal (stderr redirected): show WARNING and up.
        handler.setFormatter(TextFormatter())
        handler.addFilter(RedactingFilter())
        handler.setLevel(logging.WARNING)
    kept_levels = {}
    if old_level > logging.WARNING:
        for h in root.handlers:
            if h not in replaced:
                kept_levels[h] = h.level
                h.setLevel(max(h.level, old_level))
        root.setLevel(logging.WARNING)
    for h in replaced:
        root.removeHandler(h)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for h in replaced:
            root.addHandler(h)
        for h, level in kept_levels.items():
            h.setLevel(level)
        root.setLevel(old_level)
