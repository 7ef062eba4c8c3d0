"""The live status: a compact view of the running bot, redrawn in place on a terminal.

``render(src)`` builds the lines (pure: it only reads the sources): prices, basis in bps and
our inventory per symbol, orders and fills, refusals, balances, stream health and the
scheduler's job counts. ``StatusPrinter`` writes them: on a TTY it moves the cursor back up
and redraws the block with plain ANSI escapes (no curses); otherwise it prints one plain,
prefixed line set every ``interval_s`` so logs and CI output stay readable. Nothing secret
is ever shown (only counts, prices and asset balances).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any

from executor.core.money import format_decimal
from executor.market.state import MarketState

__all__ = ["StatusPrinter", "StatusSources", "render"]

_BPS = Decimal(10000)
_CLEAR_BELOW = "\x1b[J"


def _up(n: int) -> str:
    return f"\x1b[{n}F" if n > 0 else "\r"


@dataclass
class StatusSources:
    """Where the status reads from; every field is read at render time."""

    title: str
    symbols: Sequence[str]
    market: MarketState
    tracker: Any  # OrderTracker
    manager: Any  # OrderManager
    started: float = field(default_factory=time.monotonic)
    balances: Callable[[], Mapping[str, Any]] = dict  # asset -> BalanceRecord-like (free, locked)
    streams: Callable[[], Sequence[Any]] = list  # StreamHealth-like (name, state, frames, ...)
    user_streams: Callable[[], Sequence[str]] = list  # one short text per user stream
    jobs: Callable[[], Mapping[str, int]] = dict  # scheduler job name -> runs
    reconcile: Callable[[], str] = str
    health: Callable[[], str] = str  # executor.health: rss, fds, tasks, loop lag


def _num(value: Decimal | None, places: int = 8) -> str:
    if value is None:
        return "-"
    q = Decimal(1).scaleb(-places)
    return format_decimal(value.quantize(q).normalize()) if value != 0 else "0"


def _symbol_line(src: StatusSources, symbol: str) -> str:
    st = src.market.get(symbol)
    if st is None or not st.has_book:
        return f"  {symbol:<9} waiting for prices"
    basis = "-"
    if st.mark is not None and st.bid is not None and st.ask is not None and st.mark > 0:
        mid = (st.bid + st.ask) / 2
        basis = f"{(st.mark - mid) * _BPS / st.mark:+.1f}bps"
    rules_base = symbol[:-4] if symbol.endswith(("USDT", "USDC")) else symbol
    try:
        base = src.manager.rules[symbol].base_asset
    except (KeyError, AttributeError):
        base = rules_base
    working = len(src.tracker.working(symbol))
    inv = src.tracker.inventory(base)
    return (f"  {symbol:<9} bid {_num(st.bid, 4)} ask {_num(st.ask, 4)} mark {_num(st.mark, 4)} "
            f"basis {basis}  open {working}  inventory {_num(inv)} {base}")


def render(src: StatusSources, now: float | None = None) -> list[str]:
    now = time.monotonic() if now is None else now
    tracker, manager = src.tracker, src.manager
    stats = tracker.stats
    finals = stats.by_final_status
    counts = manager.counts
    refused = sum(manager.refusals.values())
    lines = [
        f"{src.title} · up {now - src.started:.0f}s · orders {stats.orders} "
        f"(open {len(tracker.working())}, filled {finals.get('FILLED', 0)}, "
        f"canceled {finals.get('CANCELED', 0)}, expired {finals.get('EXPIRED', 0)}, "
        f"rejected {finals.get('REJECTED', 0)}, never placed {finals.get('NEVER_PLACED', 0)}, "
        f"unknown {counts.get('unknown', 0)}) · fills {stats.fills} · refused {refused}",
    ]
    lines += [_symbol_line(src, s) for s in src.symbols]
    balances = src.balances()
    if balances:
        parts = []
        for asset in sorted(balances):
            b = balances[asset]
            locked = f"+{_num(b.locked)}" if b.locked else ""
            parts.append(f"{asset} {_num(b.free)}{locked}")
        lines.append("  balances " + "  ".join(parts))
    health = []
    for h in src.streams():
        age = "" if h.last_message_mono is None else f" {now - h.last_message_mono:.1f}s ago"
        health.append(f"{h.name} {h.state} {h.frames}f{age}" + (f" r{h.reconnects}" if h.reconnects else ""))
    health += list(src.user_streams())
    if health:
        lines.append("  streams " + " · ".join(health))
    jobs = src.jobs()
    recon = src.reconcile()
    tail = []
    if jobs:
        tail.append("jobs " + " ".join(f"{k} {v}" for k, v in sorted(jobs.items())))
    if recon:
        tail.append(recon)
    if refused:
        top = ", ".join(f"{k} {v}" for k, v in manager.refusals.most_common(3))
        tail.append(f"refusals {top}")
    if tail:
        lines.append("  " + " · ".join(tail))
    health_text = src.health()
    if health_text:
        lines.append("  " + health_text)
    return lines


class StatusPrinter:
    """Redraws the status in place on a TTY, else prints it every ``interval_s``."""

    def __init__(self, src: StatusSources, out: IO[str] | None = None, *, tty: bool | None = None,
                 interval_s: float | None = None) -> None:
        self.src = src
        self.out = out or sys.stdout
        if tty is None:
            isatty = getattr(self.out, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.interval_s = interval_s if interval_s is not None else (0.5 if tty else 5.0)
        self._drawn = 0
        self.printed = 0

    def draw(self) -> None:
        lines = render(self.src)
        if self.tty:
            # A line that wraps takes two rows, and the cursor-up count would then land
            # inside the previous frame: cut every line to the terminal's width.
            width = max(20, shutil.get_terminal_size((120, 24)).columns - 1)
            text = _up(self._drawn) + _CLEAR_BELOW + "\n".join(line[:width] for line in lines) + "\n"
            self._drawn = len(lines)
        else:
            text = "\n".join("status " + line.strip() for line in lines)
            text += "\n"
        with contextlib.suppress(OSError, ValueError):
            self.out.write(text)
            self.out.flush()
        self.printed += 1

    def forget(self) -> None:
        """Something else wrote to the terminal: draw below it next time, not over it."""
        self._drawn = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Draw now and every ``interval_s`` until ``stop`` is set, then once more."""
        while not stop.is_set():
            self.draw()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
        self.draw()
