"""Audit at scale: build a ledger of N fills (default 1,000,000) and time ``audit`` and
``audit verify`` on it.

The database gets its schema from the real migrations (``ensure_schema``), then rows are
bulk-inserted with ``executemany`` in a few transactions: one run, N/2 orders (two fills
each, decision-time bid/ask, acknowledgement times), N fills on BTCUSDT and ETHUSDT with
fees in quote (70 %), base (20 %) and BNB (10 %), one ``outboundAccountPosition`` per fill
for the assets it changed, REST snapshots at the start and the end, the ``balances``
table, and a few reconciliation runs. The ledger is consistent, so verify must say OK.

    .venv/bin/python bench/audit_scale.py              # 1,000,000 fills
    .venv/bin/python bench/audit_scale.py --fills 100000 --keep /tmp/ledger.db

Then the audit checkpoints are written as the bot writes them (``run.py db checkpoint``,
which the bot's ``audit_checkpoint`` job runs every 15 minutes in a child process), with the
cut ``--tail`` fills before the end (default 10,000): the newest fills stay unfolded, as
they would be after the bot's last checkpoint. The first checkpoint of a ledger folds it
from the start (timed and reported: a bot pays that once, in slices, as the ledger grows).

Each command is timed as a user runs it (``python run.py audit ...`` in a subprocess,
wall clock, output to /dev/null) and, separately, in-process by phase; ``--no-checkpoint``
times them folding every row instead.

``--cold`` (issue 16, the set-based audit): no checkpoint at all (any is deleted first), and
``audit`` / ``audit verify`` are timed as a user runs them, then in-process each path:
set-based SQL (``executor.audit.setbased`` / ``verify_sql``) against folding every row, with a
check that both give the same report and verification. ``--url URL`` times the same on a
copy of the ledger elsewhere (a PostgreSQL copy made with ``run.py db copy``):

    .venv/bin/python bench/audit_scale.py --fills 1000000 --keep /tmp/a1m.db --cold
    .venv/bin/python bench/audit_scale.py --keep /tmp/a1m.db --cold --url postgresql+asyncpg://...
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from executor.persistence.migrate import ensure_schema  # noqa: E402

T0 = 1_767_225_600_000
E8 = 100_000_000
SYMBOLS = {"BTCUSDT": ("BTC", 6_000_000), "ETHUSDT": ("ETH", 300_000)}  # start price in cents


def d8(units: int) -> str:
    """Integer 1e-8 units as an exact 8-place decimal string."""
    sign = "-" if units < 0 else ""
    units = abs(units)
    return f"{sign}{units // E8}.{units % E8:08d}"


def d2(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def build(path: Path, n_fills: int, seed: int = 1) -> None:
    url = f"sqlite+aiosqlite:///{path}"
    asyncio.run(ensure_schema(url))
    rnd = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    cur = conn.cursor()
    cur.execute("BEGIN")
    cur.execute(
        "INSERT INTO runs (id, version, profile, config_hash, started_ms) VALUES (1, 'bench', 'sim', 'x', ?)",
        (T0,),
    )
    bal = {"USDT": 10_000_000 * E8, "BTC": 50 * E8, "ETH": 500 * E8, "BNB": 100 * E8}
    snap = [
        (k, "rest_snapshot", a, d8(v), d8(0), None, "rest_snapshot", f"updateTime={T0}", T0, T0, 1, None)
        for k, (a, v) in enumerate(sorted(bal.items()))
    ]
    ev_sql = (
        "INSERT INTO balance_events (dedupe_key, kind, asset, free, locked, delta, source, event_ref, "
        "event_ms, received_ms, run_id, payload) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    )
    cur.executemany(ev_sql, [(f"rest_snapshot:updateTime={T0}:{r[2]}", *r[1:]) for r in snap])
    # BNB price points for BNB fees: a few BNBUSDT orders with decision bid/ask.
    order_sql = (
        "INSERT INTO orders (id, client_order_id, exchange_order_id, run_id, symbol, side, type, "
        "time_in_force, price, quantity, status, status_source, executed_qty, cum_quote_qty, created_ms, "
        "sent_ms, acked_ms, updated_ms, decision_bid, decision_ask, decision_mark, decision_ms, external, "
        "resolved_from_unknown) "
        "VALUES (?,?,?,1,?,?,'LIMIT','GTC',?,?,?,'stream',?,?,?,?,?,?,?,?,?,?,0,?)"
    )
    fill_sql = (
        "INSERT INTO fills (symbol, trade_id, order_id, client_order_id, exchange_order_id, side, price, "
        "qty, quote_qty, commission, commission_asset, is_maker, trade_ms, source, received_ms, run_id) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,'stream',?,1)"
    )
    cur.executemany(
        order_sql,
        [
            (
                i + 1,
                f"bnb-{i}",
                None,
                "BNBUSDT",
                "BUY",
                "600.00",
                "1",
                "NOT_PLACED",
                "0",
                "0",
                T0 + i,
                None,
                None,
                T0 + i,
                "599.00",
                "601.00",
                None,
                T0 + i,
                0,
            )
            for i in range(10)
        ],
    )
    price = {s: p for s, (_, p) in SYMBOLS.items()}
    orders: list[tuple] = []
    fills: list[tuple] = []
    events: list[tuple] = []
    t = T0 + 1000
    oid = 10
    tid = {s: 0 for s in SYMBOLS}
    n_orders = n_fills // 2
    syms = list(SYMBOLS)
    for k in range(n_orders):
        sym = syms[k % 2]
        base = SYMBOLS[sym][0]
        p = price[sym] = max(100, price[sym] + rnd.randint(-300, 300))
        side = "BUY" if (bal[base] < 10 * E8 or rnd.random() < 0.5) else "SELL"
        qty5 = [rnd.randint(10, 1000), rnd.randint(10, 1000)]  # 1e-5 units
        t += rnd.randint(1, 20)
        oid += 1
        decision = t
        spread = rnd.randint(1, 5)
        bid, ask = p - spread, p + spread
        fill_price = ask if side == "BUY" else bid
        executed = sum(qty5) * 1000  # 1e-8 units
        quote_total = 0
        for j, q5 in enumerate(qty5):
            tid[sym] += 1
            ft = t + 3 + j
            q8 = q5 * 1000
            quote8 = fill_price * q5 * 10  # cents * 1e-5 = 1e-7 units -> *10 for 1e-8
            quote_total += quote8
            r = rnd.random()
            if r < 0.7:
                fee_asset, fee8 = "USDT", quote8 // 1000
            elif r < 0.9:
                fee_asset, fee8 = base, q8 // 1000
            else:
                fee_asset, fee8 = "BNB", 1000
            sign = 1 if side == "BUY" else -1
            bal[base] += sign * q8
            bal["USDT"] -= sign * quote8
            bal[fee_asset] -= fee8
            fills.append(
                (
                    sym,
                    tid[sym],
                    oid,
                    f"o{oid}",
                    oid,
                    side,
                    d2(fill_price),
                    d8(q8),
                    d8(quote8),
                    d8(fee8),
                    fee_asset,
                    int(rnd.random() < 0.3),
                    ft,
                    ft + 2,
                )
            )
            changed = sorted({base, "USDT", fee_asset})
            ref = f"E={ft},u={ft}"
            events.extend(
                (
                    f"outboundAccountPosition:{ref}:{a}",
                    "outboundAccountPosition",
                    a,
                    d8(bal[a]),
                    d8(0),
                    None,
                    "stream",
                    ref,
                    ft,
                    ft + 2,
                    1,
                    None,
                )
                for a in changed
            )
        orders.append(
            (
                oid,
                f"o{oid}",
                oid,
                sym,
                side,
                d2(fill_price),
                d8(executed),
                "FILLED",
                d8(executed),
                d8(quote_total),
                decision,
                decision + 1,
                decision + 2,
                t + 5,
                d2(bid),
                d2(ask),
                None,
                decision,
                0,
            )
        )
        t += 5
        if len(orders) >= 50_000:
            cur.executemany(order_sql, orders)
            cur.executemany(fill_sql, fills)
            cur.executemany(ev_sql, events)
            orders, fills, events = [], [], []
            cur.execute("COMMIT")
            cur.execute("BEGIN")
    cur.executemany(order_sql, orders)
    cur.executemany(fill_sql, fills)
    cur.executemany(ev_sql, events)
    end = t + 100
    cur.executemany(
        ev_sql,
        [
            (
                f"rest_snapshot:updateTime={end}:{a}",
                "rest_snapshot",
                a,
                d8(v),
                d8(0),
                None,
                "rest_snapshot",
                f"updateTime={end}",
                end,
                end,
                1,
                None,
            )
            for a, v in sorted(bal.items())
        ],
    )
    cur.executemany(
        "INSERT INTO balances (asset, free, locked, source, event_ref, event_ms, updated_ms) "
        "VALUES (?,?,?,?,?,?,?)",
        [(a, d8(v), d8(0), "rest_snapshot", f"updateTime={end}", end, end) for a, v in sorted(bal.items())],
    )
    cur.executemany(
        "INSERT INTO reconciliation_runs (run_id, reason, started_ms, finished_ms, duration_ms, outcome, "
        "found, fixed, counts, discrepancies) VALUES (1, ?, ?, ?, 40, 'ok', 0, 0, '{}', '[]')",
        [("periodic", T0 + i * 300_000, T0 + i * 300_000 + 40) for i in range(5)],
    )
    cur.execute("UPDATE runs SET stopped_ms = ?, ended = 'clean' WHERE id = 1", (end,))
    cur.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def timed_cli(url: str, *args: str, command: str = "audit") -> tuple[float, float, int, str]:
    """(wall s, CPU s of the command and its children, exit code, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    p = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *command.split(), *args, "--db", url],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, p.returncode, p.stdout


def in_process(path: Path) -> dict[str, float]:
    from executor.audit.query import AuditDB, Scope
    from executor.audit.render import render_table
    from executor.audit.report import build_report
    from executor.audit.verify import verify

    out: dict[str, float] = {}
    gc.disable()  # as the audit command does
    with AuditDB(path) as db:
        for label, use in (("from the checkpoint", True), ("folding every row", False)):
            t = time.perf_counter()
            rep = build_report(db, Scope(), use_checkpoint=use)
            out[f"report, {label}"] = time.perf_counter() - t
            t = time.perf_counter()
            render_table(rep)
            out[f"render, {label}"] = time.perf_counter() - t
            t = time.perf_counter()
            res = verify(db, Scope(), use_checkpoint=use)
            out[f"verify, {label}"] = time.perf_counter() - t
            assert res.ok, res.differences[:3]
    return out


def cold(url: str, since: str | None = None) -> None:
    """The cold audit of ``url`` (no checkpoint): as a user runs it, then in-process per path.
    ``since`` (``--since``): only the scoped report, ``audit --since``, timed the same ways."""
    from dataclasses import replace

    from executor.audit.query import AuditDB, Scope, parse_time
    from executor.audit.report import build_report
    from executor.audit.verify import verify, verify_dict

    commands: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("audit (report)", ()),
        ("audit verify", ("verify",)),
    )
    if since is not None:
        commands = ((f"audit --since {since}", ("--since", since)),)
    for label, cmd in commands:
        secs, cpu, rc, out = timed_cli(url, *cmd)
        first = out.splitlines()[0] if out else ""
        print(f"cold {label:16s} {secs:6.2f} s wall {cpu:6.2f} s CPU  exit {rc}  {first[:80]}", flush=True)
    gc.disable()  # as the audit command does
    if since is not None:
        scope = Scope(since_ms=parse_time(since, "--since"))
        with AuditDB.from_url(url) as db:
            reports = []
            for label, set_based in (("set-based SQL", True), ("folding every row", False)):
                t = time.perf_counter()
                rep = build_report(db, scope, use_checkpoint=False, set_based=set_based)
                took = time.perf_counter() - t
                print(f"  in-process report --since, {label:18s} {took:6.2f} s", flush=True)
                reports.append(replace(rep, generated_ms=0))
            print(f"  the two reports are equal: {reports[0] == reports[1]}")
        return
    with AuditDB.from_url(url) as db:
        reports = []
        for label, set_based in (("set-based SQL", True), ("folding every row", False)):
            t = time.perf_counter()
            rep = build_report(db, Scope(), use_checkpoint=False, set_based=set_based)
            print(f"  in-process report, {label:18s} {time.perf_counter() - t:6.2f} s", flush=True)
            reports.append(replace(rep, generated_ms=0))
        print(f"  the two reports are equal: {reports[0] == reports[1]}")
        results = []
        for label, set_based in (("set-based SQL", True), ("column-wise Python", False)):
            t = time.perf_counter()
            res = verify(db, Scope(), use_checkpoint=False, set_based=set_based)
            took = time.perf_counter() - t
            print(f"  in-process verify, {label:18s} {took:6.2f} s  ok={res.ok}", flush=True)
            results.append(verify_dict(res))
        print(f"  the two verifications are equal: {results[0] == results[1]}")


def calibrate() -> float:
    """A fixed pure-Python workload, to compare figures across machines and load."""
    start = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fills", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, help="build (or reuse) the ledger at this path and keep it")
    ap.add_argument("--phases", action="store_true", help="also time the phases in-process")
    ap.add_argument("--tail", type=int, default=10_000, help="fills left after the checkpoint's cut")
    ap.add_argument("--no-checkpoint", action="store_true", help="remove the checkpoints: fold every row")
    ap.add_argument("--cold", action="store_true", help="no checkpoint: time the set-based audit (issue 16)")
    ap.add_argument("--url", help="with --cold: time this copy of the ledger instead (e.g. PostgreSQL)")
    ap.add_argument("--since", help="with --cold: time only the report scoped --since this time")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "ledger.db"
        if not path.exists():
            t = time.perf_counter()
            build(path, args.fills)
            print(
                f"built {args.fills:,} fills in {time.perf_counter() - t:.1f} s "
                f"({path.stat().st_size / 1e6:.0f} MB) at {path}"
            )
        url = f"sqlite+aiosqlite:///{path}"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        counts = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("orders", "fills", "balance_events")
        }
        conn.close()
        print("rows: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        if args.cold:
            if args.url is None:
                conn = sqlite3.connect(path)
                conn.execute("DELETE FROM audit_checkpoints")
                conn.commit()
                conn.close()
            cold(args.url or url, args.since)
            print(
                f"machine: 10M Python integer additions take {calibrate():.2f} s here; load average "
                + " ".join(f"{x:.1f}" for x in os.getloadavg())
            )
            return 0
        conn = sqlite3.connect(path)
        if args.no_checkpoint:
            conn.execute("DELETE FROM audit_checkpoints")
            conn.commit()
        else:
            # The cut: the time of the fill --tail fills before the last one.
            cut = conn.execute(
                "SELECT coalesce(trade_ms, received_ms) FROM fills ORDER BY id DESC LIMIT 1 OFFSET ?",
                (args.tail,),
            ).fetchone()[0]
            secs, cpu, rc, out = timed_cli(url, "--cut-ms", str(cut), command="db checkpoint")
            print(f"{'db checkpoint':16s} {secs:6.2f} s wall {cpu:6.2f} s CPU  exit {rc}")
            for line in out.splitlines():
                print(f"  {line}")
        conn.close()
        for label, cmd in (("audit (report)", ()), ("audit verify", ("verify",))):
            secs, cpu, rc, out = timed_cli(url, *cmd)
            first = out.splitlines()[0] if out else ""
            print(f"{label:16s} {secs:6.2f} s wall {cpu:6.2f} s CPU  exit {rc}  {first[:90]}")
        print(
            f"machine: 10M Python integer additions take {calibrate():.2f} s here "
            "(an idle 2024 laptop core: ~0.4 s); load average "
            + " ".join(f"{x:.1f}" for x in os.getloadavg())
        )
        if args.phases:
            for k, v in in_process(path).items():
                print(f"  in-process {k:34s} {v:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
