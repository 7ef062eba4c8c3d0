"""Every start-up failure is one line and its documented exit code, never a traceback.

``python run.py`` runs as a user runs it (a subprocess); where it needs an exchange, one the
test owns (``--exchange``), or a fake admin endpoint that points at ports nobody listens on.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from executor.config import ROOT
from executor.run.failures import (
    EXIT_CONFIG,
    EXIT_DATABASE,
    EXIT_PREFLIGHT,
    EXIT_VENUE,
    classify,
    database_line,
)
from tests.conftest import SimHandle


async def run_py(cwd: Path, *args: str, timeout: float = 60.0,
                 env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "run.py"), *args, cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def one_failure_line(err: str, *needles: str) -> str:
    """The failure is on exactly one line of stderr, which holds every needle; no traceback."""
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if all(n in ln for n in needles)]
    assert len(lines) == 1, (needles, err[-3000:])
    return lines[0]


def config(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n' + text, encoding="utf-8")
    return path


def ledger(tmp_path: Path, name: str) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    return tmp_path / "data" / name


async def test_a_symbol_the_exchange_cannot_list_is_a_config_error(tmp_path: Path) -> None:
    code, _, err = await run_py(tmp_path, "--config", str(config(tmp_path, '[symbols]\nspot = ["BTCUSD"]\n')),
                                "--duration", "5")
    assert code == EXIT_CONFIG
    one_failure_line(err, "symbols.spot", "BTCUSD")


async def test_a_corrupt_ledger_is_one_database_line(tmp_path: Path, sim: SimHandle) -> None:
    # The default ledger is per profile now: sim.db for the standalone sim (--exchange).
    ledger(tmp_path, "sim.db").write_bytes(b"this is not a database, just text\n" * 50)
    code, _, err = await run_py(tmp_path, "--config", str(config(tmp_path)), "--exchange", sim.urls.admin,
                                "--duration", "5")
    assert code == EXIT_DATABASE
    line = one_failure_line(err, "database error", "sim.db")
    assert "not a usable SQLite database" in line


async def test_a_ledger_from_a_newer_version_is_refused_everywhere(tmp_path: Path, sim: SimHandle) -> None:
    path = ledger(tmp_path, "sim.db")  # the per-profile default ledger of the sim profile
    code, _, err = await run_py(tmp_path, "--config", str(config(tmp_path)), "db", "upgrade")
    assert code == 0, err
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    cfg = str(config(tmp_path))
    code, _, err = await run_py(tmp_path, "--config", cfg, "--exchange", sim.urls.admin, "--duration", "5")
    assert code == EXIT_DATABASE
    one_failure_line(err, "9999_from_the_future", "newer version")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)  # nothing written
    # db checkpoint refuses to write into it; the audit reads it but warns.
    code, _, err = await run_py(tmp_path, "--config", cfg, "db", "checkpoint", "--all")
    assert code == EXIT_DATABASE
    one_failure_line(err, "9999_from_the_future")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM audit_checkpoints").fetchone() == (0,)
    code, _, err = await run_py(tmp_path, "--config", cfg, "audit", "--db", str(path))
    assert code == 0, err
    one_failure_line(err, "warning", "9999_from_the_future", "newer version")


def _make_read_only(path: Path) -> bool:
    """Make ``path`` unwritable for this process: chmod, or for root (which ignores modes) the
    immutable attribute; False when neither is possible here."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        path.chmod(0o444)
        return True
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def _make_writable(path: Path) -> None:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o644)


async def test_a_read_only_ledger_is_one_database_line(tmp_path: Path, sim: SimHandle) -> None:
    cfg = str(config(tmp_path))
    assert (await run_py(tmp_path, "--config", cfg, "db", "upgrade"))[0] == 0
    db = tmp_path / "data" / "sim.db"
    if not _make_read_only(db):
        pytest.skip("cannot make a file read-only for this user here (root without chattr)")
    try:
        code, _, err = await run_py(tmp_path, "--config", cfg, "--exchange", sim.urls.admin,
                                    "--duration", "5")
    finally:
        _make_writable(db)
    assert code == EXIT_DATABASE
    line = one_failure_line(err, "database error", "sim.db")
    assert "read-only" in line


def test_a_read_only_ledger_error_reads_as_one_line(tmp_path: Path) -> None:
    """The same classification without needing a non-root user: SQLite's own read-only error."""
    path = tmp_path / "ro.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        with pytest.raises(sqlite3.OperationalError) as err:
            conn.execute("INSERT INTO t VALUES (1)")
    finally:
        conn.close()
    failure = classify(err.value, database=f"sqlite+aiosqlite:///{path}")
    assert failure.code == EXIT_DATABASE
    assert "read-only" in failure.line and str(path) in failure.line and "\n" not in failure.line
    assert "not a usable SQLite" in database_line(sqlite3.DatabaseError("file is not a database"), "x")


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_venue_is_one_line_exit_4(tmp_path: Path) -> None:
    # Nothing listens on the admin port at all.
    code, _, err = await run_py(tmp_path, "--config", str(config(tmp_path)), "--exchange",
                                f"http://127.0.0.1:{_dead_port()}", "--duration", "5")
    assert code == EXIT_VENUE
    one_failure_line(err, "venue unreachable")
    # The admin answers, but the exchange's REST host does not (as with no network or DNS).
    dead = _dead_port()
    urls = {"spot_rest": f"http://127.0.0.1:{dead}/api", "spot_stream": f"ws://127.0.0.1:{dead}/",
            "spot_ws_api": f"ws://127.0.0.1:{dead}/ws-api/v3", "futures_rest": f"http://127.0.0.1:{dead}/fapi",
            "futures_stream": f"ws://127.0.0.1:{dead}/", "api_key": "k" * 64, "api_secret": "s" * 64}

    async def answer(_: web.Request) -> web.Response:
        return web.json_response(urls)

    app = web.Application()
    app.router.add_get("/sim/urls", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        code, _, err = await run_py(tmp_path, "--config", str(config(tmp_path)), "--exchange",
                                    f"http://127.0.0.1:{port}", "--duration", "5")
    finally:
        await runner.cleanup()
    assert code == EXIT_VENUE, err[-2000:]
    one_failure_line(err, "venue unreachable", f"127.0.0.1:{dead}")
    assert "s" * 64 not in err


async def test_live_is_confirmed_before_the_venue_or_the_ledger(tmp_path: Path) -> None:
    # No keys are set: were they read (or the venue contacted) first, this would fail otherwise.
    env = {k: "" for k in os.environ if k.startswith("BX_LIVE_")}
    code, _, err = await run_py(tmp_path, "--config", str(config(tmp_path)), "--profile", "live",
                                "--duration", "5", env=env)
    assert code == EXIT_PREFLIGHT, err
    one_failure_line(err, "live run not confirmed")
    assert not list((tmp_path / "data").rglob("*.db"))


@pytest.mark.parametrize("args, needle", [
    (("--duration", "-5"), "--duration"), (("--duration", "0"), "--duration"),
    (("--duration", "nan"), "--duration"), (("--duration", "soon"), "--duration"),
])
async def test_bad_arguments_are_one_usage_line(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    code, _, err = await run_py(tmp_path, "--config", str(config(tmp_path)), *args)
    assert code == EXIT_CONFIG
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert not list((tmp_path / "data").rglob("*.db"))


@pytest.mark.parametrize("text, key", [
    ('[risk]\nmax_order_notional = "-5"\n', "risk.max_order_notional"),
    ('[risk]\nmax_order_notional = "5_00"\n', "risk.max_order_notional"),
    ('[risk]\nstale_after_s = "0"\n', "risk.stale_after_s"),
    ('[risk.max_position]\nBTC = "-1"\n', "risk.max_position.BTC"),
    ('[strategy.params]\norder_quote = "5_0"\n', "order_quote"),
])
async def test_bad_values_are_refused_at_start(tmp_path: Path, text: str, key: str) -> None:
    cfg = config(tmp_path, text)
    code, _, err = await run_py(tmp_path, "--config", str(cfg), "--duration", "5")
    assert code == EXIT_CONFIG
    one_failure_line(err, "config error", key)
    assert not list((tmp_path / "data").rglob("*.db"))  # refused before anything was opened


async def test_db_takes_a_plain_path(tmp_path: Path) -> None:
    cfg = str(config(tmp_path))
    code, out, err = await run_py(tmp_path, "--config", cfg, "db", "checkpoint", "--all", "--db", "x/l.db")
    assert code == 2 and "Traceback" not in err  # no such ledger yet: one line
    (tmp_path / "x").mkdir()
    assert (await run_py(tmp_path, "--config", str(config(tmp_path, '[database]\nurl = "../x/l.db"\n')),
                         "db", "upgrade"))[0] == 0
    assert (tmp_path / "x" / "l.db").is_file()  # relative to the data folder
    code, out, err = await run_py(tmp_path, "--config", cfg, "audit", "--db", "x/l.db")
    assert code == 0, err
    assert "l.db" in out
    code, out, err = await run_py(tmp_path, "--config", cfg, "db", "checkpoint", "--all", "--db", "x/l.db")
    assert code == 0, err
