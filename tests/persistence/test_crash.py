"""A writer killed with SIGKILL mid-stream loses no committed batch and leaves no half batch."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from executor.config import ROOT

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from executor.persistence.store import Store

    async def main(url):
        store = await Store.open(url)
        batch_no = 0
        while True:
            async with store.batch() as b:
                for i in range(100):
                    b.add_fill("BTCUSDT", batch_no * 100 + i, "60000.01", "0.001", "stream")
            print(f"committed {batch_no}", flush=True)
            batch_no += 1

    asyncio.run(main(sys.argv[1]))
    """
)


def test_sigkill_mid_stream_keeps_every_committed_batch_whole(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, f"sqlite+aiosqlite:///{db}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        last = -1
        assert proc.stdout is not None
        # readline blocks until the child reports; a dead child gives "" and fails the test.
        while last < 20:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "writer died"
            last = int(line.split()[1])
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        count, top = conn.execute("SELECT count(*), max(trade_id) FROM fills").fetchone()
        prices = {r[0] for r in conn.execute("SELECT DISTINCT price FROM fills")}
    assert count % 100 == 0, "a batch was half written"
    assert count >= (last + 1) * 100, "a batch reported as committed was lost"
    assert top == count - 1
    assert prices == {"60000.01"}
