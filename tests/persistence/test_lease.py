"""The ledger lease (``executor.persistence.lease``): one owner, atomic acquisition, takeover
of a gone holder (dead pid on this host, or silent past the TTL), heartbeat, loss, release."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from executor.persistence.lease import Holder, LeaseHeld, LedgerLease, holder_gone
from executor.persistence.migrate import ensure_schema


@pytest.fixture
def url(tmp_path: Path) -> str:
    u = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    asyncio.run(ensure_schema(u))
    return u


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def lease_rows(url: str) -> list[tuple[object, ...]]:
    path = url.split("///", 1)[1]
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT run_id, pid, host, token FROM ledger_leases").fetchall()


def add_run(url: str, ended: str | None = None) -> int:
    with sqlite3.connect(url.split("///", 1)[1]) as conn:
        cur = conn.execute("INSERT INTO runs (version, profile, config_hash, started_ms, ended) "
                           "VALUES ('t', 'sim', 'h', 1, ?)", (ended,))
        return int(cur.lastrowid or 0)


def test_a_live_holder_refuses_a_second_one_naming_it(url: str) -> None:
    first = LedgerLease(url)
    assert first.acquire() is None
    first.set_run(add_run(url))
    second = LedgerLease(url)
    with pytest.raises(LeaseHeld) as err:
        second.acquire()
    text = str(err.value)
    assert "\n" not in text
    assert f"run 1 (pid {first.pid} on {first.host}, last heartbeat" in text
    assert lease_rows(url) == [(1, first.pid, first.host, first.token)]
    assert first.release() and lease_rows(url) == []
    assert second.acquire() is None  # free again after a release
    second.release()


def test_racing_acquirers_exactly_one_wins(url: str) -> None:
    leases = [LedgerLease(url) for _ in range(6)]
    barrier = threading.Barrier(len(leases))
    results: list[str] = []

    def go(lease: LedgerLease) -> None:
        barrier.wait()
        try:
            lease.acquire()
            results.append("won")
        except LeaseHeld:
            results.append("refused")

    threads = [threading.Thread(target=go, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["refused"] * 5 + ["won"]
    (winner,) = [lease for lease in leases if lease.held]
    assert lease_rows(url)[0][3] == winner.token
    winner.release()


def test_a_dead_pid_on_this_host_is_taken_over_and_its_run_abandoned(url: str) -> None:
    run = add_run(url)
    gone = LedgerLease(url, pid=dead_pid())
    gone.acquire()
    gone.set_run(run)
    new = LedgerLease(url)
    previous = new.acquire()
    assert previous is not None and previous.pid == gone.pid
    assert new.taken_over is not None and "is not running" in new.taken_over[1]
    with sqlite3.connect(url.split("///", 1)[1]) as conn:
        ended, reason = conn.execute("SELECT ended, end_reason FROM runs WHERE id = ?", (run,)).fetchone()
    assert ended == "abandoned" and f"pid {gone.pid} is not running" in reason
    assert lease_rows(url) == [(None, new.pid, new.host, new.token)]
    new.release()


def test_other_host_holder_is_judged_by_its_heartbeat(url: str) -> None:
    now = [1_000_000]
    remote = LedgerLease(url, host="elsewhere", pid=1, ttl_s=15, clock=lambda: now[0])
    remote.acquire()
    now[0] += 14_000  # silent, but within the TTL: it may be alive
    with pytest.raises(LeaseHeld, match=r"on elsewhere, last heartbeat 14\.0 s ago"):
        LedgerLease(url, clock=lambda: now[0]).acquire()
    now[0] += 2_000  # past the TTL
    taker = LedgerLease(url, clock=lambda: now[0])
    assert taker.acquire() is not None
    assert taker.taken_over is not None and "no heartbeat for 16.0 s" in taker.taken_over[1]
    taker.release()


def test_holder_gone_rules() -> None:
    h = Holder(run_id=3, pid=42, host="me", token="t", acquired_ms=0, heartbeat_ms=10_000, ttl_ms=5_000)
    assert holder_gone(h, 12_000, "me", lambda pid: True) is None
    assert holder_gone(h, 12_000, "me", lambda pid: False) == "pid 42 is not running on me"
    assert holder_gone(h, 12_000, "other", lambda pid: False) is None  # cannot ask another host
    assert "no heartbeat for 6.0 s" in (holder_gone(h, 16_000, "other", lambda pid: True) or "")


def test_heartbeat_beats_and_reports_a_lost_lease_once(url: str) -> None:
    lease = LedgerLease(url, heartbeat_s=0.05)
    lease.acquire()
    lost: list[str] = []
    got = threading.Event()

    def on_lost(message: str) -> None:
        lost.append(message)
        got.set()

    before = lease.holder()
    assert before is not None
    lease.start_heartbeat(on_lost)
    for _ in range(200):
        now = lease.holder()
        if now is not None and now.heartbeat_ms > before.heartbeat_ms:
            break
        threading.Event().wait(0.02)
    else:
        raise AssertionError("no heartbeat written")
    # Another process takes the ledger (as a takeover would): our next beat notices.
    with sqlite3.connect(url.split("///", 1)[1]) as conn:
        conn.execute("UPDATE ledger_leases SET token = 'theirs', pid = 4242, host = 'otherbox'")
    assert got.wait(5), "the lost lease was not reported"
    threading.Event().wait(0.2)
    assert len(lost) == 1 and "lease lost, it is now held by" in lost[0] and "pid 4242 on otherbox" in lost[0]
    assert not lease.held
    assert not lease.release()  # not ours: left alone
    assert lease_rows(url)[0][3] == "theirs"


def test_heartbeat_keeps_beating_while_the_event_loop_is_blocked(url: str) -> None:
    lease = LedgerLease(url, heartbeat_s=0.05)
    lease.acquire()
    start = lease.holder()
    assert start is not None

    async def busy() -> None:
        lease.start_heartbeat(lambda m: None)
        import time

        time.sleep(0.5)  # the loop is blocked (a long synchronous step), the thread is not

    asyncio.run(busy())
    after = lease.holder()
    assert after is not None and after.heartbeat_ms - start.heartbeat_ms >= 200
    lease.release()
