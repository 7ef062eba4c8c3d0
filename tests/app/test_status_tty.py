"""``python run.py`` on a terminal (a pseudo-terminal, 80 columns): the log lines print above
the live status and stay; the status is redrawn in place (one frame left on the screen)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import struct
import sys
import termios
from pathlib import Path

import pyte

from executor.config import ROOT


def write_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "test.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "ledger.db"}"\n'
        f'[logging]\ndir = "{tmp_path / "logs"}"\n'
        f'[risk]\nkill_switch_file = "{tmp_path / "KILL"}"\n', encoding="utf-8")
    return cfg


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


async def test_logs_print_above_the_live_status_on_a_terminal(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 80, 0, 0))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "80", "LINES": "50", "TERM": "xterm"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "run.py"), "--config", str(write_config(tmp_path)), "--duration", "4",
        cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    reader = asyncio.get_running_loop().run_in_executor(None, _read_all, master)
    try:
        assert await asyncio.wait_for(proc.wait(), 90) == 0
        raw = (await asyncio.wait_for(reader, 10)).decode("utf-8", "replace")
    finally:
        os.close(master)
    screen = pyte.Screen(80, 400)  # tall enough that nothing scrolls away
    pyte.Stream(screen).feed(raw)
    shown = [line.rstrip() for line in screen.display]
    titles = [i for i, line in enumerate(shown) if line.startswith("bx run 1 · sim")]
    assert len(titles) == 1, "\n".join(shown)  # redrawn in place: one frame on the screen
    running = next(i for i, line in enumerate(shown) if "bot running: run 1" in line)
    stopped = next(i for i, line in enumerate(shown) if "final reconciliation" in line)
    assert running < stopped < titles[0]  # logs from start to shutdown, all above the status
    below = "\n".join(shown[titles[0]:])
    assert "PnL (USDT)" in below and "since start" in below and "streams" in below
