"""``db copy`` at scale: build a SQLite ledger of N fills (``audit_scale.build``: orders, fills,
balance events, snapshots) and copy it into a fresh PostgreSQL database with
``python run.py db copy`` in a subprocess; report the wall time and the child's peak memory.

    .venv/bin/python bench/db_copy.py --pg postgresql+asyncpg://USER@HOST:PORT/DB [--fills 1000000]

``--check`` also runs the audit report and ``audit verify`` on both sides afterwards (what
``db copy`` does by default); without it the copy alone is timed (``--no-check``). The
PostgreSQL database is created on the server named by ``--pg`` and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_scale import build
from reconcile_throughput import _pg_admin
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", required=True, help="PostgreSQL server URL (postgresql+asyncpg://...)")
    ap.add_argument("--fills", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--check", action="store_true", help="compare both audits afterwards, as db copy does")
    ap.add_argument("--time-audit", action="store_true",
                    help="then time a cold `audit` and `audit verify` on the PostgreSQL copy")
    args = ap.parse_args()
    name = f"bx_copy_bench_{os.getpid()}"
    dest = make_url(args.pg).set(database=name).render_as_string(hide_password=False)
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "ledger.db"
        t0 = time.perf_counter()
        build(src, args.fills)
        size_mb = src.stat().st_size / 1e6
        print(f"built {args.fills:,} fills in {time.perf_counter() - t0:.1f} s ({size_mb:.0f} MB)")
        asyncio.run(_pg_admin(args.pg, f'CREATE DATABASE "{name}"'))
        try:
            cmd = [sys.executable, "run.py", "db", "copy", "--from", f"sqlite+aiosqlite:///{src}",
                   "--to", dest, "--batch", str(args.batch)]
            if not args.check:
                cmd.append("--no-check")
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
            wall = time.perf_counter() - t0
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(proc.stdout.strip())
            if proc.returncode != 0:
                print(proc.stderr[-2000:])
            print(f"db copy {'with' if args.check else 'without'} the audit check: exit {proc.returncode}, "
                  f"{wall:.1f} s wall, peak RSS {peak_mb:.0f} MB (batch {args.batch}); "
                  f"load average after: {os.getloadavg()[0]:.2f}")
            if args.time_audit and proc.returncode == 0:
                # Cold: no checkpoint was copied (the source had none), so both fold every row.
                for what in (["audit"], ["audit", "verify"]):
                    t0 = time.perf_counter()
                    run = subprocess.run([sys.executable, "run.py", *what, "--db", dest], cwd=ROOT,
                                         capture_output=True, text=True,
                                         env={**os.environ, "PYTHONPATH": str(ROOT)})
                    print(f"cold `{' '.join(what)}` on PostgreSQL over {args.fills:,} fills: exit "
                          f"{run.returncode}, {time.perf_counter() - t0:.1f} s wall; "
                          f"load average after: {os.getloadavg()[0]:.2f}")
                    if run.returncode != 0:
                        print(run.stderr[-1000:])
        finally:
            asyncio.run(_pg_admin(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
