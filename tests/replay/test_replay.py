"""Replays through the bot's whole wire path: a recording of the embedded exchange's own
streams replays to identical ledgers twice; gaps stop trading; matching against the recorded
touch is as stated in ``executor/sim/replay_source.py``."""

from __future__ import annotations

import shutil
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

from executor.replay.format import read_lines
from executor.replay.runner import run_replay
from tests.replay.helpers import (
    T0,
    book,
    busy_recording,
    dump_ledger,
    mark,
    record_sim,
    replay_config,
    write_recording,
)


async def test_a_recording_of_the_sims_streams_replays_twice_to_identical_ledgers(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    writer, stats = await record_sim(rec, seconds=2.0, time_scale=10.0)
    kinds = {line.kind for line in read_lines(rec)}
    assert {"spot_book", "mark"} <= kinds
    assert stats.frames["spot_book"] > 100 and stats.frames["mark"] >= 20
    # The sim serves no futures /public route: the optional futures bookTicker is dropped.
    assert stats.dropped_streams == []  # the embedded exchange serves all three, futures /public too
    assert stats.frames["fut_book"] > 0

    cfg = replay_config(tmp_path)
    ledger = tmp_path / "ledger.db"
    dumps = []
    for n in range(2):
        result = await run_replay(cfg, rec, speed=None, db=str(ledger))
        assert result.code == 0
        assert result.stats.lines == writer.lines
        dumps.append(dump_ledger(ledger))
        shutil.move(ledger, tmp_path / f"ledger-{n}.db")
    first, second = dumps
    assert first["fills"], "the replay should trade (the sim's basis crosses the entry threshold)"
    assert first == second
    con = sqlite3.connect(tmp_path / "ledger-0.db")
    # Ledger times are exchange (recording) times, not this machine's clock: within the
    # recording, give or take the few exchange milliseconds an order after the last line
    # still takes (the replay clock's ``advance``).
    lo, hi = con.execute("select min(trade_ms), max(trade_ms) from fills").fetchone()
    lines = list(read_lines(rec))
    assert lines[0].t <= lo <= hi <= lines[-1].t + 1000


async def test_a_gap_stops_trading_until_data_is_back(tmp_path: Path) -> None:
    # The book swings each second between 5 bps under the mark (buy) and above it (sell
    # inventory), so the bot trades all along, except while the book is stale: during the
    # 20 s gap in spot books (marks go on), from stale_after_s (5 s) after the last book.
    lines = []
    for sec in range(45):
        t = T0 + sec * 1000
        lines.append((t, "mark", "BTCUSDT", mark("BTCUSDT", t, "60000.00")))
        if not 15 <= sec < 35:
            bid, ask = ("59969.00", "59970.00") if sec % 2 else ("60010.00", "60011.00")
            lines.append((t + 10, "spot_book", "BTCUSDT", book("BTCUSDT", bid, ask)))
    lines.append(
        (
            T0 + 60_005,
            "gap",
            "",
            {"stream": "spot_book", "from": T0 + 29_010, "to": T0 + 60_005, "reason": "test"},
        )
    )
    lines.sort(key=lambda x: x[0])
    rec = write_recording(tmp_path / "rec", lines)
    cfg = replay_config(tmp_path, symbols=("BTCUSDT",), params={"max_inventory_quote": "50"})
    result = await run_replay(cfg, rec, speed=None, db=str(tmp_path / "l.db"))
    assert result.code == 0 and result.stats.gaps == 1
    con = sqlite3.connect(tmp_path / "l.db")
    times = [r[0] for r in con.execute("select decision_ms from orders order by decision_ms")]
    assert any(x < T0 + 15_000 for x in times) and any(x > T0 + 35_000 for x in times)
    stale_after = 5_000
    assert not [x for x in times if T0 + 14_010 + stale_after < x < T0 + 35_010], times


async def test_marketable_orders_fill_against_the_recorded_touch_up_to_its_size(tmp_path: Path) -> None:
    # The touch holds 0.0005 BTC; the strategy's 50 USDT IOC buy wants 0.00083: it gets the
    # touch's size at the touch price and the rest expires (no deeper level was recorded).
    lines = []
    for sec in range(5):
        t = T0 + sec * 1000
        lines.append((t, "mark", "BTCUSDT", mark("BTCUSDT", t, "60000.00")))
        lines.append((t + 10, "spot_book", "BTCUSDT", book("BTCUSDT", "59969.00", "59970.00", qty="0.0005")))
    rec = write_recording(tmp_path / "rec", lines)
    cfg = replay_config(tmp_path, symbols=("BTCUSDT",), replay={"taker_fee": "0.00075"})
    result = await run_replay(cfg, rec, speed=None, db=str(tmp_path / "l.db"))
    assert result.code == 0
    con = sqlite3.connect(tmp_path / "l.db")
    fills = con.execute(
        "select price, qty, commission, commission_asset from fills order by trade_ms"
    ).fetchall()
    assert fills
    for price, qty, fee, fee_asset in fills:
        assert Decimal(price) == Decimal("59970.00")
        assert Decimal(qty) == Decimal("0.0005")
        # The configured taker tier ([replay] taker_fee), charged in the asset received.
        # 0.0005 * 0.00075 = 0.000000375, rounded half-up to 8 places as the exchange does.
        assert Decimal(fee) == Decimal("0.00000038") and fee_asset == "BTC"
    statuses = {r[0] for r in con.execute("select status from orders")}
    assert statuses == {"EXPIRED"}, statuses  # partly filled IOCs


async def test_latency_delays_orders_to_the_market_as_recorded_later(tmp_path: Path) -> None:
    # Even seconds: ask 5 bps under the mark (buy); odd seconds: a neutral book whose ask is
    # above the buy limit. Without latency each buy fills (1 ms after the decision: each
    # request takes 1 ms of exchange time); with 1.5 s it reaches the exchange when the
    # neutral book is up and the IOC expires unfilled, 1.5 s after the decision.
    lines = []
    for sec in range(12):
        t = T0 + sec * 1000
        lines.append((t, "mark", "BTCUSDT", mark("BTCUSDT", t, "60000.00")))
        bid, ask = ("59969.00", "59970.00") if sec % 2 == 0 else ("59990.00", "59991.00")
        lines.append((t + 10, "spot_book", "BTCUSDT", book("BTCUSDT", bid, ask)))
    rec = write_recording(tmp_path / "rec", lines)
    outcomes = {}
    for latency in (0, 1500):
        cfg = replay_config(tmp_path, symbols=("BTCUSDT",), replay={"latency_ms": latency})
        db = tmp_path / f"l{latency}.db"
        result = await run_replay(cfg, rec, speed=None, db=str(db))
        assert result.code == 0
        con = sqlite3.connect(db)
        outcomes[latency] = con.execute(
            "select o.status, o.decision_ms, e.event_ms from orders o "
            "join order_events e on e.order_id = o.id where e.execution_type = 'NEW' order by o.id"
        ).fetchall()
    assert outcomes[0] and {s for s, _, _ in outcomes[0]} == {"FILLED"}
    # An order decided while the bot was still starting (at the opening's millisecond) leaves
    # once the replay steps one millisecond past its opening snapshot: 2 ms, the rest 1 ms.
    start_ms = outcomes[0][0][1]
    assert all(ev == dec + (2 if dec == start_ms else 1) for _, dec, ev in outcomes[0])
    assert outcomes[1500] and {s for s, _, _ in outcomes[1500]} == {"EXPIRED"}
    start_ms = outcomes[1500][0][1]
    assert all(ev == dec + 1500 + (2 if dec == start_ms else 1)        # arrival + 1 ms handling
               for _, dec, ev in outcomes[1500])


async def test_speed_n_paces_the_recording_in_real_time(tmp_path: Path) -> None:
    # 6 s of market at 20x: about 0.3 s of wall time, and the bot trades (not lock-step).
    lines = []
    for sec in range(6):
        t = T0 + sec * 1000
        lines.append((t, "mark", "BTCUSDT", mark("BTCUSDT", t, "60000.00")))
        lines.append((t + 10, "spot_book", "BTCUSDT", book("BTCUSDT", "59969.00", "59970.00")))
    rec = write_recording(tmp_path / "rec", lines)
    cfg = replay_config(tmp_path, symbols=("BTCUSDT",))
    result = await run_replay(cfg, rec, speed=20, db=str(tmp_path / "l.db"))
    assert result.code == 0 and result.stats.lines == len(lines)
    span_s = (lines[-1][0] - lines[0][0]) / 1000
    assert result.stats.wall_s >= span_s / 20 * 0.9
    con = sqlite3.connect(tmp_path / "l.db")
    assert con.execute("select count(*) from fills").fetchone()[0] > 0


async def test_a_damaged_recording_stops_the_replay_with_one_line(tmp_path: Path, caplog: Any) -> None:
    import gzip

    lines = []
    for sec in range(3):
        t = T0 + sec * 1000
        lines.append((t, "mark", "BTCUSDT", mark("BTCUSDT", t, "60000.00")))
        lines.append((t + 10, "spot_book", "BTCUSDT", book("BTCUSDT", "59990.00", "59991.00")))
    rec = write_recording(tmp_path / "rec", lines)
    chunk = next((rec / "chunks").iterdir())
    with gzip.open(chunk, "ab") as fh:
        fh.write(b'{"t": "not a recording line"}\n')
    cfg = replay_config(tmp_path, symbols=("BTCUSDT",))
    result = await run_replay(cfg, rec, speed=None, db=str(tmp_path / "l.db"))
    assert result.code == 2
    assert result.stats.lines == len(lines)
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "replay stopped" in r.getMessage()]
    assert (
        len(errors) == 1
        and errors[0].exc_info is None
        and ":7: not a recording line" in errors[0].getMessage()
    )


async def test_two_symbols_trading_at_the_same_instants_replay_identically(tmp_path: Path) -> None:
    rec = busy_recording(tmp_path / "rec", seconds=40)
    cfg = replay_config(tmp_path)
    dumps = []
    for n in range(2):
        result = await run_replay(cfg, rec, speed=None, db=str(tmp_path / "l.db"))
        assert result.code == 0
        dumps.append(dump_ledger(tmp_path / "l.db"))
        shutil.move(tmp_path / "l.db", tmp_path / f"l{n}.db")
    symbols = {row[4] for row in dumps[0]["orders"]}
    assert symbols == {"BTCUSDT", "ETHUSDT"} and len(dumps[0]["fills"]) >= 20
    assert dumps[0] == dumps[1]
