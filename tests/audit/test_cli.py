"""``python run.py audit`` as a user runs it: a subprocess on a temporary ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.audit.scenario import Built, tamper

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), "audit", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=env)


async def test_report_prints_readable_tables(scenario: Built) -> None:
    p = _run("--db", scenario.url)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "BY SYMBOL" in out and "BTCUSDT" in out and "BNBUSDT" in out
    assert "realized FIFO" in out and "69.2640" in out
    assert "slippage vs mid, bps" in out and "RECONCILIATION RUNS (1)" in out


async def test_config_override_json_and_out_dir(scenario: Built, tmp_path: Path) -> None:
    cfg = tmp_path / "over.toml"
    cfg.write_text(f'[database]\nurl = "{scenario.url}"\n')
    out = tmp_path / "exports"
    p = _run("report", "--config", str(cfg), "--format", "json", "--symbol", "btcusdt", "--out", str(out))
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert [s["symbol"] for s in data["symbols"]] == ["BTCUSDT"]
    assert (out / "orders.csv").read_text().count("\n") == 7  # header + 6 BTCUSDT orders
    assert (out / "fills.csv").exists()


async def test_verify_exit_codes(scenario: Built) -> None:
    p = _run("verify", "--db", scenario.url)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("OK:")
    tamper(scenario.path, "UPDATE balances SET free = '7' WHERE asset = 'BTC'")
    p = _run("verify", "--db", scenario.url)
    assert p.returncode == 1
    assert "balances[BTC]" in p.stdout


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    p = _run("--db", f"sqlite+aiosqlite:///{tmp_path / 'none.db'}")
    assert p.returncode == 2 and "no database at" in p.stderr
    p = _run("--db", f"sqlite+aiosqlite:///{tmp_path / 'none.db'}", "--since", "yesterday")
    assert p.returncode == 2 and "--since 'yesterday'" in p.stderr
