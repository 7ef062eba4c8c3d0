"""``python run.py`` as a user runs it, as a subprocess, against an exchange the test owns."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor.config import ROOT
from tests.scenarios.harness import overrides, until, write_toml


@dataclass
class BotProcess:
    proc: asyncio.subprocess.Process
    out: Path
    err: Path

    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")


def bot_config(tmp_path: Path, extra: dict[str, Any] | None = None) -> Path:
    return write_toml(tmp_path / "bot.toml", overrides(tmp_path, extra))


async def spawn_bot(tmp_path: Path, admin_url: str, name: str, *args: str) -> BotProcess:
    """``run.py --exchange <admin> --config bot.toml ARGS`` with its output in files."""
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "run.py"), "--exchange", admin_url, "--config",
            str(tmp_path / "bot.toml"), *args, cwd=tmp_path, env=env, stdout=fo, stderr=fe)
    return BotProcess(proc, out, err)


async def wait_exit(bot: BotProcess, timeout: float = 60.0) -> int:
    try:
        return await asyncio.wait_for(bot.proc.wait(), timeout)
    except TimeoutError:
        bot.proc.kill()
        await bot.proc.wait()
        raise AssertionError(f"the bot did not exit within {timeout} s:\n{bot.output()[-3000:]}") from None


async def sigkill_while_trading(tmp_path: Path, admin_url: str, trading: Callable[[], bool],
                                what: str) -> float:
    """Start a bot, wait until ``trading()``, let it run a random 1-4 s more, SIGKILL it;
    the delay (the random moment is the point of the restart tests)."""
    delay = random.uniform(1.0, 4.0)
    bot = await spawn_bot(tmp_path, admin_url, "first")
    try:
        await until(trading, 60, what)
        await asyncio.sleep(delay)
    finally:
        bot.proc.send_signal(signal.SIGKILL)
        await bot.proc.wait()
    return delay


async def restart_until(tmp_path: Path, admin_url: str, traded: Callable[[], bool], what: str) -> BotProcess:
    """Start a second bot on the same ledger, wait until ``traded()`` (it got past whatever
    the first one left behind and trades again), then stop it gracefully (SIGTERM)."""
    bot = await spawn_bot(tmp_path, admin_url, "second")
    try:
        await until(traded, 60, what)
    finally:
        if bot.proc.returncode is None:
            bot.proc.send_signal(signal.SIGTERM)
    return bot

