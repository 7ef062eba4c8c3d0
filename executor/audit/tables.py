"""The tables a trader reads: ``audit trades`` (one line per fill) and ``audit daily``
(one line per UTC day and quote asset). Numbers through ``executor.audit.numbers`` (display
only); the figures come from the report's fold (slippage) and ``executor.audit.daily``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from executor.audit.daily import DayFigures
from executor.audit.numbers import amount, pct, quantity
from executor.audit.query import FillRow, OrderRow, fmt_iso

__all__ = ["render_daily", "render_trades", "trade_rows"]

REASON_CHARS = 72  # the table's last column; the full text is in the fills/orders CSV (--out)

DAILY_NOTES = (
    "PnL: realized FIFO (positions carried across days) before and after the day's fees, in quote.",
    "round trip: a fill that closes (part of) a position; its fees are its own plus the opening "
    "fills' share; a win when its gross edge exceeds them.",
)


def _table(rows: Sequence[Sequence[str]], header: Sequence[str], left: frozenset[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        cells = (c.ljust(widths[i]) if i in left else c.rjust(widths[i]) for i, c in enumerate(r))
        return "  ".join(cells).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def trade_rows(fills: Sequence[FillRow], orders: Mapping[int, OrderRow],
               slippage: Mapping[int, tuple[Decimal | None, Decimal | None]]) -> list[list[str]]:
    """time, symbol, side, qty, price, fee, slippage vs mid (bps, + = cost), reason."""
    rows = []
    for f in fills:
        order = orders.get(f.order_id) if f.order_id is not None else None
        mid = slippage.get(f.id, (None, None))[0]
        fee = f"{quantity(f.commission)} {f.commission_asset or ''}".rstrip() if f.commission else "0"
        reason = (order.reason if order is not None else None) or ("external" if order is not None
                                                                   and order.external else "-")
        if len(reason) > REASON_CHARS:
            reason = reason[: REASON_CHARS - 1] + "…"
        rows.append([fmt_iso(f.time_ms), f.symbol, f.side.value if f.side is not None else "?",
                     quantity(f.qty), quantity(f.price), fee, amount(mid, 2, sign=True) if mid is not None
                     else "-", reason])
    return rows


def render_trades(fills: Sequence[FillRow], orders: Mapping[int, OrderRow],
                  slippage: Mapping[int, tuple[Decimal | None, Decimal | None]], scope: str) -> str:
    if not fills:
        return f"no fills in scope ({scope})\n"
    out = [f"TRADES ({len(fills)}, {scope}); times UTC; slippage vs the decision-time mid, bps, + = cost"]
    out += _table(trade_rows(fills, orders, slippage),
                  ["time", "symbol", "side", "qty", "price", "fee", "slip", "reason"],
                  left=frozenset({0, 1, 2, 5, 7}))
    return "\n".join(out) + "\n"


def render_daily(days: Sequence[DayFigures], scope: str) -> str:
    if not days:
        return f"no fills in scope ({scope})\n"
    out = [f"DAILY ({scope}); UTC days; amounts in the quote asset"]
    header = ["day", "quote", "fills", "volume", "fees", "gross PnL", "net PnL", "trips", "wins", "win rate",
              "edge/trip", "fees/trip"]
    by_quote: dict[str, DayFigures] = {}
    for d in days:
        t = by_quote.setdefault(d.quote, DayFigures("total", d.quote))
        t.fills += d.fills
        t.volume += d.volume
        t.fees += d.fees
        t.gross += d.gross
        t.round_trips += d.round_trips
        t.wins += d.wins
        t.trip_gross += d.trip_gross
        t.trip_fees += d.trip_fees
    shown = [*days, *by_quote.values()] if len(days) > 1 else list(days)
    rows = [[d.day, d.quote, str(d.fills), amount(d.volume, 2), amount(d.fees), amount(d.gross, sign=True),
             amount(d.realized, sign=True), str(d.round_trips), str(d.wins), pct(d.win_rate),
             amount(d.edge_per_trip, sign=True), amount(d.fees_per_trip)] for d in shown]
    out += _table(rows, header, left=frozenset({0, 1}))
    unconverted: dict[str, Decimal] = {}
    for d in days:
        for a, v in d.unconverted.items():
            unconverted[a] = unconverted.get(a, Decimal(0)) + v
    out.append("")
    out += [f"note: {n}" for n in DAILY_NOTES]
    if unconverted:
        out.append("note: fees with no known price to convert them to quote (left out): "
                   + ", ".join(f"{quantity(v)} {a}" for a, v in sorted(unconverted.items())))
    return "\n".join(out) + "\n"
