"""Round trips in a ledger: mean gross edge against fees per round trip, per symbol.

Usage: ``python bench/round_trips.py LEDGER.db`` (e.g. the newest ``data/sim/*.db`` after
``python run.py --duration 600``). Read-only.

A round trip is one sell order and the buy quantity it closes, matched first in, first out
per symbol. Its gross edge is the sell value minus the FIFO cost of the same quantity; its
fees are the sell's fees plus the matched share of the buys' fees, all in the quote asset (a
fee charged in the base asset is valued at its fill price). Inventory still held at the end
is not a round trip and is left out.
"""

from __future__ import annotations

import argparse
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from executor.core.money import parse_decimal


@dataclass
class Trips:
    fills: int = 0
    sells: set[str] = field(default_factory=set)
    gross: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)


def round_trips(path: Path) -> dict[str, Trips]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT symbol, client_order_id, side, price, qty, commission, commission_asset "
                            "FROM fills ORDER BY coalesce(trade_ms, received_ms), id").fetchall()
    finally:
        conn.close()
    lots: dict[str, list[list[Decimal]]] = defaultdict(list)  # [qty, price, fee per unit]
    out: dict[str, Trips] = defaultdict(Trips)
    for symbol, cid, side, price_text, qty_text, fee_text, fee_asset in rows:
        price, qty = parse_decimal(price_text, "price"), parse_decimal(qty_text, "qty")
        fee = parse_decimal(fee_text, "commission")
        fee_quote = fee * price if symbol.startswith(fee_asset or "") and fee_asset else fee
        t = out[symbol]
        t.fills += 1
        if side == "BUY":
            lots[symbol].append([qty, price, fee_quote / qty])
            continue
        t.sells.add(cid)
        t.fees += fee_quote
        left = qty
        while left > 0 and lots[symbol]:
            lot = lots[symbol][0]
            take = min(left, lot[0])
            t.gross += take * (price - lot[1])
            t.fees += take * lot[2]
            t.cost += take * lot[1]
            lot[0] -= take
            left -= take
            if lot[0] == 0:
                lots[symbol].pop(0)
    return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ledger", type=Path)
    args = ap.parse_args()
    total = Trips()
    for symbol, t in sorted(round_trips(args.ledger).items()):
        if not t.sells or not t.cost:
            print(f"{symbol}: {t.fills} fills, no round trip closed")
            continue
        print(f"{symbol}: {t.fills} fills, {_line(t)}")
        total.sells |= {f"{symbol}:{c}" for c in t.sells}
        total.gross, total.fees, total.cost = total.gross + t.gross, total.fees + t.fees, total.cost + t.cost
    if total.sells:
        print(f"all: {_line(total)}")


def _line(t: Trips) -> str:
    n = len(t.sells)
    return (f"{n} round trips; mean gross edge {t.gross / n:.4f} ({t.gross / t.cost * 10000:.1f} bps) "
            f"vs fees {t.fees / n:.4f} ({t.fees / t.cost * 10000:.1f} bps) per round trip, quote asset")

if __name__ == "__main__":
    main()
