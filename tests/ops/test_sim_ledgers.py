"""``data/sim/`` keeps the last ``sim.keep_ledgers`` per-run ledgers, and the run says so."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from executor.config import load_config
from executor.persistence.retention import prune_sim_ledgers, sim_ledgers
from executor.run.app import run_bot


def make_ledgers(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"executor-202601{i + 1:02d}T000000.000Z.db"
        p.write_bytes(b"ledger")
        Path(f"{p}-wal").write_bytes(b"wal")
        Path(f"{p}-shm").write_bytes(b"shm")
        out.append(p)
    return out


def test_prune_keeps_the_newest_and_their_companions(tmp_path: Path) -> None:
    folder = tmp_path / "sim"
    old = make_ledgers(folder, 6)
    (folder / "other-20260101T000000.000Z.db").write_bytes(b"not ours")  # another ledger's runs
    current = folder / "executor-20260201T000000.000Z.db"  # not created yet
    removed = prune_sim_ledgers(current, keep=3)
    assert removed == old[:4]
    assert sim_ledgers(folder, "executor", ".db") == old[4:]  # + the current run's = 3
    assert not Path(f"{old[0]}-wal").exists() and not Path(f"{old[0]}-shm").exists()
    assert Path(f"{old[5]}-wal").exists()
    assert (folder / "other-20260101T000000.000Z.db").exists()
    assert prune_sim_ledgers(current, keep=3) == []


async def test_a_paper_run_prunes_old_ledgers_and_says_so(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    old = make_ledgers(tmp_path / "sim", 5)
    cfg = load_config(local=None, overrides={
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'executor.db'}"},
        "logging": {"dir": str(tmp_path / "logs")},
        "risk": {"kill_switch_file": str(tmp_path / "KILL")},
        "sim": {"keep_ledgers": 2}})
    caplog.set_level(logging.INFO, logger="executor.run.app")
    code = await run_bot(cfg, argparse.Namespace(duration=0.5), install_signals=False)
    assert code == 0
    left = sim_ledgers(tmp_path / "sim", "executor", ".db")
    assert len(left) == 2 and left[0] == old[-1]  # the newest old one and this run's
    said = [r.getMessage() for r in caplog.records if "keep_ledgers" in r.getMessage()]
    assert said and "keeping the last 2 per-run ledgers" in said[0] and "deleted 4 older" in said[0]
