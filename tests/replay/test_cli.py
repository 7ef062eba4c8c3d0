"""The replay commands as a user runs them: ``run.py --replay`` and ``run.py sim --replay``."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from executor.replay.format import read_lines
from executor.replay.importer import import_files

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "replay.toml"
    path.write_text(
        f"""
[symbols]
spot = ["BTCUSDT"]
[risk]
stale_after_s = "120"
kill_switch_file = "{tmp_path / "KILL"}"
[logging]
dir = "{tmp_path / "logs"}"
[database]
url = "sqlite+aiosqlite:///{tmp_path / "unused.db"}"
[strategy.params]
entry_bps = "4"                      # the recording's small basis: trade on it
exit_bps = "-1"
"""
    )
    return path


async def run(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "run.py",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_run_replay_then_audit(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    import_files(
        [DATA / "BTCUSDT-bookTicker-2026-11-01.csv", DATA / "markPriceKlines" / "BTCUSDT-1m-2026-11-01.csv"],
        rec,
    )
    ledger = tmp_path / "replay.db"
    code, out, err = await run(
        "--config", str(config_file(tmp_path)), "--replay", str(rec), "--speed", "max", "--db", str(ledger)
    )
    assert code == 0, err
    assert "replayed 184 lines" in out and str(ledger) in out
    code, out, err = await run("audit", "--format", "json", "--db", f"sqlite+aiosqlite:///{ledger}")
    assert code == 0, err
    assert json.loads(out)["symbols"][0]["fills"] > 0
    code, out, err = await run("audit", "verify", "--db", f"sqlite+aiosqlite:///{ledger}")
    assert code == 0, out + err  # every balance re-derived from the opening snapshot and the fills
    code, _, err = await run(
        "--config", str(config_file(tmp_path)), "--replay", str(rec), "--db", str(ledger)
    )
    assert code == 2 and "exists; a replay writes a fresh ledger" in err


async def test_replay_input_errors_are_one_line(tmp_path: Path) -> None:
    code, _, err = await run("--replay", str(tmp_path / "missing"))
    assert code == 2 and err.strip().count("\n") == 0 and "is not a folder" in err
    code, _, err = await run("--replay", str(tmp_path), "--speed", "fast")
    assert code == 2 and err.strip().count("\n") == 0 and "--speed" in err


async def test_sim_replay_serves_the_recorded_books(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    import_files(
        [DATA / "BTCUSDT-bookTicker-2026-11-01.csv", DATA / "markPriceKlines" / "BTCUSDT-1m-2026-11-01.csv"],
        rec,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "run.py",
        "--config",
        str(config_file(tmp_path)),
        "sim",
        "--replay",
        str(rec),
        "--speed",
        "20",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        url = None
        while url is None:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, "sim exited early"
            if line.strip().startswith("spot streams"):
                url = line.split()[-1]
        seen: set[tuple[str, str]] = set()
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url.rstrip("/") + "/stream?streams=btcusdt@bookTicker") as ws,
        ):
            while len(seen) < 2:
                msg = await asyncio.wait_for(ws.receive_json(), 20)
                seen.add((msg["data"]["b"], msg["data"]["a"]))
        assert seen == {("59969.00000000", "59970.00000000"), ("60010.00000000", "60011.00000000")}
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)


async def test_record_from_an_embedded_exchange(sim: Any, tmp_path: Path) -> None:
    await sim.exchange.start()  # the synthetic market's updates
    out = tmp_path / "rec"
    code, _, err = await run(
        "--config",
        str(config_file(tmp_path)),
        "record",
        "--exchange",
        sim.urls.admin,
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--duration",
        "3",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert f"recording BTCUSDT, ETHUSDT from {sim.urls.admin}" in err
    assert "record " in err and "recorded " in err  # progress and summary lines
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["symbols"] == ["BTCUSDT", "ETHUSDT"]
    kinds = {x.kind for x in read_lines(out)}
    assert kinds == {"spot_book", "fut_book", "mark"}  # futures bookTicker from the /public route
    code, _, err = await run("record", "--exchange", sim.urls.admin, "--duration", "1", "--out", str(out))
    assert code == 2 and "already holds a recording" in err
