"""Process health: loop lag, thresholds, the periodic log line, and the line in the status."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest

from executor.config import HealthConfig
from executor.run.app import Bot, BotOptions
from executor.run.health import HealthMonitor, LoopLag, over_thresholds, percentile, sample
from executor.run.shutdown import Shutdown
from executor.status import render
from executor.venue.profiles import Venue
from tests.app.test_bot import config
from tests.app.test_status import sources
from tests.conftest import SimHandle


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 99) == 99.0 and percentile(values, 50) == 50.0
    assert percentile([], 99) == 0.0 and percentile([3.0], 99) == 3.0


def test_loop_lag_keeps_only_the_last_window() -> None:
    now = [0.0]
    lag = LoopLag(interval_s=0.1, window_s=60.0, clock=lambda: now[0])
    lag.record(0.5)  # a 500 ms stall
    for i in range(1, 600):
        now[0] = i * 0.1
        lag.record(0.001)
    assert lag.max_ms() == pytest.approx(500.0)
    now[0] = 61.0
    lag.record(0.001)
    assert lag.max_ms() == pytest.approx(1.0) and len(lag) <= 600 + 16


async def test_loop_lag_sees_a_blocked_loop() -> None:
    lag = LoopLag(interval_s=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(lag.run(stop))
    await asyncio.sleep(0.05)
    time.sleep(0.25)  # the stimulus: something hogs the loop for 250 ms
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert lag.max_ms() >= 200.0 and lag.p99_ms() >= 200.0


async def test_snapshot_counts_tasks_fds_and_memory() -> None:
    snap = sample()
    assert snap.rss_bytes > 10 * 2**20 and snap.open_fds >= 3 and snap.tasks >= 1
    text = snap.text()
    assert text.startswith("health rss ") and " fds " in text and " tasks " in text and "p99" in text


async def test_monitor_logs_the_line_and_warns_over_thresholds(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="executor.run.health")
    quiet = HealthMonitor(HealthConfig(warn_rss_mb=0, warn_fds=0, warn_tasks=0, warn_loop_lag_ms=0))
    quiet.check()
    assert [r.levelname for r in caplog.records] == ["INFO"] and quiet.warnings == 0
    caplog.clear()
    noisy = HealthMonitor(HealthConfig(log_every_s=1, warn_rss_mb=1, warn_fds=1, warn_tasks=0,
                                       warn_loop_lag_ms=0))
    snap = noisy.check()
    assert over_thresholds(snap, noisy.cfg)[0].startswith("rss ")
    warning = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warning) == 1 and "rss" in warning[0] and "fds" in warning[0] and "tasks" not in warning[0]


def test_status_shows_the_health_line() -> None:
    src = sources()
    src.health = HealthMonitor().text
    lines = render(src)
    # The status is labelled rows now (label column 10 wide): "health    rss ...".
    assert re.match(r"health +rss ", lines[-1]) and "loop lag p99" in lines[-1]


async def test_running_bot_prints_and_logs_health(sim: SimHandle, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="executor.run.health")
    cfg = config(tmp_path)
    cfg = replace(cfg, health=replace(cfg.health, log_every_s=1))
    out = io.StringIO()
    bot = Bot(cfg, Venue("sim", sim.endpoints, sim.endpoints), sim.creds,
              BotOptions(status_out=out, status_tty=False, status_interval_s=0.2, scheduler=False))
    await asyncio.wait_for(bot.start(), 20)
    try:
        async def logged() -> None:
            while not any(r.getMessage().startswith("health rss") for r in caplog.records) or \
                    not re.search(r"^status health +rss ", out.getvalue(), re.M):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(logged(), 10)
    finally:
        await bot.stop(Shutdown(), reason="test over")
    line = next(x for x in out.getvalue().splitlines() if re.match(r"status health +rss ", x))
    assert " fds " in line and " tasks " in line and "loop lag p99" in line
