"""The live status: redrawn in place on a terminal, plain prefixed lines otherwise."""

from __future__ import annotations

import io
import os
import time
from decimal import Decimal
from typing import Any

from executor.market.state import MarketState
from executor.orders.tracker import OrderTracker
from executor.status import StatusPrinter, StatusSources, render


class FakeManager:
    def __init__(self) -> None:
        from collections import Counter

        self.counts: Counter[str] = Counter(unknown=1)
        self.refusals: Counter[str] = Counter(price_band=2)
        self.rules: dict[str, object] = {}


def sources() -> StatusSources:
    market = MarketState(["BTCUSDT"])
    now, wall = time.monotonic(), time.time()
    market.apply_book("BTCUSDT", 1, Decimal("59990"), Decimal("1"), Decimal("60010"), Decimal("1"), now, wall)
    market.apply_mark("BTCUSDT", 1, Decimal("60030"), None, None, None, None, now, wall)

    class Bal:
        free, locked = Decimal("10000.5"), Decimal("0")

    return StatusSources(title="bx run 7 · sim", symbols=["BTCUSDT"], market=market,
                         tracker=OrderTracker({"BTCUSDT": "BTC"}), manager=FakeManager(),
                         balances=lambda: {"USDT": Bal()}, jobs=lambda: {"reconcile": 3})


def test_render_shows_prices_basis_orders_balances_and_jobs() -> None:
    text = "\n".join(render(sources()))
    assert "bx run 7" in text and "BTCUSDT" in text and "mark 60030" in text
    assert "basis +5.0bps" in text  # (60030 - 60000) / 60030
    assert "USDT 10000.5" in text and "reconcile 3" in text and "price_band 2" in text


def test_terminal_redraws_in_place_and_pipes_get_plain_lines() -> None:
    out = io.StringIO()
    tty = StatusPrinter(sources(), out, tty=True)
    tty.draw()
    first = out.getvalue()
    tty.draw()
    second = out.getvalue()[len(first):]
    lines = len(render(sources()))
    assert second.startswith(f"\x1b[{lines}F\x1b[J")  # back up over the last block, clear, redraw

    plain = io.StringIO()
    StatusPrinter(sources(), plain, tty=False).draw()
    assert "\x1b" not in plain.getvalue()
    assert all(line.startswith("status ") for line in plain.getvalue().splitlines())


def test_terminal_lines_are_cut_to_the_width_so_redraws_do_not_drift(monkeypatch: Any) -> None:
    monkeypatch.setattr("shutil.get_terminal_size", lambda fallback=(120, 24): os.terminal_size((40, 24)))
    out = io.StringIO()
    StatusPrinter(sources(), out, tty=True).draw()
    rows = out.getvalue().replace("\x1b[J", "").replace("\r", "").split("\n")
    assert max(len(r) for r in rows) <= 39   # one wrapped line would break the cursor-up count
