"""`python run.py sim` prints its URLs and credentials, answers /api/v3/time, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


async def test_run_py_sim_serves_until_terminated() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "run.py", "sim", "--seed", "11", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        lines: list[str] = []

        async def read_banner() -> None:
            while not lines or not lines[-1].startswith("Ctrl-C"):
                line = await proc.stdout.readline()
                assert line, "run.py sim exited early: " + (await proc.stderr.read()).decode()
                lines.append(line.decode().rstrip())

        await asyncio.wait_for(read_banner(), 20)
        urls = {line.split()[1]: line.split()[-1] for line in lines if line.startswith("  spot ")}
        rest = next(line.split()[2] for line in lines if line.startswith("  spot REST"))
        assert rest.startswith("http://127.0.0.1:") and rest.endswith("/api")
        assert any("WS API" in line and "/ws-api/v3" in line for line in lines)
        assert any("futures REST" in line for line in lines) and urls
        assert any(line.startswith("  HMAC secret") for line in lines)
        assert any("BEGIN PRIVATE KEY" in line for line in lines)
        async with aiohttp.ClientSession() as session, session.get(rest + "/v3/time") as resp:
            assert resp.status == 200
            assert "serverTime" in await resp.json()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
