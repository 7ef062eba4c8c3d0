"""Two symbols filling in the same exchange millisecond: every balance observation is kept
and ``audit verify`` is clean.

Binance stamps ``outboundAccountPosition`` with millisecond times (E, u) and numbers trades
per symbol, so two fills on two symbols in one millisecond have no order the ledger can
recover. The embedded exchange's clock is slowed to a crawl (1 ms of exchange time per
1000 s of wall time) while a BTCUSDT and an ETHUSDT order fill, so both land in one
millisecond, over real HTTP with the real client. BTCUSDT's trade ids are pushed above
ETHUSDT's first, so sorting by (time, trade id) applies ETH's fill before BTC's, the
reverse of the exchange's order.
"""

from __future__ import annotations

from executor.audit.query import AuditDB, Scope
from executor.audit.verify import render_verify, verify, verify_reference
from executor.sim.accounts import DEFAULT_ID
from tests.reconcile.test_sim import Rig, rig  # noqa: F401  (the fixture)


def _observations(db: AuditDB) -> list[tuple[int, str, str]]:
    # Through the audit's reader: the ledger is a SQLite file or a PostgreSQL database.
    return db.conn.execute("SELECT event_ms, asset, event_ref FROM balance_events "
                           "WHERE kind = 'outboundAccountPosition' ORDER BY id").fetchall()


async def test_same_millisecond_fills_keep_every_balance_row_and_verify(rig: Rig) -> None:  # noqa: F811
    ex = rig.sim.exchange
    btc, eth = ex.market.book("BTCUSDT"), ex.market.book("ETHUSDT")
    await rig.rec.settle(0.2)

    def last_id(symbol: str) -> int:
        last = ex.tape.last_trade(symbol)
        return last.id if last is not None else 0

    # The market's simulated trades (random, one chance per book update) take ids too: on a
    # slow run ETHUSDT's could catch up. Keep BTCUSDT clearly ahead before the crawl starts.
    for _ in range(20):
        if last_id("BTCUSDT") > last_id("ETHUSDT") + 5:
            break
        await rig.place(qty="0.0010", price=str(btc.ask + 100), tif="IOC")
    published: list[dict] = []
    unsubscribe = ex.bus.subscribe(DEFAULT_ID, "spot", published.append)

    last_id = ex.engine.last_trade_id
    ex.clock.set_time_scale(1e-6)  # from here on the exchange's clock (and its tape) stands still
    try:
        t0 = ex.clock.now_ms()
        # BTCUSDT's trade ids above ETHUSDT's (the market tape numbers trades per symbol too,
        # so how many it takes depends on how far each tape has run).
        for _ in range(200):
            if last_id("BTCUSDT") > last_id("ETHUSDT") + 1:
                break
            await rig.place(qty="0.0010", price=str(btc.ask + 100), tif="IOC")
        before = last_id("BTCUSDT")
        await rig.place(qty="0.0010", price=str(btc.ask + 100), tif="IOC")
        await rig.place(symbol="ETHUSDT", qty="0.0100", price=str(eth.ask + 10), tif="IOC")
        assert ex.clock.now_ms() == t0, "the two fills must share one exchange millisecond"
    finally:
        ex.clock.set_time_scale(1.0)
    await rig.rec.settle(0.3)
    unsubscribe()
    trades = {sym: [t for t in ex.engine.trades[sym] if t.time == t0] for sym in ("BTCUSDT", "ETHUSDT")}
    assert trades["BTCUSDT"] and trades["ETHUSDT"]
    # The pair that matters: the BTCUSDT fill sent first carries the higher trade ids.
    assert max(t.id for t in trades["ETHUSDT"]) < min(t.id for t in trades["BTCUSDT"] if t.id > before)

    db = AuditDB.from_url(rig.store.engine.url.render_as_string(hide_password=False))
    try:
        usdt_at_t0 = [tuple(r) for r in _observations(db) if r[0] == t0 and r[1] == "USDT"]
        # Every outboundAccountPosition the exchange sent in that millisecond is its own row,
        # though they all share E and u (one per order: its lock, then its fill).
        sent = [e for e in published if e.get("e") == "outboundAccountPosition" and e["E"] == t0
                and any(b["a"] == "USDT" for b in e["B"])]
        assert len(sent) >= 2
        assert len(usdt_at_t0) == len(sent) == len({r[2] for r in usdt_at_t0})

        for res in (verify_reference(db, Scope()), verify(db, Scope(), use_checkpoint=False)):
            assert res.ok, render_verify(res)
    finally:
        db.close()
