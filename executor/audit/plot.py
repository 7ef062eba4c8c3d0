"""``audit --plot``: one PNG per symbol, fill prices with buys and sells marked over the
equity curve (cash flow plus inventory marked at each fill's price, net of base and quote
fees). matplotlib is an optional extra; floats are fine here, the chart is only a picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from executor.audit.query import FillRow
from executor.audit.report import AuditReport

__all__ = ["PlotUnavailable", "equity_curve", "plot_symbols", "require_matplotlib"]

INSTALL_HINT = "install with: pip install -e '.[plot]'"
MAX_POINTS = 20_000  # per series; larger sets are thinned evenly


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


def equity_curve(fills: Sequence[FillRow], base: str, quote: str) -> list[tuple[int, Decimal]]:
    """(time, cash + inventory x fill price) after each fill, in quote; fees in a third asset
    are not in it (they have no price here)."""
    cash = qty = Decimal(0)
    out = []
    for f in fills:
        if f.side is None:
            continue
        sign = 1 if f.side == "BUY" else -1
        qty += sign * f.qty
        cash -= sign * f.quote_qty
        if f.commission and f.commission_asset == quote:
            cash -= f.commission
        elif f.commission and f.commission_asset == base:
            qty -= f.commission
        out.append((f.time_ms, cash + qty * f.price))
    return out


def _thin(items: list[Any]) -> list[Any]:
    if len(items) <= MAX_POINTS:
        return items
    step = len(items) / MAX_POINTS
    return [items[int(i * step)] for i in range(MAX_POINTS)]


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def plot_symbols(rep: AuditReport, out_dir: Path) -> list[Path]:
    """Write ``<SYMBOL>.png`` for every symbol with fills; returns the files written."""
    plt = require_matplotlib()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for sr in rep.symbols:
        fills = [f for f in rep.fills if f.symbol == sr.symbol and f.side is not None]
        if not fills:
            continue
        fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(11, 7), height_ratios=(3, 2))
        pts = _thin([(_dt(f.time_ms), float(f.price), f.side == "BUY") for f in fills])
        ax1.plot([p[0] for p in pts], [p[1] for p in pts], color="0.6", linewidth=0.8, label="fill price")
        buys = [p for p in pts if p[2]]
        sells = [p for p in pts if not p[2]]
        ax1.scatter(
            [p[0] for p in buys], [p[1] for p in buys], marker="^", color="tab:green", s=18, label="buy"
        )
        ax1.scatter(
            [p[0] for p in sells], [p[1] for p in sells], marker="v", color="tab:red", s=18, label="sell"
        )
        ax1.set_ylabel(f"price ({sr.quote})")
        ax1.set_title(f"{sr.symbol}: {sr.fills} fills, realized FIFO {sr.realized_fifo:.4f} {sr.quote}")
        ax1.legend(loc="best")
        eq = _thin(equity_curve(fills, sr.base, sr.quote))
        ax2.plot([_dt(t) for t, _ in eq], [float(v) for _, v in eq], color="tab:blue")
        ax2.axhline(0, color="0.8", linewidth=0.8)
        ax2.set_ylabel(f"equity ({sr.quote})")
        ax2.set_xlabel("time (UTC)")
        fig.autofmt_xdate()
        fig.tight_layout()
        path = out_dir / f"{sr.symbol}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
