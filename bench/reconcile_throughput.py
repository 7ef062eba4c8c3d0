"""Reconciler throughput: stream events applied and durably committed, and a REST catch-up.

Run:  .venv/bin/python bench/reconcile_throughput.py [--events 100000] [--trades 100000]

(i)  ``--events`` executionReports (NEW, then TRADEs, the last one FILLED, per order) go
     through ``Reconciler.submit`` and the batch writer into a temporary SQLite ledger with
     ``synchronous=FULL`` (every group commit is fsynced: durable, not just written). The
     clock runs from the first submit until the last batch is committed. Run twice: raw
     dicts (parsing and translation included) and reports (what the user stream delivers).
(ii) ``--trades`` trades of our orders are made on the embedded exchange while the bot is
     not listening (seeded straight into its engine), then one ``gap_fill`` over real HTTP
     with the real python-binance client pages them in through myTrades (1000 per page,
     every page through the gateway's weight budget). Reported: time, pages, the exchange's
     used weight and whether any request was answered 429/418 (it must not be).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executor.exchange.binance_reports import SPOT, decode_user_payload
from executor.exchange.client import make_client
from executor.exchange.rest import RestGateway
from executor.persistence.store import Store
from executor.reconcile import Reconciler
from executor.reconcile.reconciler import GC_YOUNG_THRESHOLD
from executor.sim.engine import Order, Trade
from executor.sim.exchange import SimExchange
from executor.sim.server import SimServer

PREFIX = "bx"
# Events handed over between two yields to the event loop: one 64 KiB socket read holds
# about a hundred executionReport frames (~600 bytes each), and the reader yields only when
# it has to wait for the next read.
READ_BURST = 100
SYMBOL = "BTCUSDT"


def _execution_report(cid: str, order_id: int, exec_id: int, *, x: str, status: str, trade_id: int,
                      last_qty: str, cum_qty: str, cum_quote: str, now: int,
                      symbol: str = SYMBOL) -> dict[str, Any]:
    return {"subscriptionId": 0, "event": {
        "e": "executionReport", "E": now, "s": symbol, "c": cid, "S": "BUY", "o": "LIMIT", "f": "GTC",
        "q": "1.00000000", "p": "60000.00000000", "P": "0.00000000", "F": "0.00000000", "g": -1, "C": "",
        "x": x, "X": status, "r": "NONE", "i": order_id, "l": last_qty, "z": cum_qty,
        "L": "60000.00000000" if trade_id >= 0 else "0.00000000",
        "n": "0.00001000" if trade_id >= 0 else "0", "N": "BTC" if trade_id >= 0 else None, "T": now,
        "t": trade_id, "I": exec_id, "w": True, "m": True, "M": trade_id >= 0, "O": now - 1000,
        "Z": cum_quote, "Y": "600.00000000" if trade_id >= 0 else "0.00000000", "Q": "0.00000000",
        "W": now - 1000, "V": "EXPIRE_MAKER"}}


def make_events(n_events: int, per_order: int, *, symbol: str = SYMBOL,
                bot: str = "bench") -> tuple[list[str], list[dict[str, Any]]]:
    """Orders of ``per_order`` events each: NEW, TRADEs of 0.01, the last one FILLED."""
    orders = max(1, n_events // per_order)
    trades = per_order - 1
    qty_each = Decimal(1) / trades
    ids, events = [], []
    exec_id, trade_id, now = 1, 1_000_000, 1_785_571_200_000
    for k in range(orders):
        cid = f"{PREFIX}-{bot}-o{k + 1}"
        ids.append(cid)
        order_id = 10_000 + k
        events.append(_execution_report(cid, order_id, exec_id, x="NEW", status="NEW", trade_id=-1,
                                        last_qty="0", cum_qty="0", cum_quote="0", now=now, symbol=symbol))
        exec_id += 1
        for j in range(1, trades + 1):
            cum = qty_each * j if j < trades else Decimal(1)
            last = cum - (qty_each * (j - 1))
            events.append(_execution_report(
                cid, order_id, exec_id, x="TRADE", status="FILLED" if j == trades else "PARTIALLY_FILLED",
                trade_id=trade_id, last_qty=f"{last:.8f}", cum_qty=f"{cum:.8f}",
                cum_quote=f"{cum * 60000:.8f}", now=now + j, symbol=symbol))
            exec_id += 1
            trade_id += 1
        now += 100
    return ids, events


async def bench_events(n_events: int, per_order: int, batch_max: int, workdir: Path, *,
                       preparsed: bool, freeze_input: bool = True, url: str | None = None,
                       symbol: str = SYMBOL, bot: str = "bench", start: asyncio.Event | None = None,
                       ready: list[str] | None = None, gc_young: int | None = None) -> dict[str, Any]:
    url = url or f"sqlite+aiosqlite:///{workdir / ('events-parsed.db' if preparsed else 'events.db')}"
    store = await Store.open(url, synchronous="FULL")
    ids, raw = make_events(n_events, per_order, symbol=symbol, bot=bot)
    # The spot user stream hands over venue-neutral reports (parsed by binance_events and
    # translated by binance_reports); the raw variant includes both steps here.
    events: list[Any] = [decode_user_payload(e) for e in raw] if preparsed else raw
    for cid in ids:  # the order manager records every order before it is sent
        await store.record_order_intent(cid, symbol, "BUY", "LIMIT", quantity=Decimal(1),
                                        price=Decimal(60000), time_in_force="GTC")
    rec = Reconciler(store, prefix=PREFIX, translate=SPOT, batch_max=batch_max, gc_young_threshold=gc_young)
    await rec.start()
    if start is not None and ready is not None:
        ready.append(bot)
        await start.wait()  # several bots: all start together
    if freeze_input:
        # A live stream never holds 100k decoded events at once: each frame arrives, is
        # applied and is dropped. Kept in a list here they would make every full garbage
        # collection walk them (measured: a quarter of the run's CPU), so the pre-built
        # input is moved out of the collector's sight. Everything the run itself allocates
        # is still collected as usual.
        gc.collect()
        gc.freeze()
    try:
        collections0 = [g["collections"] for g in gc.get_stats()]
        t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
        for n, e in enumerate(events, 1):
            rec.submit(e)
            if n % READ_BURST == 0:
                await asyncio.sleep(0)  # the socket reader waits for its next read; the writer runs
        await rec.drain()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        main_cpu = time.thread_time() - m0
        collections = [g["collections"] - c for g, c in zip(gc.get_stats(), collections0, strict=True)]
    finally:
        if freeze_input:
            gc.unfreeze()
    await rec.stop()
    fills = len(await store.fills(symbol=symbol))
    filled = len(await store.list_orders(status="FILLED"))
    await store.close()
    return {"events": len(events), "orders": len(ids), "seconds": elapsed, "cpu_seconds": cpu,
            "main_thread_cpu_seconds": main_cpu, "cpu_us_per_event": 1e6 * cpu / len(events),
            "events_per_s": len(events) / elapsed, "events_per_cpu_s": len(events) / cpu,
            "fills_stored": fills, "orders_filled": filled,
            "suspects": len(rec.suspects), "malformed": rec.totals.malformed,
            "gc_collections": collections, "gc_threshold": gc.get_threshold()}


def seed_trades(ex: SimExchange, n_trades: int, n_orders: int, tag: str) -> tuple[list[tuple[str, int]], int]:
    """Our orders, all FILLED while we were away, with ``n_trades`` trades between them."""
    engine = ex.engine
    acct = ex.default_account
    now = ex.clock.now_ms()
    per_order = n_trades // n_orders
    orders: list[tuple[str, int]] = []
    first_trade = engine._next_trade_id[SYMBOL]
    for k in range(n_orders):
        cid = f"{PREFIX}-{tag}-o{k + 1}"
        order_id = engine._next_order_id[SYMBOL]
        engine._next_order_id[SYMBOL] += 1
        qty = Decimal("0.00001") * per_order
        o = Order(symbol=SYMBOL, order_id=order_id, client_order_id=cid, account_id=acct.id, side="BUY",
                  type="LIMIT", tif="GTC", price=Decimal(60000), orig_qty=qty, orig_quote_qty=Decimal(0),
                  stp="EXPIRE_MAKER", time=now, update_time=now, working_time=now,
                  executed_qty=qty, cum_quote=qty * 60000, status="FILLED")
        engine.orders[SYMBOL].append(o)
        # The engine indexes orders it places itself; seeded ones are indexed here the same
        # way (there is no public seeding API yet).
        if hasattr(engine, "_by_id"):
            engine._by_id[(SYMBOL, order_id)] = o
        if hasattr(engine, "_by_client"):
            engine._by_client[(acct.id, SYMBOL, cid)] = o
        orders.append((cid, order_id))
        for _ in range(per_order):
            tid = engine._next_trade_id[SYMBOL]
            engine._next_trade_id[SYMBOL] += 1
            engine.trades[SYMBOL].append(Trade(
                symbol=SYMBOL, id=tid, order_id=order_id, account_id=acct.id, price=Decimal(60000),
                qty=Decimal("0.00001"), quote_qty=Decimal("0.6"), commission=Decimal("0.00000001"),
                commission_asset="BTC", time=now, is_buyer=True, is_maker=True))
    return orders, first_trade


async def bench_catch_up(n_trades: int, n_orders: int, workdir: Path) -> dict[str, Any]:
    ex = SimExchange.for_tests(symbols=(SYMBOL,))
    server = SimServer(ex, host="127.0.0.1")
    urls = await server.start()
    client = make_client(urls.endpoints(), ex.credentials("HMAC"), timeout_s=10)
    gateway = RestGateway(client)
    store = await Store.open(f"sqlite+aiosqlite:///{workdir / 'catchup.db'}", synchronous="FULL")
    try:
        await gateway.start()
        await gateway.exchange_info([SYMBOL])  # adopt the exchange's published limits
        # Before the gap: one trade of ours already stored, our orders recorded and acknowledged.
        orders, first_trade = seed_trades(ex, 1, 1, "before")
        for cid, oid in orders:
            await store.record_order_intent(cid, SYMBOL, "BUY", "LIMIT", quantity=Decimal("0.00001"),
                                            price=Decimal(60000), time_in_force="GTC")
            await store.update_order_status(cid, "FILLED", source="stream", symbol=SYMBOL,
                                            exchange_order_id=oid, executed_qty=Decimal("0.00001"),
                                            cum_quote_qty=Decimal("0.6"))
        await store.add_fill(SYMBOL, first_trade, Decimal(60000), Decimal("0.00001"), "stream",
                             quote_qty=Decimal("0.6"), exchange_order_id=orders[0][1])
        missed, _ = seed_trades(ex, n_trades, n_orders, "missed")
        for cid, oid in missed:  # sent, acknowledged, then the stream went dark
            await store.record_order_intent(cid, SYMBOL, "BUY", "LIMIT", quantity=Decimal(1),
                                            price=Decimal(60000), time_in_force="GTC")
            await store.update_order_status(cid, "NEW", source="order_response", symbol=SYMBOL,
                                            exchange_order_id=oid)
        rec = Reconciler(store, gateway, prefix=PREFIX, translate=SPOT, symbols=[SYMBOL])
        t0 = time.perf_counter()
        report = await rec.gap_fill("stream_gap")
        elapsed = time.perf_counter() - t0
        ip_state = ex.ratelimiter._ips.get("127.0.0.1")
        limited = bool(ip_state and (ip_state.bans or ip_state.retry_until_ms)) or not gateway.gate.is_open
        stored = len(await store.fills(symbol=SYMBOL))
        filled = len(await store.list_orders(status="FILLED"))
        return {"trades": n_trades, "orders": n_orders, "seconds": elapsed,
                "trades_per_s": n_trades / elapsed,
                "pages": report.counts["trade_pages"], "fills_added": report.counts["fills_added"],
                "fills_stored": stored, "orders_filled": filled,
                "requests": gateway.sent, "weight_used_last_minute": ex.ratelimiter.used_weight("127.0.0.1"),
                "weight_limit_per_minute": ex.ratelimiter.limits.weight_per_minute,
                "rate_limited": limited, "discrepancies": len(report.discrepancies)}
    finally:
        await gateway.close()
        await store.close()
        await server.stop()


async def _pg_admin(base: str, sql: str) -> None:
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(base, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(sql))
    finally:
        await engine.dispose()


async def bench_pg(args: argparse.Namespace) -> None:
    """(i) on PostgreSQL: one bot, then ``--bots`` bots (own symbol, own client ids, own
    connection each, as separate processes would have) writing to one database at once."""
    from sqlalchemy.engine import make_url

    base = args.pg
    tag = f"bx_bench_{os.getpid()}"

    def db_url(name: str) -> str:
        return make_url(base).set(database=name).render_as_string(hide_password=False)

    symbols = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "LTCUSDT")
    for n_bots in (1, args.bots):
        name = f"{tag}_{n_bots}"
        await _pg_admin(base, f'CREATE DATABASE "{name}"')
        try:
            from executor.persistence.migrate import ensure_schema

            await ensure_schema(db_url(name))
            start, ready = asyncio.Event(), []
            tasks = [asyncio.create_task(bench_events(
                args.events, args.per_order, args.batch, Path("."), preparsed=True, url=db_url(name),
                symbol=symbols[i % len(symbols)], bot=f"b{i}", start=start, ready=ready))
                for i in range(n_bots)]
            while len(ready) < n_bots and not any(t.done() for t in tasks):
                await asyncio.sleep(0.05)  # every bot has recorded its orders before the clock starts
            start.set()
            results = await asyncio.gather(*tasks)
            # Each bot times itself from the common start to its last commit.
            wall = max(r["seconds"] for r in results)
            total = sum(r["events"] for r in results)
            each = ", ".join(f"{r['events'] / r['seconds']:,.0f}" for r in results)
            print(f"(i)  PostgreSQL, {n_bots} bot(s) in one database, {args.events} parsed executionReports "
                  f"each: {total / wall:,.0f} events/s in sum over {wall:.2f} s; each bot {each} events/s; "
                  f"fills stored {sum(r['fills_stored'] for r in results)}, "
                  f"suspects {sum(r['suspects'] for r in results)}; "
                  f"load average after: {os.getloadavg()[0]:.2f}")
        finally:
            await _pg_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--per-order", type=int, default=20)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--trades", type=int, default=100_000, help="0 skips the catch-up part")
    ap.add_argument("--orders", type=int, default=100)
    ap.add_argument("--gc-young", type=int, default=0,
                    help=f"raise the collector's youngest threshold to this in Reconciler.start (e.g. "
                    f"{GC_YOUNG_THRESHOLD}); 0, the default and what the bot does: leave the collector alone")
    ap.add_argument("--no-gc-freeze", action="store_true",
                    help="leave the pre-built input events visible to the garbage collector")
    ap.add_argument("--pg", metavar="URL",
                    help="also run (i) on this PostgreSQL server (postgresql+asyncpg://USER@HOST:PORT/DB; "
                    "fresh databases are created there and dropped)")
    ap.add_argument("--bots", type=int, default=4, help="bots writing to one PostgreSQL at once (with --pg)")
    ap.add_argument("--sqlite-cache-kib", type=int,
                    help="the ledger connections' page cache (default: executor.persistence.db.CACHE_KIB)")
    args = ap.parse_args()
    if args.sqlite_cache_kib:
        from executor.persistence import db

        db.CACHE_KIB = args.sqlite_cache_kib
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        for preparsed in (False, True):
            ev = await bench_events(args.events, args.per_order, args.batch, Path(tmp), preparsed=preparsed,
                                    freeze_input=not args.no_gc_freeze, gc_young=args.gc_young or None)
            what = "parsed executionReports (as the user stream hands them over)" if preparsed else \
                "raw executionReports (parsing included)"
            other = ev["cpu_seconds"] - ev["main_thread_cpu_seconds"]
            print(f"(i)  {ev['events']} {what}, {ev['orders']} orders, applied and committed "
                  f"(synchronous=FULL) in {ev['seconds']:.2f} s = {ev['events_per_s']:,.0f} events/s "
                  f"(process CPU {ev['cpu_seconds']:.2f} s = {ev['cpu_us_per_event']:.1f} us/event = "
                  f"{ev['events_per_cpu_s']:,.0f} events per CPU-second; event loop thread "
                  f"{1e6 * ev['main_thread_cpu_seconds'] / ev['events']:.1f} us/event, SQLite worker thread "
                  f"{1e6 * other / ev['events']:.1f} us/event); fills stored {ev['fills_stored']}, "
                  f"orders FILLED {ev['orders_filled']}, suspects {ev['suspects']}; gc threshold "
                  f"{ev['gc_threshold'][0]}, collections (gen 0/1/2) "
                  f"{'/'.join(map(str, ev['gc_collections']))}; "
                  f"load average after: {os.getloadavg()[0]:.2f}")
        if args.pg:
            await bench_pg(args)
        if args.trades <= 0:
            return
        cu = await bench_catch_up(args.trades, args.orders, Path(tmp))
        print(f"(ii) gap fill caught up {cu['fills_added']} missed trades ({cu['orders']} orders) in "
              f"{cu['seconds']:.2f} s = {cu['trades_per_s']:,.0f} trades/s over {cu['pages']} "
              f"myTrades pages; {cu['requests']} requests, used weight {cu['weight_used_last_minute']}/"
              f"{cu['weight_limit_per_minute']} per minute; "
              f"429/418: {'YES' if cu['rate_limited'] else 'none'}; "
              f"fills stored {cu['fills_stored']}, orders FILLED {cu['orders_filled']}, "
              f"discrepancies {cu['discrepancies']}")


if __name__ == "__main__":
    asyncio.run(main())
