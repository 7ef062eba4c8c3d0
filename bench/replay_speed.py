"""Replay speed through the whole path: a recording of 2 symbols at 20 bookTicker updates/s
each plus 1 s marks, replayed at ``--speed max`` (lock-step, deterministic) by the real bot
(exchange → spot streams → market state → basis strategy → risk → order manager → REST →
user stream → reconciler → ledger). Target: ≥ 100× real time.

Run from the repository root::

    .venv/bin/python bench/replay_speed.py [--minutes 10] [--keep DIR] [--entry-bps 4] [--exit-bps -1]

The recording is synthetic but shaped like a live one: per symbol a seeded random walk of
the mid (1-tick spread, sizes 0.1–2 BTC / 1–20 ETH) every 50 ms, and a ``markPriceUpdate``
per second whose basis wanders (Ornstein-Uhlenbeck, ±6 bps) so the default basis strategy
(entry 4 bps, exit -1 bps) trades now and then. Reports lines (events) per second of wall
time, the speed-up over real time, and the ledger's orders and fills.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from executor.config import load_config  # noqa: E402
from executor.replay.format import RecordingWriter  # noqa: E402
from executor.replay.runner import run_replay  # noqa: E402

T0 = 1_796_601_600_000
SYMBOLS = {"BTCUSDT": (60000.0, "0.01", (0.1, 2.0)), "ETHUSDT": (3000.0, "0.01", (1.0, 20.0))}


def write_recording(folder: Path, minutes: float, seed: int = 1) -> int:
    rng = random.Random(seed)
    w = RecordingWriter(folder, source="bench", symbols=list(SYMBOLS), kinds=["spot_book", "mark"])
    mids = {s: p for s, (p, _, _) in SYMBOLS.items()}
    basis = dict.fromkeys(SYMBOLS, 0.0)
    u = dict.fromkeys(SYMBOLS, 1)
    steps = int(minutes * 60 * 20)
    for i in range(steps):
        t = T0 + i * 50
        for n, (sym, (_, tick, (lo, hi))) in enumerate(SYMBOLS.items()):
            mids[sym] *= math.exp(rng.gauss(0, 0.00004))
            tk = float(tick)
            bid = math.floor(mids[sym] / tk) * tk
            w.write(
                t + n,
                "spot_book",
                sym,
                {
                    "u": u[sym],
                    "s": sym,
                    "b": f"{bid:.2f}",
                    "B": f"{rng.uniform(lo, hi):.4f}",
                    "a": f"{bid + tk:.2f}",
                    "A": f"{rng.uniform(lo, hi):.4f}",
                },
            )
            u[sym] += 1
        if i % 20 == 0:
            for n, sym in enumerate(SYMBOLS):
                basis[sym] = basis[sym] * 0.95 + rng.gauss(0, 0.00002)
                mark = mids[sym] * (1 + basis[sym] * 3)
                w.write(
                    t + 10 + n,
                    "mark",
                    sym,
                    {
                        "e": "markPriceUpdate",
                        "E": t,
                        "s": sym,
                        "p": f"{mark:.2f}",
                        "i": f"{mids[sym]:.2f}",
                        "P": f"{mids[sym]:.2f}",
                        "r": "0.00010000",
                        "T": T0 + 8 * 3600 * 1000,
                    },
                )
    w.close()
    return w.lines


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="recording length in market minutes")
    ap.add_argument("--keep", type=Path, help="keep the recording and ledger in this folder")
    ap.add_argument("--entry-bps", default="4", help="the strategy's entry_bps (1000: it never trades)")
    # The defaults (entry 4, exit -1) are the figures' trading load: ~1.4 orders/s of market
    # time on this recording. config/default.toml's exit_bps (14) trades ~50x less.
    ap.add_argument("--exit-bps", default="-1", help="the strategy's exit_bps")
    args = ap.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bx-replay-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    rec = tmp / "rec"
    t = time.monotonic()
    lines = write_recording(rec, args.minutes)
    print(
        f"recording: {lines} lines ({args.minutes:g} market minutes) written in {time.monotonic() - t:.1f} s"
    )
    cfg = load_config(
        local=None,
        overrides={
            "database": {"url": f"sqlite+aiosqlite:///{tmp / 'unused.db'}"},
            "logging": {"dir": str(tmp / "logs")},
            "risk": {"kill_switch_file": str(tmp / "KILL")},
            "strategy": {"params": {"entry_bps": args.entry_bps, "exit_bps": args.exit_bps}},
        },
    )
    ledger = tmp / "ledger.db"
    load = os.getloadavg()
    cpu = time.process_time()
    result = await run_replay(cfg, rec, speed=None, db=str(ledger))
    cpu = time.process_time() - cpu  # this process (exchange + bot); SQLite's thread included
    st = result.stats
    span = (st.last_ms - st.first_ms) / 1000
    import sqlite3

    con = sqlite3.connect(ledger)
    orders = con.execute("select count(*) from orders").fetchone()[0]
    fills = con.execute("select count(*) from fills").fetchone()[0]
    con.close()
    if args.keep is None:
        shutil.rmtree(tmp, ignore_errors=True)  # a 10-minute recording and its ledger: ~4 MB a run
    print(
        f"replayed {st.lines} lines ({st.books} books, {st.marks} marks) = {span:.0f} s of market "
        f"in {st.wall_s:.2f} s wall: {span / st.wall_s:.0f}x real time, "
        f"{st.lines / st.wall_s:,.0f} events/s; "
        f"{orders} orders, {fills} fills; exit {result.code}; CPU during the replay {st.cpu_s:.2f} s "
        f"({st.cpu_s / st.lines * 1e6:.0f} µs/event: {st.lines / st.cpu_s:,.0f} events per CPU second, "
        f"{span / st.cpu_s:.0f}x real time per CPU second); whole run {cpu:.2f} s CPU; "
        f"load average before {load[0]:.2f}, "
        f"after {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
