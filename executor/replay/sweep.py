"""``python run.py sweep --replay DIR --param entry_bps=2,4,6 --param exit_bps=-1,0``.

One max-speed (deterministic) replay per combination of the given ``[strategy.params]``
values, in separate processes (``--jobs``, default one per core), each writing its own
ledger ``OUT/ledgers/<name>=<value>,....db``. Each worker then reads its ledger with the
audit (``executor.audit.report.build_report``) and returns the headline figures; the parent
prints them as one table sorted by ``--sort`` (default: net PnL, descending) and writes the
same rows to ``OUT/sweep.csv``.

Headline figures, summed over the traded symbols of the first quote asset (USDT for the
default symbols), exactly as the audit computes them: orders, fills, volume (quote), fees
(quote), realized PnL (FIFO, net of fees), unrealized PnL at the last mark (FIFO), and
``net`` = realized + unrealized.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import itertools
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from decimal import Decimal
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from executor.config import Config, ConfigError

COLUMNS = ("orders", "fills", "volume", "fees", "realized", "unrealized", "net")


def parse_params(specs: list[str]) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name or not vals:
            raise ConfigError(f"--param: expected NAME=V1,V2,..., got {spec!r}")
        if any(name == n for n, _ in out):
            raise ConfigError(f"--param: {name} given twice")
        out.append((name, vals))
    if not out:
        raise ConfigError("sweep: give at least one --param NAME=V1,V2")
    return out


def combinations(params: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
    names = [n for n, _ in params]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(v for _, v in params))]


def combo_name(combo: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in combo.items())


def headline(db_url: str) -> dict[str, Any]:
    """The audit's headline figures of one ledger (see the module docstring)."""
    from executor.audit.query import AuditDB, Scope
    from executor.audit.report import build_report

    with AuditDB.from_url(db_url) as db:
        rep = build_report(db, Scope())
    quotes = sorted(rep.totals_by_quote)
    quote = quotes[0] if quotes else ""
    t = rep.totals_by_quote.get(quote, {})
    zero = Decimal(0)
    realized = t.get("realized_fifo", zero)
    unrealized = t.get("unrealized_fifo", zero)
    syms = [s for s in rep.symbols if s.quote == quote]
    return {
        "quote": quote,
        "orders": sum(s.orders_total for s in syms),
        "fills": sum(s.fills for s in syms),
        "volume": t.get("volume", zero),
        "fees": t.get("fees", zero),
        "realized": realized,
        "unrealized": unrealized,
        "net": realized + unrealized,
    }


def _worker(cfg: Config, folder: str, combo: dict[str, str], db_path: str) -> dict[str, Any]:
    """One combination, in its own process: replay at max speed, then read its audit."""
    import logging

    from executor.replay.runner import run_replay

    logging.basicConfig(level=logging.WARNING)
    params = dict(cfg.strategy.params)
    params.update(combo)
    run_cfg = replace(cfg, strategy=replace(cfg.strategy, params=params))
    result = asyncio.run(run_replay(run_cfg, Path(folder), speed=None, db=db_path))
    row: dict[str, Any] = {
        "params": combo_name(combo),
        "ledger": db_path,
        "code": result.code,
        "lines": result.stats.lines,
        "wall_s": round(result.stats.wall_s, 2),
    }
    row.update(headline(f"sqlite+aiosqlite:///{db_path}"))
    return row


def run_sweep(
    cfg: Config,
    folder: Path,
    params: list[tuple[str, list[str]]],
    out: Path,
    *,
    jobs: int | None = None,
    sort: str = "net",
) -> list[dict[str, Any]]:
    from executor.strategy.loader import load_strategy

    combos = combinations(params)
    for combo in combos:  # a bad value stops the sweep here, with the strategy's own message
        params_c = dict(cfg.strategy.params)
        params_c.update(combo)
        load_strategy(replace(cfg.strategy, params=params_c))
    if sort not in COLUMNS:
        raise ConfigError(f"--sort: one of {', '.join(COLUMNS)}")
    (out / "ledgers").mkdir(parents=True, exist_ok=True)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(combos)))
    paths = [str((out / "ledgers" / f"{combo_name(c)}.db").resolve()) for c in combos]
    for p in paths:
        if Path(p).exists():
            raise ConfigError(f"sweep: {p} exists; choose another --out")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_worker, cfg, str(folder), c, p) for c, p in zip(combos, paths, strict=True)]
        rows = [f.result() for f in futures]
    rows.sort(key=lambda r: (-r[sort], r["params"]))  # Decimal or int figures
    with (out / "sweep.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["params", "quote", *COLUMNS, "ledger"])
        for r in rows:
            w.writerow([r["params"], r["quote"], *(str(r[c]) for c in COLUMNS), r["ledger"]])
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, Decimal):
            return f"{v.quantize(Decimal('0.0001')):f}"
        return str(v)

    head = ["params", "quote", *COLUMNS]
    table = [head] + [[fmt(r[c]) for c in head] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = []
    for n, row in enumerate(table):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])] + [
            c.rjust(w) for c, w in zip(row[2:], widths[2:], strict=True)
        ]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def sweep_command(cfg: Config, args: argparse.Namespace) -> int:
    folder = Path(args.replay)
    if not folder.is_dir():
        raise ConfigError(f"--replay: {folder} is not a folder")
    params = parse_params(args.param)
    now = dt.datetime.now(dt.UTC)
    out = Path(args.out) if args.out else Path("data") / "sweeps" / f"{now:%Y%m%dT%H%M%S}Z"
    try:
        rows = run_sweep(cfg, folder, params, out, jobs=args.jobs, sort=args.sort)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a worker that died: say which, no traceback
        print(f"sweep: a replay failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render(rows))
    print(f"wrote {out / 'sweep.csv'}; ledgers in {out / 'ledgers'}", file=sys.stderr)
    return 0 if all(r["code"] == 0 for r in rows) else 1
