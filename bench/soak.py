"""Soak: the bot for N simulated days on a sped-up embedded exchange; does anything grow?

Run:  .venv/bin/python bench/soak.py --days 7 [--time-scale 400] [--out DIR]

The embedded exchange runs in a child process (``run.py sim``) with its clock
``--time-scale`` times faster than the wall (400: a simulated week in 25 minutes), so the
bot's scheduler sees every job on its exchange-time schedule: futures listenKey
keepalives (30 min), reconciliations (5 min), balance snapshots, clock syncs, and the
daily reconnect (23 h) of every market and user stream. The bot itself (the reference
basis strategy, the normal ``Bot`` wiring of ``python run.py --exchange URL``) runs in this
process, logging to a file (rotated like any run's), so its memory, file descriptors,
asyncio tasks and event-loop lag are this process's.

Every simulated hour it samples: RSS, open fds, asyncio tasks, event-loop lag (p99 and
max of the hour, from a 100 ms probe), the ledger's size on disk (db + WAL) and its rows
per table (the WAL is checkpointed every 10,000 pages, so db + WAL saws up to ~40 MB above
the db), and the bot's order/fill/job counts; it writes ``soak.csv`` and ``soak.png``
into ``--out``.

Verdict, after the first simulated day (start-up, caches filling): comparing the median
of the second simulated day's samples with the median of the last day's, it FAILS
(exit 1) if RSS grew more than 10 %, or open fds or tasks grew at all; and if the
event-loop lag's p99 over all probes after day one exceeds 50 ms; and if the daily
reconnects, listenKey keepalives or reconciliations ran less than 95 % as often as
scheduled. Needs ``--days 3`` or more to mean anything. Exit 2: the run itself broke (the bot
did not start, the exchange child died).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import gc
import math
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from executor.config import SchedulerConfig, load_config
from executor.run.app import Bot, BotOptions, fetch_sim_venue
from executor.run.health import open_fds
from executor.run.logs import setup_logging
from executor.run.shutdown import Shutdown
from executor.venue.profiles import Venue

ROOT = Path(__file__).resolve().parents[1]
HOUR_S = 3600
DAY_H = 24
RSS_GROWTH_MAX = 0.10
LAG_P99_MAX_MS = 50.0
PROBE_S = 0.1
BUCKET_MS = 0.1  # lag histogram resolution
BUCKETS = 20_000  # up to 2 s; anything above lands in the last bucket


class LagProbe:
    """Event-loop lag of this process, hour by hour plus a histogram of everything after day one."""

    def __init__(self) -> None:
        self.hour: list[float] = []
        self.after_day1 = [0] * BUCKETS
        self.counting = False

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            asked = time.monotonic()
            await asyncio.sleep(PROBE_S)
            lag_ms = max(0.0, (time.monotonic() - asked - PROBE_S) * 1000.0)
            self.hour.append(lag_ms)
            if self.counting:
                self.after_day1[min(BUCKETS - 1, int(lag_ms / BUCKET_MS))] += 1

    def take_hour(self) -> tuple[float, float]:
        values, self.hour = sorted(self.hour), []
        if not values:
            return 0.0, 0.0
        return values[max(0, math.ceil(0.99 * len(values)) - 1)], values[-1]

    def p99_after_day1(self) -> float:
        total = sum(self.after_day1)
        if not total:
            return 0.0
        rank, seen = math.ceil(0.99 * total), 0
        for i, n in enumerate(self.after_day1):
            seen += n
            if seen >= rank:
                return (i + 1) * BUCKET_MS
        return BUCKETS * BUCKET_MS


def sqlite_memory() -> int:
    """Bytes SQLite holds in this process (all connections: page caches, schema, statements),
    ``sqlite3_status64(SQLITE_STATUS_MEMORY_USED)``; -1 where the library is not reachable."""
    try:
        import _sqlite3
        import ctypes

        fn = ctypes.CDLL(_sqlite3.__file__).sqlite3_status64
        fn.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int64),
                       ctypes.c_int]
        cur, high = ctypes.c_int64(), ctypes.c_int64()
        return cur.value if fn(0, ctypes.byref(cur), ctypes.byref(high), 0) == 0 else -1
    except (OSError, AttributeError, ImportError):
        return -1


def object_counts() -> Counter[str]:
    """Live objects per type (one pass over the collector's objects: taken twice per run)."""
    return Counter(type(o).__name__ for o in gc.get_objects())


def ledger_rows(db: Path) -> dict[str, int]:
    """Rows per table, read through a separate read-only connection."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "AND name != 'alembic_version' ORDER BY name")]
        return {t: con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        con.close()


def ledger_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


async def start_sim(cfg_file: Path, time_scale: str, log: Path) -> tuple[subprocess.Popen[str], str]:
    """``run.py sim`` in a child process; returns it and its admin URL."""
    errors = log.open("w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "sim", "--config", str(cfg_file),
                             "--time-scale", time_scale], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=errors, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = await loop.run_in_executor(None, proc.stdout.readline)
        if not line:
            break
        m = re.search(r"admin\s+(http://\S+)/state", line)
        if m:
            # Keep draining its stdout so the child never blocks on a full pipe.
            loop.run_in_executor(None, proc.stdout.read)
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError(f"the embedded exchange did not start (see {log})")


def plot(rows: list[dict[str, Any]], tables: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = [r["sim_hour"] / DAY_H for r in rows]
    fig, axes = plt.subplots(5, 1, figsize=(10, 13), sharex=True)
    axes[0].plot(days, [r["rss_mb"] for r in rows], label="bot RSS (MB)")
    axes[0].plot(days, [r["sim_rss_mb"] for r in rows], label="exchange child RSS (MB)", alpha=0.6)
    if "sqlite_mb" in rows[0]:
        axes[0].plot(days, [r["sqlite_mb"] for r in rows], label="of the bot's RSS: SQLite (MB)", alpha=0.8)
    axes[0].set_ylabel("MB")
    axes[1].plot(days, [r["fds"] for r in rows], label="open fds")
    axes[1].plot(days, [r["tasks"] for r in rows], label="asyncio tasks")
    axes[2].plot(days, [r["lag_p99_ms"] for r in rows], label="loop lag p99 of each simulated hour")
    axes[2].axhline(LAG_P99_MAX_MS, color="red", linestyle=":", label=f"{LAG_P99_MAX_MS:g} ms")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("ms")
    axes[3].plot(days, [r["ledger_mb"] for r in rows], label="ledger db + WAL (MB)")
    axes[3].plot(days, [r["db_mb"] for r in rows], label="ledger db alone (MB)")
    axes[3].set_ylabel("MB")
    for t in tables:
        axes[4].plot(days, [r[f"rows_{t}"] for r in rows], label=t)
    axes[4].set_yscale("symlog")
    axes[4].set_ylabel("rows")
    axes[4].set_xlabel("simulated days")
    for ax in axes:
        ax.axvline(1, color="grey", linestyle="--", linewidth=0.8)
        ax.legend(loc="upper left", fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def on_schedule(rows: list[dict[str, Any]], sched: SchedulerConfig) -> tuple[bool, list[str]]:
    """Did the daily reconnects, keepalives and reconciliations run as often as scheduled?
    (At least 95 % of the fires their interval allows in the time sampled.)"""
    sim_s = rows[-1]["sim_hour"] * HOUR_S
    ok, lines = True, []
    for column, interval in (("daily_reconnects", sched.daily_reconnect_s),
                             ("keepalives", sched.futures_keepalive_s), ("reconciles", sched.reconcile_s)):
        due = int(sim_s // interval)
        ran = int(rows[-1][column])
        bad = ran < 0.95 * due
        ok &= not bad
        lines.append(f"{column}: {ran} of {due} scheduled: {'FAIL' if bad else 'ok'}")
    return ok, lines


def verdict(rows: list[dict[str, Any]], days: int, lag_p99: float) -> tuple[bool, list[str]]:
    day2 = [r for r in rows if DAY_H <= r["sim_hour"] < 2 * DAY_H]
    last = [r for r in rows if r["sim_hour"] >= (days - 1) * DAY_H]
    lines, ok = [], True
    if not day2 or not last:
        return False, ["not enough samples for a verdict"]
    for name, limit in (("rss_mb", RSS_GROWTH_MAX), ("fds", 0.0), ("tasks", 0.0)):
        base = statistics.median(r[name] for r in day2)
        end = statistics.median(r[name] for r in last)
        growth = (end - base) / base if base else 0.0
        bad = growth > limit if name == "rss_mb" else end > base
        ok &= not bad
        peak = max(r[name] for r in rows if r["sim_hour"] >= DAY_H)
        lines.append(f"{name}: day-2 median {base:g} -> last-day median {end:g} ({growth:+.1%}), "
                     f"max after day 1 {peak:g}: {'FAIL' if bad else 'ok'}")
    bad = lag_p99 > LAG_P99_MAX_MS
    ok &= not bad
    lines.append(f"loop lag p99 after day 1: {lag_p99:.1f} ms (limit {LAG_P99_MAX_MS:g}): "
                 f"{'FAIL' if bad else 'ok'}")
    return ok, lines


async def soak(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bx-soak-"))
    db = work / "ledger.db"
    cfg_file = work / "soak.toml"
    cfg_file.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{db}"\n'
                        f'[logging]\ndir = "{work / "logs"}"\nrotate = "size"\nmax_bytes = 5242880\n'
                        f'keep_files = 5\n[sim]\ntime_scale = "{args.time_scale}"\n'
                        f'[health]\nlog_every_s = 60\n')
    cfg = load_config(cfg_file)
    scale = float(cfg.sim.time_scale)
    hour_wall = HOUR_S / scale
    print(f"soak: {args.days} simulated days at {scale:g}x = {args.days * DAY_H * hour_wall / 60:.1f} min "
          f"wall; work dir {work}", flush=True)
    sim_proc, admin = await start_sim(cfg_file, args.time_scale, work / "sim.err")
    sim_ps = psutil.Process(sim_proc.pid)
    devnull = open(os.devnull, "w")  # noqa: SIM115 (closed at the end)
    setup = setup_logging(cfg, stream=devnull)
    probe = LagProbe()
    stop_probe = asyncio.Event()
    probe_task = asyncio.create_task(probe.run(stop_probe))
    rows: list[dict[str, Any]] = []
    types_day1: Counter[str] = Counter()
    heap_day1: tracemalloc.Snapshot | None = None
    if args.trace_malloc:
        tracemalloc.start(4)
    tables: list[str] = []
    bot: Bot | None = None
    code = 0
    try:
        endpoints, creds = await fetch_sim_venue(admin)
        bot = Bot(cfg, Venue("sim", endpoints, endpoints), creds,
                  BotOptions(status_out=devnull, status_tty=False, status_interval_s=30.0, log_setup=setup))
        await bot.start()
        started = time.monotonic()
        for hour in range(1, args.days * DAY_H + 1):
            delay = started + hour * hour_wall - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if sim_proc.poll() is not None:
                raise RuntimeError(f"the exchange child exited with {sim_proc.returncode}")
            if hour == DAY_H:
                probe.counting = True
                types_day1 = object_counts()
                if args.trace_malloc:
                    heap_day1 = tracemalloc.take_snapshot()
            lag_p99, lag_max = probe.take_hour()
            counts = ledger_rows(db)
            tables = sorted(counts)
            jobs = {n: s.runs for n, s in bot.scheduler.stats.items()} if bot.scheduler else {}
            row: dict[str, Any] = {
                "sim_hour": hour, "wall_s": round(time.monotonic() - started, 1),
                "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 2),
                "py_blocks": sys.getallocatedblocks(),  # Python's own heap (allocated blocks)
                "sqlite_mb": round(sqlite_memory() / 2**20, 2),  # SQLite's page caches and the rest
                "fds": open_fds(), "tasks": len(asyncio.all_tasks()),
                "lag_p99_ms": round(lag_p99, 2), "lag_max_ms": round(lag_max, 2),
                "ledger_mb": round(ledger_bytes(db) / 2**20, 3),
                "db_mb": round(db.stat().st_size / 2**20, 3),
                "sim_rss_mb": round(sim_ps.memory_info().rss / 2**20, 2),
                "orders": bot.tracker.stats.orders if bot.tracker else 0,
                "fills": bot.tracker.stats.fills if bot.tracker else 0,
                "tracked_orders": len(bot.tracker) if bot.tracker else 0,
                "daily_reconnects": jobs.get("daily_reconnect", 0),
                "keepalives": jobs.get("futures_keepalive", 0),
                "reconciles": jobs.get("reconcile", 0),
                "job_errors": sum(s.errors for s in bot.scheduler.stats.values()) if bot.scheduler else 0,
                **{f"rows_{t}": n for t, n in counts.items()}}
            rows.append(row)
            if hour % 6 == 0:
                print(f"  day {hour / DAY_H:4.2f}: rss {row['rss_mb']} MB, fds {row['fds']}, tasks "
                      f"{row['tasks']}, lag p99 {row['lag_p99_ms']} ms, orders {row['orders']}, "
                      f"fills {row['fills']}, ledger {row['ledger_mb']} MB, reconnects "
                      f"{row['daily_reconnects']}, keepalives {row['keepalives']}, reconciles "
                      f"{row['reconciles']}", flush=True)
        if heap_day1 is not None:
            stats = tracemalloc.take_snapshot().compare_to(heap_day1, "lineno")
            print("soak: Python heap growth since day 1, by line:", flush=True)
            for stat in stats[:15]:
                print(f"    {stat}", flush=True)
        growth = object_counts() - types_day1
        if growth:
            print("soak: live objects by type, growth since day 1: " + ", ".join(
                f"{name} +{n}" for name, n in growth.most_common(12)), flush=True)
    except Exception as exc:
        print(f"soak: the run broke: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 2
    finally:
        if bot is not None:
            ended = await bot.stop(Shutdown(), ended="clean", reason="soak done")
            print(f"soak: bot stopped ({ended})", flush=True)
        stop_probe.set()
        await probe_task
        sim_proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            sim_proc.wait(10)
        setup.close()
        devnull.close()
    if not rows:
        return 2
    fields = list(rows[0])
    for r in rows:
        for k in r:
            if k not in fields:
                fields.append(k)
    with (out / "soak.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, restval=0)
        writer.writeheader()
        writer.writerows(rows)
    for r in rows:
        for t in tables:
            r.setdefault(f"rows_{t}", 0)
    load = os.getloadavg()
    title = (f"bench/soak.py --days {args.days} --time-scale {args.time_scale} · {platform.node()} "
             f"{os.cpu_count()} CPUs · load {load[0]:.2f}")
    plot(rows, tables, out / "soak.png", title)
    ok, lines = verdict(rows, args.days, probe.p99_after_day1())
    ran_ok, ran_lines = on_schedule(rows, cfg.scheduler)
    ok &= ran_ok
    lines += ran_lines
    last = rows[-1]
    print(f"soak: {len(rows)} hourly samples; orders {last['orders']}, fills {last['fills']}, "
          f"daily reconnects {last['daily_reconnects']}, keepalives {last['keepalives']}, "
          f"reconciles {last['reconciles']}, "
          f"job errors {last['job_errors']}; ledger {last['ledger_mb']} MB; rows "
          + ", ".join(f"{t} {last[f'rows_{t}']}" for t in tables))
    for line in lines:
        print("  " + line)
    print(f"soak: wrote {out / 'soak.csv'} and {out / 'soak.png'}; logs in {work / 'logs'}; "
          f"load average now {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if code:
        return code
    print("soak: PASS" if ok else "soak: FAIL")
    return 0 if ok else 1


def replot(path: Path, args: argparse.Namespace) -> int:
    with path.open() as fh:
        rows: list[dict[str, Any]] = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]
    tables = sorted(k[len("rows_"):] for k in rows[0] if k.startswith("rows_"))
    plot(rows, tables, path.with_suffix(".png"),
         f"bench/soak.py --days {args.days} --time-scale {args.time_scale} · {platform.node()} "
         f"{os.cpu_count()} CPUs")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--time-scale", default="400", help="exchange seconds per wall second (default 400)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "soak-out"),
                    help="folder for soak.csv and soak.png")
    ap.add_argument("--trace-malloc", action="store_true",
                    help="diagnosis: print where the Python heap grew after day 1 (slows the bot)")
    ap.add_argument("--replot", metavar="CSV", help="only redraw the PNG (beside the CSV) from a soak.csv")
    args = ap.parse_args()
    if args.replot:
        return replot(Path(args.replot), args)
    if args.days < 1:
        print("soak: --days must be at least 1", file=sys.stderr)
        return 2
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
