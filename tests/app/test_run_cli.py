"""``python run.py`` as a user runs it: a subprocess with its own embedded exchange."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

from executor.config import ROOT


def write_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "test.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "ledger.db"}"\n'
        f'[logging]\ndir = "{tmp_path / "logs"}"\n'
        f'[risk]\nkill_switch_file = "{tmp_path / "KILL"}"\n', encoding="utf-8")
    return cfg


def runs_in(tmp_path: Path) -> list[tuple[str | None, str | None]]:
    (ledger,) = (tmp_path / "sim").glob("ledger-*.db")  # the embedded sim's per-run ledger
    with sqlite3.connect(ledger) as conn:
        return conn.execute("SELECT ended, end_reason FROM runs").fetchall()


async def spawn(tmp_path: Path, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "run.py"), "--config", str(write_config(tmp_path)), *args,
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_run_with_duration_exits_0_and_prints_status_lines(tmp_path: Path) -> None:
    proc = await spawn(tmp_path, "--duration", "4")
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, err.decode()[-2000:]
    status = [line for line in text.splitlines() if line.startswith("status ")]
    assert any("bx run" in line for line in status) and any("BTCUSDT" in line for line in status)
    assert "\x1b[" not in text  # not a terminal: plain lines, no cursor movement
    assert runs_in(tmp_path) == [("clean", "--duration 4 s elapsed")]
    assert list((tmp_path / "logs").glob("run-*-run1.log"))


async def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    proc = await spawn(tmp_path)
    assert proc.stdout is not None
    while True:  # running once it prints its status
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line, "exited before printing a status line"
        if line.startswith(b"status bx run"):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert runs_in(tmp_path) == [("clean", "SIGTERM")]
