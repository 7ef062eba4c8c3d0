"""A small, hand-computable trading history written through the real Store (real schema).

BTCUSDT, opening balances USDT 1000, BTC 1, BNB 1 (REST snapshot at T0). BNB is worth 600
USDT (the BNBUSDT order G's decision mid, (599 + 601) / 2, recorded before any fill).

order  side  qty  decision bid/ask (mid)        fills                                   end
A      BUY   1.0  97.6 / 102.4 (100)            1.0 @ 100, fee 0.1 USDT, maker          FILLED
B      BUY   1.0  122 / 128 (125)               0.4 @ 128 fee 0.0004 BNB, taker          FILLED
                                                0.6 @ 128 fee 0.0006 BNB, taker
C      SELL  1.5  156.25 / 163.75 (160)         1.5 @ 160, fee 0.002 BTC, maker          UNKNOWN -> FILLED
D      SELL  0.5  100 / 104.8 (102.4)           0.2 @ 100, fee 0.0003 BNB, taker         CANCELED (partly)
E      BUY   0.1  -                             -                                        REJECTED
F      BUY   0.1  -                             -                                        NOT_PLACED
G      BUY   1    599 / 601 (BNBUSDT)           -                                        NOT_PLACED

The expected numbers are worked out in tests/audit/test_report.py.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from executor.persistence.store import Store

T0 = 1_767_225_600_000


class SetClock:
    """The store's clock, set by the scenario so acknowledgement times are exact."""

    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


@dataclass
class Built:
    url: str
    path: Path
    run_id: int


async def build_scenario(path: Path, url: str | None = None) -> Built:
    """The scenario in the SQLite file ``path``, or in the ledger at ``url`` (PostgreSQL)."""
    url = url or f"sqlite+aiosqlite:///{path}"
    clock = SetClock()
    store = await Store.open(url, clock=clock)
    try:
        run_id = await store.start_run("0.1.0", "sim", "cafe", at_ms=T0)
        # Opening REST snapshot.
        await store.set_balances(
            [("USDT", "1000", "0"), ("BTC", "1", "0"), ("BNB", "1", "0")],
            "rest_snapshot",
            f"updateTime={T0}",
            event_ms=T0,
            kind="rest_snapshot",
            force=True,
        )

        async def order(
            cid: str,
            symbol: str,
            side: str,
            qty: str,
            at: int,
            bid: str | None = None,
            ask: str | None = None,
        ) -> None:
            clock.ms = T0 + at
            await store.record_order_intent(
                cid,
                symbol,
                side,
                "LIMIT",
                quantity=qty,
                price="100",
                time_in_force="GTC",
                decision_bid=bid,
                decision_ask=ask,
                decision_ms=T0 + at,
                created_ms=T0 + at,
            )
            await store.mark_order_sent(cid, at_ms=T0 + at + 1)

        async def status(
            cid: str,
            st: str,
            at: int,
            source: str = "stream",
            xid: int | None = None,
            qty: str | None = None,
            quote: str | None = None,
        ) -> None:
            clock.ms = T0 + at
            await store.update_order_status(
                cid,
                st,
                source=source,
                exchange_order_id=xid,
                executed_qty=qty,
                cum_quote_qty=quote,
                event_ms=T0 + at,
            )

        async def fill(
            cid: str,
            xid: int,
            tid: int,
            side: str,
            price: str,
            qty: str,
            fee: str,
            fee_asset: str,
            maker: bool,
            trade_at: int,
            recv_at: int,
            source: str = "stream",
        ) -> None:
            await store.add_fill(
                "BTCUSDT",
                tid,
                price,
                qty,
                source,
                commission=fee,
                commission_asset=fee_asset,
                is_maker=maker,
                trade_ms=T0 + trade_at,
                side=side,
                client_order_id=cid,
                exchange_order_id=xid,
                received_ms=T0 + recv_at,
            )

        async def position(at: int, *rows: tuple[str, str, str]) -> None:
            clock.ms = T0 + at
            await store.set_balances(
                list(rows),
                "stream",
                f"E={T0 + at},u={T0 + at}",
                event_ms=T0 + at,
                kind="outboundAccountPosition",
            )

        await order("G", "BNBUSDT", "BUY", "1", 100, "599", "601")
        await status("G", "NOT_PLACED", 110, source="local")
        await order("E", "BTCUSDT", "BUY", "0.1", 500)
        await status("E", "REJECTED", 520, source="order_response")
        await order("F", "BTCUSDT", "BUY", "0.1", 600)
        await status("F", "NOT_PLACED", 610, source="local")

        await order("A", "BTCUSDT", "BUY", "1.0", 1000, "97.6", "102.4")
        await status("A", "NEW", 1010, source="order_response", xid=11)
        await fill("A", 11, 1, "BUY", "100", "1.0", "0.1", "USDT", True, 1015, 1020)
        await status("A", "FILLED", 1020, xid=11, qty="1.0", quote="100")
        await position(1015, ("BTC", "2.0", "0"), ("USDT", "899.9", "0"))

        await order("B", "BTCUSDT", "BUY", "1.0", 2000, "122", "128")
        await status("B", "NEW", 2030, source="order_response", xid=12)
        await fill("B", 12, 2, "BUY", "128", "0.4", "0.0004", "BNB", False, 2045, 2050)
        await position(2045, ("BTC", "2.4", "0"), ("USDT", "848.7", "0"), ("BNB", "0.9996", "0"))
        await fill("B", 12, 3, "BUY", "128", "0.6", "0.0006", "BNB", False, 2055, 2060)
        await status("B", "FILLED", 2060, xid=12, qty="1.0", quote="128.0")
        await position(2055, ("BTC", "3.0", "0"), ("USDT", "771.9", "0"), ("BNB", "0.999", "0"))

        await order("C", "BTCUSDT", "SELL", "1.5", 3000, "156.25", "163.75")
        await status("C", "UNKNOWN", 3010, source="local")
        await fill("C", 13, 4, "SELL", "160", "1.5", "0.002", "BTC", True, 3080, 3090, source="gap_fill")
        await status("C", "FILLED", 3100, source="rest_query", xid=13, qty="1.5", quote="240")
        await position(3080, ("BTC", "1.498", "0"), ("USDT", "1011.9", "0"))

        await order("D", "BTCUSDT", "SELL", "0.5", 4000, "100", "104.8")
        await status("D", "NEW", 4005, source="order_response", xid=14)
        await fill("D", 14, 5, "SELL", "100", "0.2", "0.0003", "BNB", False, 4035, 4040)
        await position(4035, ("BTC", "1.098", "0.2"), ("USDT", "1031.9", "0"), ("BNB", "0.9987", "0"))
        await status("D", "CANCELED", 4100, xid=14, qty="0.2", quote="20")
        await position(4100, ("BTC", "1.298", "0"))

        # A deposit, then the closing REST snapshot.
        clock.ms = T0 + 5000
        await store.add_balance_event(
            "balanceUpdate",
            "USDT",
            "stream",
            delta="50",
            event_ms=T0 + 5000,
            event_ref=f"E={T0 + 5000},T={T0 + 5000}",
        )
        await position(5000, ("USDT", "1081.9", "0"))
        clock.ms = T0 + 6000
        await store.set_balances(
            [("USDT", "1081.9", "0"), ("BTC", "1.298", "0"), ("BNB", "0.9987", "0")],
            "rest_snapshot",
            f"updateTime={T0 + 5000}",
            event_ms=T0 + 5000,
            kind="rest_snapshot",
            force=True,
        )

        rid = await store.start_reconciliation("periodic", at_ms=T0 + 5500)
        await store.finish_reconciliation(
            rid,
            found=1,
            fixed=1,
            counts={"orders": 4},
            discrepancies=[{"kind": "order", "client_order_id": "C", "detail": "UNKNOWN resolved to FILLED"}],
            at_ms=T0 + 5520,
        )
        await store.finish_run(run_id, at_ms=T0 + 7000)
    finally:
        await store.close()
    return Built(url, path, run_id)


def tamper(path: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    """Change the ledger behind the store's back (to inject a discrepancy)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()
