"""Shared pieces of the replay tests: configs, synthetic recordings, a recording of the
embedded exchange's own streams, and a whole-ledger dump for comparisons."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

from executor.config import Config, load_config
from executor.replay.format import RecordingWriter
from executor.replay.recorder import Recorder, plans
from executor.sim.exchange import SimExchange
from executor.sim.server import SimServer

T0 = 1_796_601_600_000  # 2026-12-07 00:00:00 UTC


def replay_config(
    tmp_path: Path,
    *,
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
    params: dict[str, Any] | None = None,
    risk: dict[str, Any] | None = None,
    replay: dict[str, Any] | None = None,
) -> Config:
    over: dict[str, Any] = {
        "symbols": {"spot": list(symbols)},
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"},
        "logging": {"dir": str(tmp_path / "logs")},
        "risk": {"kill_switch_file": str(tmp_path / "KILL"), **(risk or {})},
    }
    if replay:
        over["replay"] = replay
    # The replay tests were written for the reference strategy's former thresholds (4 / -1 bps);
    # their recordings' small basis trades on those, not on today's fee-covering defaults.
    over["strategy"] = {"params": {"entry_bps": "4", "exit_bps": "-1", **(params or {})}}
    return load_config(local=None, overrides=over)


def write_recording(folder: Path, lines: list[tuple[int, str, str, dict[str, Any]]]) -> Path:
    symbols = sorted({s for _, k, s, _ in lines if k != "gap"})
    w = RecordingWriter(folder, source="test", symbols=symbols, kinds=["spot_book", "mark"])
    for t, kind, sym, data in lines:
        w.write(t, kind, sym, data)
    w.close()
    return folder


def book(sym: str, bid: str, ask: str, qty: str = "1") -> dict[str, Any]:
    return {"u": 1, "s": sym, "b": bid, "B": qty, "a": ask, "A": qty}


def mark(sym: str, t: int, price: str, rate: str = "0.00010000") -> dict[str, Any]:
    return {
        "e": "markPriceUpdate",
        "E": t,
        "s": sym,
        "p": price,
        "i": price,
        "P": price,
        "r": rate,
        "T": T0 + 8 * 3600 * 1000,
    }


async def record_sim(
    folder: Path, seconds: float = 2.0, time_scale: float = 10.0
) -> tuple[RecordingWriter, Any]:
    """Record the embedded exchange's own public streams (standing in for live ones), stamped
    on the exchange's clock so a fast sim gives a recording of sim time."""
    sim = SimExchange.for_tests(time_scale=time_scale)
    server = SimServer(sim, host="127.0.0.1")
    urls = await server.start()
    await sim.start()
    try:
        ep = urls.endpoints()
        kinds = ["spot_book", "fut_book", "mark"]
        writer = RecordingWriter(folder, source=urls.spot_stream, symbols=["BTCUSDT", "ETHUSDT"], kinds=kinds)
        rec = Recorder(
            writer,
            plans(ep.spot_stream, ep.futures_stream, ["BTCUSDT", "ETHUSDT"], kinds),
            clock=sim.clock.now_ms,
        )
        stats = await rec.run(seconds)
    finally:
        await sim.stop()
        await server.stop()
    return writer, stats


# What the ledger says of itself rather than of the trading: its venue (the replay
# exchange's port and account uid are drawn per start) and who holds it (pid, host, times).
IDENTITY_TABLES = ("ledger_meta", "ledger_leases")


def dump_ledger(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but Alembic's and the identity tables), in primary-key order."""
    con = sqlite3.connect(path)
    try:
        names = [
            r[0]
            for r in con.execute(
                "select name from sqlite_master where type='table' and name not like 'sqlite_%' "
                "and name != 'alembic_version' order by name"
            )
            if r[0] not in IDENTITY_TABLES
        ]
        return {n: con.execute(f"select * from {n} order by 1").fetchall() for n in names}
    finally:
        con.close()


def dec(value: Any) -> Decimal:
    return Decimal(str(value))


def busy_recording(folder: Path, seconds: int, seed: int = 3) -> Path:
    """Two symbols at 20 books/s and a mark per second whose basis swings past the default
    entry and exit thresholds, so the basis strategy trades both symbols, often at once."""
    import math
    import random

    rng = random.Random(seed)
    lines: list[tuple[int, str, str, dict[str, Any]]] = []
    mids = {"BTCUSDT": 60000.0, "ETHUSDT": 3000.0}
    for i in range(seconds * 20):
        t = T0 + i * 50
        for sym in mids:
            mids[sym] *= math.exp(rng.gauss(0, 0.00004))
            bid = math.floor(mids[sym] * 100) / 100
            lines.append((t, "spot_book", sym, book(sym, f"{bid:.2f}", f"{bid + 0.01:.2f}", "5")))
        if i % 20 == 0:
            swing = 0.0006 if (i // 20) % 4 < 2 else -0.0002  # ±6 / -2 bps: entries and exits
            for sym in mids:
                lines.append((t, "mark", sym, mark(sym, t, f"{mids[sym] * (1 + swing):.2f}")))
    return write_recording(folder, lines)
