"""Log files rotate (by size or at UTC midnight) and the folder keeps ``logging.keep_files``."""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path

import pytest

from executor.config import ConfigError, load_config
from executor.run.logs import DailyRotatingFile, SizeRotatingFile, setup_logging

log = logging.getLogger("executor.test.rotation")


@pytest.fixture
def setups():
    root = logging.getLogger()
    level = root.level
    made = []

    def make(tmp: Path, **logging_over: object):
        cfg = load_config(local=None, overrides={"logging": logging_over})
        setup = setup_logging(cfg, log_dir=tmp / "logs", stream=io.StringIO())
        made.append(setup)
        return setup

    yield make
    for s in made:
        s.close()
    root.setLevel(level)


def log_files(tmp: Path) -> list[Path]:
    return sorted((tmp / "logs").glob("run-*.log*"))


def test_size_rotation_keeps_at_most_keep_files(setups, tmp_path: Path) -> None:
    setup = setups(tmp_path, rotate="size", max_bytes=2000, keep_files=3)
    assert any(isinstance(h, SizeRotatingFile) for h in setup.handlers)
    for i in range(300):
        log.info("line %04d %s", i, "x" * 60)
    files = log_files(tmp_path)
    assert len(files) == 3  # the current file and two rotated ones; older rotations deleted
    assert all(p.stat().st_size <= 2000 for p in files)
    current = setup.path.read_text()
    assert "line 0299" in current and "line 0000" not in "".join(p.read_text() for p in files)


def test_daily_rotation_at_midnight_and_run_id_rename(setups, tmp_path: Path) -> None:
    setup = setups(tmp_path, rotate="daily", keep_files=5)
    (handler,) = [h for h in setup.handlers if isinstance(h, DailyRotatingFile)]
    log.info("before midnight")
    path = setup.attach_run_id(7)
    handler.rolloverAt = int(time.time()) - 1  # midnight has passed
    log.info("after midnight")
    rotated = [p for p in log_files(tmp_path) if p != path]
    assert len(rotated) == 1 and rotated[0].name.startswith(path.name + ".")
    assert "before midnight" in rotated[0].read_text()
    assert "after midnight" in path.read_text() and "before midnight" not in path.read_text()


def test_old_runs_log_files_are_deleted_beyond_keep_files(setups, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    old = []
    for i in range(10):
        p = logs / f"run-2026010{i}T000000.000Z-run{i}.log"
        p.write_text(f"old run {i}\n")
        os.utime(p, (1_700_000_000 + i, 1_700_000_000 + i))
        old.append(p)
    (logs / "notes.txt").write_text("not a log file")
    setup = setups(tmp_path, keep_files=4)
    log.info("new run")
    files = log_files(tmp_path)
    assert len(files) == 4 and setup.path in files
    assert [p for p in old if p.exists()] == old[-3:]  # the newest three old runs stay
    assert (logs / "notes.txt").exists()


def test_rotation_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"logging\.rotate"):
        load_config(local=None, overrides={"logging": {"rotate": "weekly"}})
    with pytest.raises(ConfigError, match=r"logging\.keep_files"):
        load_config(local=None, overrides={"logging": {"keep_files": 0}})
