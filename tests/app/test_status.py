"""The live status: rich on a terminal (80 columns, log lines kept above it), plain lines
otherwise; PnL, balances, positions and open orders come from ``executor.figures``."""

from __future__ import annotations

import io
import logging
import re
import time
from collections import Counter
from decimal import Decimal
from types import SimpleNamespace

import pyte
from rich.console import Console

from executor.core.orders import Side
from executor.figures import balances, open_orders, pnl, positions
from executor.market.state import MarketState
from executor.orders.tracker import OrderTracker
from executor.persistence.records import FillRow, OrderRecord
from executor.status import StatusPrinter, StatusSources, render
from executor.status.model import ago, duration

D = Decimal
PAIRS = {"BTCUSDT": ("BTC", "USDT")}
NOW_WALL = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeManager:
    def __init__(self, paused: bool = False) -> None:
        self.counts: Counter[str] = Counter(unknown=1)
        self.refusals: Counter[str] = Counter(price_band=2)
        self.rules: dict[str, object] = {}
        self.paused = paused


def _fill(i: int, side: Side, price: str, qty: str, fee: str) -> FillRow:
    p, q = D(price), D(qty)
    t = int(NOW_WALL * 1000) - 60_000 + i
    return FillRow(i, "BTCUSDT", 100 + i, None, f"bx-o{i}", None, side, p, q, p * q, D(fee), "USDT", False, t,
                   "stream", t, 7)


def _order(i: int, side: str, price: str, qty: str, age_s: int, reason: str) -> OrderRecord:
    created = int(NOW_WALL * 1000) - age_s * 1000
    return OrderRecord(i, f"bx-7-o{i}", 1000 + i, 7, "BTCUSDT", side, "LIMIT", "GTC", D(price), D(qty), None,
                       "NEW", "stream", D(0), D(0), created, created, created, created, created, None, None,
                       None, created, reason, False, False, None)


def sources(*, stale_book: bool = False, paused: bool = False,
            book_stream_state: str = "open") -> StatusSources:
    market = MarketState(["BTCUSDT"])
    now = time.monotonic()
    book_at = now - 30 if stale_book else now - 0.2
    market.apply_book("BTCUSDT", 1, D("59990"), D("1"), D("60010"), D("1"), book_at, NOW_WALL)
    market.apply_mark("BTCUSDT", 1, D("60030"), None, None, None, None, now, NOW_WALL)
    fills = [_fill(1, Side.BUY, "60000", "0.01", "0.6"), _fill(2, Side.SELL, "60100", "0.005", "0.3005")]
    marks = {"BTCUSDT": D("60030")}
    figures = {"run": pnl(fills, marks, PAIRS, period="run", run_id=7),
               "day": pnl(fills, marks, PAIRS, period="day", since_ms=0)}
    rows = [SimpleNamespace(asset="USDT", free=D("9551.93"), locked=D("49.80")),
            SimpleNamespace(asset="BTC", free=D("1.005"), locked=D("0"))]
    orders = open_orders([_order(1, "BUY", "59980", "0.001", 3, "quote bid"),
                          _order(2, "SELL", "60040", "0.001", 754, "quote ask")])
    book = SimpleNamespace(name="book#0", state=book_stream_state, connected_since_mono=now - 720,
                           last_message_mono=book_at, reconnects=0)
    user = SimpleNamespace(name="spot-user", state="open", connected_since_mono=now - 720,
                           last_event_mono=now - 5, reconnects=1, events=36, gap_fills=2)
    return StatusSources(title="bx run 7 · sim", symbols=["BTCUSDT"], market=market,
                         tracker=OrderTracker({"BTCUSDT": "BTC"}), manager=FakeManager(paused),
                         balances=lambda: balances(rows), pnl=figures.get,
                         positions=lambda: positions(fills, PAIRS), open_orders=lambda: orders,
                         streams=lambda: [book], user_streams=lambda: [user], jobs=lambda: {"reconcile": 3},
                         health=lambda: "rss 120 MB · fds 34 · tasks 40 · loop lag 1 ms",
                         stale_after_s=5.0, wall=lambda: NOW_WALL)


def _draw(src: StatusSources, width: int = 80) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=True, color_system="truecolor")
    printer = StatusPrinter(src, console=console, route_logs_to_console=False)
    printer.draw()
    printer.stop()
    return buf.getvalue()


def _screen(raw: str, rows: int = 60) -> list[str]:
    """What a real 80-column terminal shows after receiving ``raw``."""
    screen = pyte.Screen(80, rows)
    stream = pyte.Stream(screen)
    stream.feed(raw.replace("\n", "\r\n"))
    return [line.rstrip() for line in screen.display]


def test_renders_pnl_balances_positions_orders_and_streams_at_80_columns() -> None:
    raw = _draw(sources())
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    assert max(len(line) for line in re.split(r"[\r\n]", plain)) <= 80  # rich wrapped: no line relies on
    # the terminal to wrap it
    shown = _screen(raw)
    text = "\n".join(shown)
    assert "2026-01-01 00:00:00 UTC" in text  # the clock
    # PnL from figures.pnl: bought 0.01 @ 60000, sold 0.005 @ 60100 -> +0.5 gross, fees 0.9005,
    # realized 0.5 - 0.9005 = -0.4005; unrealized 0.005 x (60030 - 60000) = +0.15
    pnl_row = next(line for line in shown if "since start" in line)
    assert "-0.4005" in pnl_row and "+0.1500" in pnl_row and "0.9005" in pnl_row and "-0.2505" in pnl_row
    assert any("today" in line and "-0.4005" in line for line in shown)
    assert "PnL (USDT)" in text
    assert "USDT  free 9551.93  locked 49.8" in text and "BTC   free 1.005" in text
    assert "positions BTC +0.005" in text
    assert "open orders (2)" in text
    buy = next(line for line in shown if "quote bid" in line)
    assert buy.split()[:5] == ["BTCUSDT", "BUY", "59980", "0.001", "3"]
    sell = next(line for line in shown if "quote ask" in line)
    assert "12 min" in sell
    assert "bid 59990  ask 60010  mark 60030  basis +5.0 bps" in text
    assert re.search(r"spot prices: connected 12 min, last update 0\.\d s ago", text)
    assert re.search(r"spot-user: connected 12 min, last update 5\.\d s ago, 1 reconnect", text)
    assert "refused 2 (price_band 2)" in text and "reconcile 3" in text
    assert "health    rss 120 MB" in text  # the row the soak branch fills
    assert "PAUSED" not in text and "STALE" not in text


def test_stale_market_data_shows_stale_in_red_not_a_price() -> None:
    raw = _draw(sources(stale_book=True))
    text = "\n".join(_screen(raw))
    assert "bid/ask STALE (30 s ago)" in text and "bid 59990" not in text
    assert "spot prices: STALE: last update 30 s ago" in text
    assert "\x1b[1;31mbid/ask STALE" in raw  # bold red
    # A stream that is down shows the book stale at once, whatever its age.
    down = "\n".join(_screen(_draw(sources(book_stream_state="backoff"))))
    assert "bid/ask STALE" in down and "DOWN (reconnecting)" in down


def test_paused_is_shown() -> None:
    assert "PAUSED (new orders refused)" in "\n".join(_screen(_draw(sources(paused=True))))


def test_log_lines_print_above_the_live_display_and_stay() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=True)
    printer = StatusPrinter(sources(), console=console,
                            route_logs_to_console=True)
    log = logging.getLogger("bx.t")
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.ERROR)  # even so, WARNING and up reach the terminal
    try:
        printer.start()
        printer.draw()
        log.warning("kill switch engaged (file data/KILL)")
        log.info("not shown at ERROR")
        printer.draw()
        log.error("final reconciliation did not complete")
        printer.draw()
        printer.draw()
    finally:
        printer.stop()
        root.setLevel(old_level)
    assert printer.console is console and not any(
        type(h).__name__ == "ConsoleLogHandler" for h in root.handlers)  # handed back
    shown = _screen(buf.getvalue())
    # A log line longer than the terminal folds onto the next row (rich wraps at a space).
    kill = next(i for i, line in enumerate(shown) if "kill switch engaged" in line)
    final = next(i for i, line in enumerate(shown) if "final reconciliation" in line)
    assert "data/KILL)" in shown[kill] + shown[kill + 1] and "complete" in shown[final] + shown[final + 1]
    title = [i for i, line in enumerate(shown) if line.startswith("bx run 7")]
    assert kill < final < title[0] and len(title) == 1  # logs above one whole status, in order
    assert "WARNING" in shown[kill] and "ERROR" in shown[final]
    assert not any("not shown at ERROR" in line for line in shown)
    assert any("health" in line for line in shown[title[0]:])  # the status is whole below them


def test_piped_output_keeps_plain_status_lines() -> None:
    plain = io.StringIO()
    StatusPrinter(sources(), plain, tty=False).draw()
    out = plain.getvalue()
    assert "\x1b" not in out
    lines = out.splitlines()
    assert all(line.startswith("status ") for line in lines)
    assert lines[0].startswith("status bx run 7 · sim · 2026-01-01 00:00:00 UTC")
    assert any("since start" in line and "-0.4005" in line for line in lines)
    text = "\n".join(render(sources()))
    assert "bid 59990  ask 60010" in text and "USDT  free 9551.93  locked 49.8" in text


def test_words_for_times() -> None:
    assert (duration(12), duration(720), duration(3900), duration(90000)) == \
        ("12 s", "12 min", "1 h 05 min", "1 d 1 h")
    assert (ago(0.23), ago(14)) == ("0.2 s ago", "14 s ago")


