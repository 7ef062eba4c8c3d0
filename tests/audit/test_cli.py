"""``python run.py audit`` as a user runs it: a subprocess on a temporary ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from executor.cli import main
from tests.audit.scenario import Built, tamper

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "audit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


async def test_report_prints_readable_tables(scenario: Built) -> None:
    p = _run("--db", scenario.url)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "BY SYMBOL" in out and "BTCUSDT" in out and "BNBUSDT" in out
    assert "realized FIFO" in out and "69.2640" in out
    assert "slippage vs mid, bps" in out and "RECONCILIATION RUNS (1)" in out


async def test_config_override_json_and_out_dir(scenario: Built, tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "over.toml"
    cfg.write_text(f'[database]\nurl = "{scenario.url}"\n')
    out = tmp_path / "exports"
    # In-process (the subprocess path is covered above): same parser, same command.
    code = main(
        [
            "audit",
            "report",
            "--config",
            str(cfg),
            "--format",
            "json",
            "--symbol",
            "btcusdt",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["symbol"] for s in data["symbols"]] == ["BTCUSDT"]
    assert (out / "orders.csv").read_text().count("\n") == 7  # header + 6 BTCUSDT orders
    assert (out / "fills.csv").exists()


async def test_verify_exit_codes(scenario: Built, capsys) -> None:
    assert main(["audit", "verify", "--db", scenario.url]) == 0
    assert capsys.readouterr().out.startswith("OK:")
    tamper(scenario.path, "UPDATE balances SET free = '7' WHERE asset = 'BTC'")
    p = _run("verify", "--db", scenario.url)  # the exit code as a shell sees it
    assert p.returncode == 1
    assert "balances[BTC]" in p.stdout


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys) -> None:
    missing = f"sqlite+aiosqlite:///{tmp_path / 'none.db'}"
    assert main(["audit", "--db", missing]) == 2
    assert "no database at" in capsys.readouterr().err
    assert main(["audit", "--db", missing, "--since", "yesterday"]) == 2
    assert "--since 'yesterday'" in capsys.readouterr().err
    assert main(["audit", "--db", "postgresql://x/y"]) == 2
    assert "sqlite+aiosqlite" in capsys.readouterr().err


def test_default_ledger_on_sim_is_the_newest_run_file(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from executor.audit.cli import default_url

    configured = tmp_path / "data" / "executor.db"
    cfg = SimpleNamespace(profile="sim", database=SimpleNamespace(url=f"sqlite+aiosqlite:///{configured}"))
    assert default_url(cfg) == cfg.database.url  # nothing there yet: the configured file
    (tmp_path / "data" / "sim").mkdir(parents=True)
    older = tmp_path / "data" / "sim" / "executor-20260101T000000.000Z.db"
    newer = tmp_path / "data" / "sim" / "executor-20260102T000000.000Z.db"
    older.write_bytes(b"")
    newer.write_bytes(b"")
    os.utime(older, (1_700_000_000, 1_700_000_000))
    os.utime(newer, (1_700_000_100, 1_700_000_100))
    assert default_url(cfg) == f"sqlite+aiosqlite:///{newer}"
    live = SimpleNamespace(profile="live", database=cfg.database)
    assert default_url(live) == cfg.database.url
