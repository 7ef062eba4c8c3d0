"""``audit --plot``: one PNG per symbol that shows why money was made or lost.

Top: the market as the bot saw it over the run (the bid, ask and mark recorded with every
order decision, placed or not: the ledger's only market record) with our fills on it (buys
and sells marked at their prices). Bottom: the symbol's equity at mark: cash flow (net of
quote and third-asset fees) plus inventory valued at the latest mark known at that moment
(the decision mark, else the decision mid, else the last fill price), stepping at every
fill and every recorded market point.

matplotlib is an optional extra; floats are fine here, the chart is only a picture.
Files are named ``<ledger stem>[-run<N>]-<SYMBOL>.png``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from executor.audit.query import AuditDB, FillRow, Scope
from executor.audit.report import AuditReport, PriceSeries
from executor.core.orders import Side
from executor.core.pnl import trade_and_fee

__all__ = ["PlotUnavailable", "equity_at_mark", "plot_symbols", "require_matplotlib"]

INSTALL_HINT = "install with: pip install -e '.[plot]'"
MAX_POINTS = 20_000  # per series; larger sets are thinned evenly
Context = tuple[int, Decimal | None, Decimal | None, Decimal | None]  # (ms, bid, ask, mark)


class PlotUnavailable(Exception):
    """matplotlib is not installed."""


def require_matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable(f"--plot needs matplotlib, which is not installed; {INSTALL_HINT}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mark_of(point: Context) -> Decimal | None:
    _, bid, ask, mark = point
    if mark is not None:
        return mark
    if bid is not None and ask is not None:
        return (bid + ask) / 2
    return None


def equity_at_mark(fills: Sequence[FillRow], context: Sequence[Context], base: str, quote: str,
                   price_at: Callable[[str, int], Decimal | None] | None = None) -> list[tuple[int, Decimal]]:
    """(time, cash + inventory x mark) at every fill and market point, in quote. A third-asset
    fee is converted with ``price_at(<asset><quote>, time)`` (left out when unknown)."""

    def convert(asset: str, amount: Decimal, fill: FillRow) -> Decimal:
        price = price_at(asset + quote, fill.time_ms) if price_at is not None else None
        return Decimal(0) if price is None else amount * price

    events: list[tuple[int, int, Any]] = [(c[0], 0, c) for c in context]
    events += [(f.time_ms, 1, f) for f in fills if f.side is not None]
    events.sort(key=lambda e: (e[0], e[1]))
    cash = qty = Decimal(0)
    mark: Decimal | None = None
    out: list[tuple[int, Decimal]] = []
    for t, kind, item in events:
        if kind == 0:
            mark = _mark_of(item) or mark
        else:
            f: FillRow = item
            dq, fee = trade_and_fee(f, base, quote, convert)  # type: ignore[arg-type]
            cash += -f.quote_qty if f.side is Side.BUY else f.quote_qty
            qty += dq
            if f.commission_asset != base:
                cash -= fee
            if mark is None:
                mark = f.price
        if mark is not None:
            out.append((t, cash + qty * mark))
    return out


def _thin(items: list[Any]) -> list[Any]:
    if len(items) <= MAX_POINTS:
        return items
    step = len(items) / MAX_POINTS
    return [items[int(i * step)] for i in range(MAX_POINTS)]


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _line(ax: Any, points: list[tuple[int, Decimal]], **kw: Any) -> None:
    pts = _thin(points)
    if pts:
        ax.plot([_dt(t) for t, _ in pts], [float(v) for _, v in pts], drawstyle="steps-post", **kw)


def plot_symbols(rep: AuditReport, db: AuditDB, scope: Scope, out_dir: Path) -> list[Path]:
    """Write one PNG per symbol with fills into ``out_dir``; returns the files written."""
    plt = require_matplotlib()
    out_dir.mkdir(parents=True, exist_ok=True)
    prices = PriceSeries(db, scope.until_ms)
    stem = db.path.stem + (f"-run{scope.run_id}" if scope.run_id is not None else "")
    written = []
    for sr in rep.symbols:
        fills = [f for f in rep.fills if f.symbol == sr.symbol and f.side is not None]
        if not fills:
            continue
        context = db.market_context(sr.symbol, scope)
        fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(11, 7), height_ratios=(3, 2))
        _line(ax1, [(t, b) for t, b, _, _ in context if b is not None], color="tab:green", linewidth=0.8,
              alpha=0.7, label="bid (at decisions)")
        _line(ax1, [(t, a) for t, _, a, _ in context if a is not None], color="tab:red", linewidth=0.8,
              alpha=0.7, label="ask (at decisions)")
        _line(ax1, [(t, m) for t, _, _, m in context if m is not None], color="tab:purple", linewidth=1.0,
              label="mark (at decisions)")
        pts = _thin([(_dt(f.time_ms), float(f.price), f.side is Side.BUY) for f in fills])
        buys = [p for p in pts if p[2]]
        sells = [p for p in pts if not p[2]]
        ax1.scatter([p[0] for p in buys], [p[1] for p in buys], marker="^", color="darkgreen", s=28,
                    zorder=3, label="our buy")
        ax1.scatter([p[0] for p in sells], [p[1] for p in sells], marker="v", color="darkred", s=28,
                    zorder=3, label="our sell")
        ax1.set_ylabel(f"price ({sr.quote})")
        ax1.set_title(f"{sr.symbol}: {sr.fills} fills, realized FIFO {sr.realized_fifo:.4f} {sr.quote} "
                      f"(fees {sr.fees_quote:.4f})")
        ax1.legend(loc="best", fontsize="small")
        eq = equity_at_mark(fills, context, sr.base, sr.quote, prices)
        _line(ax2, eq, color="tab:blue", label="equity at mark")
        ax2.axhline(0, color="0.8", linewidth=0.8)
        ax2.set_ylabel(f"equity at mark ({sr.quote})")
        ax2.set_xlabel("time (UTC)")
        fig.autofmt_xdate()
        fig.tight_layout()
        path = out_dir / f"{stem}-{sr.symbol}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
