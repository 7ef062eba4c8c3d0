"""``audit carry``: one row per cash-and-carry position (spot leg + USD-M perpetual leg).

A carry position of a symbol opens when its spot leg or its perpetual leg (ledger symbol
``UM:<SYMBOL>``) leaves zero while both were flat, and closes when both are back at zero.
For each: the spot leg's and the perpetual leg's cash PnL (sells minus buys, so a position
still open shows what was paid so far), the funding received (+) or paid (-) on the
perpetual between open and close (``futures_income``), the fees of both legs in quote
(a base-asset commission is valued at its fill price), the basis at entry and at exit (mark
against the spot mid the first and the last order were decided on, in bps) and the net.

``fold_carry`` is pure (rows in, positions out); ``carry_report`` reads the ledger through an
``AuditDB`` (the futures fills from ``main.fills``: the spot audit's view leaves them out).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from executor.core.money import ZERO

__all__ = ["CarryFill", "CarryPosition", "carry_report", "fold_carry", "render_carry"]

PREFIX = "UM:"
_BPS = Decimal(10000)


@dataclass(frozen=True)
class CarryFill:
    symbol: str            # the spot symbol (the perpetual's fills carry it too)
    perp: bool
    side: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str | None
    time_ms: int
    basis_bps: Decimal | None = None   # at its order's decision (mark vs spot mid)


_DUST_QUOTE = Decimal(1)


@dataclass
class CarryPosition:
    symbol: str
    opened_ms: int
    closed_ms: int | None = None
    spot_qty: Decimal = ZERO
    perp_qty: Decimal = ZERO
    spot_pnl: Decimal = ZERO
    perp_pnl: Decimal = ZERO
    funding: Decimal = ZERO
    fees: Decimal = ZERO
    entry_basis_bps: Decimal | None = None
    exit_basis_bps: Decimal | None = None
    fills: int = 0
    max_spot: Decimal = ZERO

    @property
    def net(self) -> Decimal:
        return self.spot_pnl + self.perp_pnl + self.funding - self.fees


def _fee(f: CarryFill, quote: str) -> Decimal:
    if not f.commission or f.commission_asset in (None, quote):
        return f.commission
    return f.commission * f.price    # base-asset commission, valued at the fill


def fold_carry(fills: Iterable[CarryFill], funding: Sequence[tuple[str, int, Decimal]],
               quote: str = "USDT") -> list[CarryPosition]:
    """Carry positions from fills in time order; ``funding`` is (symbol, time ms, amount)."""
    open_: dict[str, CarryPosition] = {}
    done: list[CarryPosition] = []
    for f in fills:
        pos = open_.get(f.symbol)
        if pos is None:
            pos = open_[f.symbol] = CarryPosition(f.symbol, f.time_ms, entry_basis_bps=f.basis_bps)
        signed = f.qty if f.side == "BUY" else -f.qty
        cash = -signed * f.price
        if f.perp:
            pos.perp_qty += signed
            pos.perp_pnl += cash
        else:
            # What the spot leg holds: net of a commission taken in the base asset.
            in_base = f.commission_asset is not None and f.symbol.startswith(f.commission_asset)
            base_fee = f.commission if in_base else ZERO
            pos.spot_qty += signed - base_fee
            pos.spot_pnl += cash
            pos.max_spot = max(pos.max_spot, pos.spot_qty)
        pos.fees += _fee(f, quote)
        pos.fills += 1
        if f.basis_bps is not None:
            pos.exit_basis_bps = f.basis_bps
        # Closed with its perpetual leg; the spot leg may keep fee dust (bought gross of the
        # base-asset commission), worth less than one unit of the quote asset.
        if not pos.perp_qty and abs(pos.spot_qty) * f.price < _DUST_QUOTE:
            pos.closed_ms = f.time_ms
            done.append(open_.pop(f.symbol))
    positions = sorted(done + list(open_.values()), key=lambda p: p.opened_ms)
    for p in positions:
        end = p.closed_ms if p.closed_ms is not None else 1 << 62
        p.funding = sum((amount for sym, t, amount in funding if sym == p.symbol and p.opened_ms <= t <= end),
                        ZERO)
        if p.closed_ms is None:
            p.exit_basis_bps = None
    return positions


def _basis(mark: Any, bid: Any, ask: Any) -> Decimal | None:
    if mark is None or bid is None or ask is None:
        return None
    mid = (Decimal(bid) + Decimal(ask)) / 2
    return ((Decimal(mark) - mid) / mid * _BPS).quantize(Decimal("0.1")) if mid else None


def carry_report(db: Any, symbol: str | None = None) -> list[CarryPosition]:
    """Every carry position in the ledger (optionally one symbol's)."""
    conn = db.conn
    sql = "SELECT DISTINCT symbol FROM main.fills WHERE symbol LIKE 'UM:%'"
    perp_symbols = [r[0] for r in conn.execute(sql)]
    symbols = sorted(s[len(PREFIX):] for s in perp_symbols if symbol in (None, s[len(PREFIX):]))
    if not symbols:
        return []
    names = symbols + [PREFIX + s for s in symbols]
    marks = ", ".join("?" * len(names))
    rows = conn.execute(
        "SELECT f.symbol, f.side, f.price, f.qty, f.commission, f.commission_asset, "
        "coalesce(f.trade_ms, f.received_ms), o.decision_mark, o.decision_bid, o.decision_ask "
        f"FROM main.fills f LEFT JOIN orders o ON o.id = f.order_id WHERE f.symbol IN ({marks}) "
        "ORDER BY coalesce(f.trade_ms, f.received_ms), f.id", names).fetchall()
    fills = [CarryFill(sym.removeprefix(PREFIX), sym.startswith(PREFIX), side, Decimal(price), Decimal(qty),
                       Decimal(fee or "0"), asset, int(t), _basis(mark, bid, ask))
             for sym, side, price, qty, fee, asset, t, mark, bid, ask in rows]
    funding: list[tuple[str, int, Decimal]] = []
    if "futures_income" in db.tables:
        for sym, t, amount in conn.execute(
                "SELECT symbol, time_ms, amount FROM futures_income WHERE income_type = 'FUNDING_FEE'"):
            funding.append((str(sym)[len(PREFIX):], int(t), Decimal(amount)))
    return fold_carry(fills, funding)


def render_carry(positions: Sequence[CarryPosition]) -> str:
    """A plain table, one line per carry position."""
    from executor.audit.query import fmt_ms

    head = ["symbol", "opened", "closed", "max spot", "spot pnl", "perp pnl", "funding", "fees",
            "basis in", "basis out", "net"]
    rows = [head]
    for p in positions:
        q = Decimal("0.0001")
        rows.append([p.symbol, fmt_ms(p.opened_ms), fmt_ms(p.closed_ms) if p.closed_ms else "open",
                     str(p.max_spot), str(p.spot_pnl.quantize(q)), str(p.perp_pnl.quantize(q)),
                     str(p.funding.quantize(q)), str(p.fees.quantize(q)),
                     "-" if p.entry_basis_bps is None else f"{p.entry_basis_bps}bps",
                     "-" if p.exit_basis_bps is None else f"{p.exit_basis_bps}bps", str(p.net.quantize(q))])
    if len(rows) == 1:
        return "no carry positions (no USD-M futures fills in this ledger)\n"
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    return "".join(line + "\n" for line in lines)
