"""``run.py sweep``: one deterministic replay per parameter combination in parallel processes;
its table matches each ledger's own audit (read back through ``run.py audit --format json``)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from executor.config import ConfigError
from executor.replay.importer import import_files
from executor.replay.sweep import combinations, combo_name, parse_params, render, run_sweep
from tests.replay.helpers import replay_config

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]


def audit_json(ledger: str) -> dict:
    out = subprocess.run(
        [sys.executable, "run.py", "audit", "--format", "json", "--db", f"sqlite+aiosqlite:///{ledger}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)


def test_a_sweep_matches_each_ledgers_audit(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    import_files(
        [DATA / "BTCUSDT-bookTicker-2026-11-01.csv", DATA / "markPriceKlines" / "BTCUSDT-1m-2026-11-01.csv"],
        rec,
    )
    cfg = replay_config(
        tmp_path, symbols=("BTCUSDT",), risk={"stale_after_s": "120"}, params={"max_inventory_quote": "50"}
    )
    # Two combinations on two processes: every sweep mechanism (the product of the values,
    # one process and ledger each, the sorted table and CSV) is met by two as by twenty.
    params = parse_params(["entry_bps=2,6", "exit_bps=-1"])
    rows = run_sweep(cfg, rec, params, tmp_path / "sweep", jobs=2)
    assert sorted(r["params"] for r in rows) == ["entry_bps=2,exit_bps=-1", "entry_bps=6,exit_bps=-1"]
    nets = [r["net"] for r in rows]
    assert nets == sorted(nets, reverse=True)
    assert all(r["code"] == 0 for r in rows)
    # entry 6 bps never triggers on this data (the ask is 5 bps under the mark); entry 2 does.
    by = {r["params"]: r for r in rows}
    assert by["entry_bps=6,exit_bps=-1"]["fills"] == 0 and by["entry_bps=2,exit_bps=-1"]["fills"] > 0
    with (tmp_path / "sweep" / "sweep.csv").open() as fh:
        csv_rows = list(csv.DictReader(fh))
    assert [c["params"] for c in csv_rows] == [r["params"] for r in rows]
    for row, crow in zip(rows, csv_rows, strict=True):
        audit = audit_json(row["ledger"])
        totals = audit["totals_by_quote"].get("USDT", {})
        zero = "0"
        realized = Decimal(totals.get("realized_fifo", zero))
        unrealized = Decimal(totals.get("unrealized_fifo", zero))
        assert row["realized"] == realized and Decimal(crow["realized"]) == realized
        assert row["unrealized"] == unrealized
        assert row["fees"] == Decimal(totals.get("fees", zero)) and Decimal(crow["fees"]) == row["fees"]
        assert row["net"] == realized + unrealized
        assert row["fills"] == sum(s["fills"] for s in audit["symbols"])
        assert row["orders"] == sum(s["orders_total"] for s in audit["symbols"])
    table = render(rows)
    assert table.splitlines()[0].split()[:3] == ["params", "quote", "orders"]
    assert len(table.splitlines()) == 2 + 2


@pytest.mark.parametrize("spec", ["entry_bps", "=1,2", "entry_bps="])
def test_bad_param_specs_are_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="--param"):
        parse_params([spec])


def test_every_combination_of_the_values_is_run_once() -> None:
    combos = combinations(parse_params(["entry_bps=2,4,6", "exit_bps=-1,0"]))
    assert [combo_name(c) for c in combos] == [
        "entry_bps=2,exit_bps=-1", "entry_bps=2,exit_bps=0", "entry_bps=4,exit_bps=-1",
        "entry_bps=4,exit_bps=0", "entry_bps=6,exit_bps=-1", "entry_bps=6,exit_bps=0"]
