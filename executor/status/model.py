"""The status of one moment as rows of words: pure, it only reads ``StatusSources``.

``build(src)`` returns a ``View``: a title line and blocks, each either a labelled ``Row``
of styled pieces or a small ``Grid`` (PnL, open orders). ``executor.status.screen`` draws it
with rich or as plain lines; ``render(src)`` is the plain form (one string per line).

Numbers are formatted for reading only (quote amounts to 4 places, quantities to at most
8, prices as the exchange quotes them); no figure is computed here beyond ages and the
basis in bps. Market data older than ``stale_after_s``, or from a stream that is not open,
shows as STALE (red), never as a current price.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from executor.status.sources import StatusSources

__all__ = ["Grid", "Piece", "Row", "View", "ago", "build", "duration", "render"]

_BPS = Decimal(10000)
STALE = "bold red"
WARN = "yellow"
GOOD = "green"
DIM = "dim"
MAX_ORDERS = 8  # open orders listed; the rest are counted
_KINDS = {"book": "spot prices", "mark": "futures marks"}
# Data flows in these states (``rotating``: the old connection serves until the new one is up).
_FLOWING = frozenset({"open", "rotating"})


@dataclass(frozen=True)
class Piece:
    text: str
    style: str = ""


@dataclass
class Row:
    label: str
    pieces: list[Piece]

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.pieces)


@dataclass
class Grid:
    label: str
    header: list[str]
    rows: list[list[Piece]]
    right: frozenset[int] = frozenset()  # right-aligned columns
    note: str = ""  # a line under the grid (e.g. "and 3 more")


@dataclass
class View:
    title: list[Piece]
    blocks: list[Row | Grid] = field(default_factory=list)


# ---------------------------------------------------------------- words for numbers and times


def duration(seconds: float) -> str:
    """12 s, 12 min, 3 h 05 min, 2 d 4 h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def ago(seconds: float) -> str:
    """0.2 s ago, 14 s ago, 3 min ago."""
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f} s ago"
    return f"{duration(seconds)} ago"


def money(value: Decimal | None, places: int = 4, sign: bool = False) -> str:
    if value is None:
        return "-"
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    if not q:
        q = abs(q)  # no "-0.0000"
    return f"{q:+,f}" if sign else f"{q:,f}"


def qty(value: Decimal | None, places: int = 8) -> str:
    """Up to ``places`` decimals, trailing zeros dropped; never exponent notation."""
    if value is None:
        return "-"
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN).normalize()
    text = format(q, "f")
    return "0" if text in ("0", "-0") else text


# ---------------------------------------------------------------- the blocks


def _title(src: StatusSources, now: float) -> list[Piece]:
    clock = dt.datetime.fromtimestamp(src.wall(), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    pieces = [Piece(src.title, "bold"), Piece(f" · {clock} · up {duration(now - src.started)}")]
    if getattr(src.manager, "paused", False) is True:
        pieces.append(Piece(" · PAUSED (new orders refused)", "bold reverse yellow"))
    for flag in src.flags():
        pieces.append(Piece(f" · {flag}", "bold reverse red"))
    return pieces


def _pnl(src: StatusSources) -> Row | Grid:
    rows: list[list[Piece]] = []
    figures = [(name, src.pnl(period)) for name, period in (("since start", "run"), ("today", "day"))]
    quotes: list[str] = []
    for _, fig in figures:
        if fig is not None:
            quotes += [q for q in fig.totals if q not in quotes]
    if all(fig is None for _, fig in figures):
        return Row("PnL", [Piece("waiting for the ledger", DIM)])
    for quote in quotes or ["USDT"]:
        for name, fig in figures:
            if fig is None:
                continue
            t = fig.totals.get(quote, {})
            total = t.get("total", Decimal(0))
            label = name if len(quotes) <= 1 else f"{name} {quote}"
            rows.append([Piece(label), Piece(money(t.get("realized"), sign=True)),
                         Piece(money(t.get("unrealized"), sign=True)), Piece(money(t.get("fees"))),
                         Piece(money(total, sign=True), GOOD if total > 0 else "red" if total < 0 else ""),
                         Piece(str(fig.fills))])
    unit = quotes[0] if len(quotes) == 1 else "quote"
    return Grid(f"PnL ({unit})", ["", "realized", "unrealized", "fees", "total", "fills"], rows,
                right=frozenset({1, 2, 3, 4, 5}),
                note="realized net of fees (FIFO); unrealized at mark")


def _market(src: StatusSources, symbol: str, now: float, streams_down: bool) -> Row:
    st = src.market.get(symbol)
    if st is None or st.book_recv_mono is None:
        return Row(symbol, [Piece("waiting for prices", DIM)])
    pieces: list[Piece] = []
    book_age = now - st.book_recv_mono
    if streams_down or book_age > src.stale_after_s or st.bid is None:
        pieces.append(Piece(f"bid/ask STALE ({ago(book_age)})", STALE))
        book_ok = False
    else:
        pieces.append(Piece(f"bid {qty(st.bid)}  ask {qty(st.ask)}"))
        book_ok = True
    if st.mark is not None and st.mark_recv_mono is not None:
        mark_age = now - st.mark_recv_mono
        if mark_age > src.stale_after_s:
            pieces.append(Piece(f"  mark STALE ({ago(mark_age)})", STALE))
        else:
            pieces.append(Piece(f"  mark {qty(st.mark)}"))
            if book_ok and st.mark > 0 and st.bid is not None and st.ask is not None:
                basis = (st.mark - (st.bid + st.ask) / 2) * _BPS / st.mark
                pieces.append(Piece(f"  basis {basis:+.1f} bps", DIM))
    else:
        pieces.append(Piece("  mark -", DIM))
    return Row(symbol, pieces)


def _positions(src: StatusSources) -> Row:
    held = {a: q for a, q in src.positions().items() if q}
    if not held:
        return Row("positions", [Piece("flat", DIM)])
    text = "  ".join(f"{a} {'+' if q > 0 else ''}{qty(q)}" for a, q in sorted(held.items()))
    return Row("positions", [Piece(text)])


def _balances(src: StatusSources) -> list[Row]:
    raw = src.balances()
    items = list(raw.values()) if isinstance(raw, Mapping) else list(raw)
    rows = []
    for b in sorted(items, key=lambda b: getattr(b, "asset", "")):
        if not b.free and not b.locked:
            continue
        asset = getattr(b, "asset", "?")
        text = f"{asset:<5} free {qty(b.free)}"
        if b.locked:
            text += f"  locked {qty(b.locked)}"
        rows.append(Row("" if rows else "balances", [Piece(text)]))
    return rows or [Row("balances", [Piece("none known yet", DIM)])]


def _orders(src: StatusSources, now_ms: int) -> Row | Grid:
    orders = list(src.open_orders())
    if not orders:
        return Row("orders", [Piece("no open orders", DIM)])
    rows = []
    for o in orders[:MAX_ORDERS]:
        left = None if o.quantity is None else o.quantity - (o.executed_qty or 0)
        status = "" if o.status in ("NEW", "PARTIALLY_FILLED") else f" [{o.status}]"
        rows.append([Piece(o.symbol), Piece(o.side, GOOD if o.side == "BUY" else "red"),
                     Piece(qty(o.price)), Piece(qty(left)),
                     Piece(duration((now_ms - o.created_ms) / 1000)),
                     Piece(((o.reason or "") + status).strip() or "-")])
    more = len(orders) - MAX_ORDERS
    return Grid(f"open orders ({len(orders)})", ["symbol", "side", "price", "qty", "age", "reason"], rows,
                right=frozenset({2, 3, 4}), note=f"and {more} more" if more > 0 else "")


def _stream_words(name: str, state: str, since: float | None, last: float | None, now: float,
                  stale_after: float | None, reconnects: int, extra: str = "") -> Row:
    pieces: list[Piece] = []
    if state not in _FLOWING:
        words = {"backoff": "reconnecting", "connecting": "connecting", "closed": "closed",
                 "idle": "not started"}.get(state, state)
        pieces.append(Piece(f"DOWN ({words})", STALE))
        if last is not None:
            pieces.append(Piece(f", last update {ago(now - last)}"))
    elif stale_after is not None and (last is None or now - last > stale_after):
        age = "nothing received" if last is None else f"last update {ago(now - last)}"
        pieces.append(Piece(f"STALE: {age}", STALE))
    else:
        pieces.append(Piece(f"connected {duration(now - since) if since is not None else '-'}"))
        if state == "rotating":
            pieces.append(Piece(" (switching to a new connection)", DIM))
        if last is not None:
            pieces.append(Piece(f", last update {ago(now - last)}"))
    if reconnects:
        pieces.append(Piece(f", {reconnects} reconnect{'s' if reconnects != 1 else ''}", WARN))
    if extra:
        pieces.append(Piece(extra, DIM))
    return Row(name, pieces)



def _stream_name(name: str) -> str:
    kind, _, n = name.partition("#")
    words = _KINDS.get(kind)
    if words is None:
        return name
    return words if n in ("", "0") else f"{words} {int(n) + 1}"


def _streams(src: StatusSources, now: float) -> tuple[list[Row], bool]:
    rows = []
    down = False
    for h in src.streams():
        row = _stream_words(_stream_name(h.name), h.state, h.connected_since_mono, h.last_message_mono, now,
                            src.stale_after_s, h.reconnects)
        down = down or (h.name.startswith("book") and h.state not in _FLOWING)
        rows.append(row)
    for h in src.user_streams():
        extra = f" · {h.events} events"
        if h.gap_fills:
            extra += f", {h.gap_fills} gap fill{'s' if h.gap_fills != 1 else ''}"
        renewed = getattr(h, "key_recreations", 0)  # futures listenKey streams only
        if renewed:
            extra += f", listen key recreated {renewed}x"
        rows.append(_stream_words(h.name, h.state, h.connected_since_mono, h.last_event_mono, now, None,
                                  h.reconnects, extra))
    for i, row in enumerate(rows):
        row.pieces.insert(0, Piece(f"{row.label}: "))
        row.label = "streams" if i == 0 else ""
    return rows, down


def _activity(src: StatusSources) -> list[Row]:
    stats = src.tracker.stats
    finals = stats.by_final_status
    counts = src.manager.counts
    refused = sum(src.manager.refusals.values())
    parts = [f"orders {stats.orders}", f"filled {finals.get('FILLED', 0)}",
             f"canceled {finals.get('CANCELED', 0)}"]
    for key, words in (("EXPIRED", "expired"), ("REJECTED", "rejected"), ("NOT_PLACED", "never placed")):
        if finals.get(key):
            parts.append(f"{words} {finals[key]}")
    if counts.get("unknown"):
        parts.append(f"unknown {counts['unknown']}")
    rows = [Row("activity", [Piece(", ".join(parts) + f" · fills {stats.fills}")])]
    if refused:
        top = ", ".join(f"{k} {v}" for k, v in src.manager.refusals.most_common(3))
        rows.append(Row("", [Piece(f"refused {refused} ({top})", WARN)]))
    tail = []
    jobs = src.jobs()
    if jobs:
        tail.append("jobs " + ", ".join(f"{k} {v}" for k, v in sorted(jobs.items())))
    recon = src.reconcile()
    if recon:
        tail.append(recon)
    if tail:
        rows.append(Row("", [Piece(" · ".join(tail), DIM)]))
    return rows


def build(src: StatusSources, now: float | None = None) -> View:
    """The view of this moment (``now``: ``time.monotonic()`` seconds)."""
    now = time.monotonic() if now is None else now
    now_ms = int(src.wall() * 1000)
    view = View(_title(src, now))
    stream_rows, book_down = _streams(src, now)
    view.blocks.append(_pnl(src))
    view.blocks += [_market(src, s, now, book_down) for s in src.symbols]
    view.blocks.append(_positions(src))
    view.blocks += _balances(src)
    view.blocks.append(_orders(src, now_ms))
    view.blocks += stream_rows
    view.blocks += _activity(src)
    health = src.health()
    if health:
        # The row is labelled "health"; the monitor's text starts with it too (for the log).
        view.blocks.append(Row("health", [Piece(health.removeprefix("health").strip())]))
    return view


def _grid_lines(g: Grid) -> list[str]:
    cells = [g.header, *[[p.text for p in r] for r in g.rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(g.header))]
    out = []
    for r in cells:
        out.append("  ".join(c.rjust(widths[i]) if i in g.right else c.ljust(widths[i])
                             for i, c in enumerate(r)).rstrip())
    return out


def plain_lines(view: View) -> list[str]:
    """The view as plain text lines (no styles), labels in a 10-wide column."""
    lines = ["".join(p.text for p in view.title)]
    for b in view.blocks:
        if isinstance(b, Row):
            lines.append(f"{b.label:<10}{b.text}")
        else:
            lines.append(b.label)
            lines += [f"  {line}" for line in _grid_lines(b)]
            if b.note:
                lines.append(f"  {b.note}")
    return lines


def render(src: StatusSources, now: float | None = None) -> list[str]:
    """The plain status lines of this moment."""
    return plain_lines(build(src, now))
