"""One owner per ledger: the lease in ``ledger_leases`` that a trading bot holds while it runs.

A bot takes the lease before it writes anything else to the ledger (before its run row)
and gives it back at a clean shutdown. The row names its holder: run id, pid, host, a random
token, when it was taken and its last heartbeat. Rules:

* taking it is one write transaction (``BEGIN IMMEDIATE``): of two bots racing for one
  ledger exactly one wins, the other sees the winner's row;
* a lease whose holder is alive is refused (``LeaseHeld``, one line naming the holder,
  exit code 2); a holder is gone when its pid is dead on this host, or when it has not
  beaten for ``ttl`` (several heartbeat intervals; the only test possible across hosts).
  A gone holder's lease is taken over in the same transaction and its run, if still open,
  marked ``abandoned`` with the reason;
* the heartbeat runs on a thread of its own with its own connections, so it keeps beating
  while the event loop is busy trading (a long reconciliation cannot make the ledger look
  ownerless). A beat that finds another token in the row, or none, means another process
  took the ledger: ``on_lost`` is called once and the bot stops trading. So is a heartbeat
  that could not be written for a whole ``ttl`` (another bot may rightly take over then).

Read-only users of the ledger (``audit``, ``audit verify``) never take the lease.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from executor.persistence.db import create_sync_engine, database_path, describe_url, is_sqlite
from executor.persistence.models import LedgerLease as _LeaseModel
from executor.persistence.models import Run as _RunModel
from executor.persistence.sql import row_mapping
from executor.persistence.types import now_ms

__all__ = ["EXIT_LEDGER_REFUSED", "HEARTBEAT_S", "TTL_S", "Holder", "LeaseHeld", "LedgerLease", "holder_gone"]

log = logging.getLogger(__name__)

leases_t = _LeaseModel.__table__
runs_t = _RunModel.__table__

EXIT_LEDGER_REFUSED = 2  # another bot holds the ledger, or the ledger belongs to another venue
HEARTBEAT_S = 2.0
TTL_S = 15.0  # 7.5 heartbeats: a holder this long silent is gone even if its host cannot be asked
BOT = "executor"  # one lease per ledger; the column allows named bots later


@dataclass(frozen=True)
class Holder:
    """The row of ``ledger_leases``: who holds the ledger."""

    run_id: int | None
    pid: int
    host: str
    token: str
    acquired_ms: int
    heartbeat_ms: int
    ttl_ms: int

    def describe(self, now: int) -> str:
        age = max(0, now - self.heartbeat_ms) / 1000
        run = f"run {self.run_id}" if self.run_id is not None else "a bot starting"
        return f"{run} (pid {self.pid} on {self.host}, last heartbeat {age:.1f} s ago)"


class LeaseHeld(Exception):
    """Another live bot holds this ledger; ``str()`` is the one line to print."""

    def __init__(self, path: str, holder: Holder, now: int) -> None:
        self.holder = holder
        super().__init__(f"ledger {path} is in use by {holder.describe(now)}; stop that bot first, "
                         "or give this one another [database] url")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True  # cannot tell: rely on the heartbeat age
    return True


def holder_gone(h: Holder, now: int, host: str, pid_alive: Callable[[int], bool] = _pid_alive) -> str | None:
    """Why ``h`` no longer holds the ledger, or None while it may still be running."""
    silent = now - h.heartbeat_ms
    if silent > h.ttl_ms:
        return f"no heartbeat for {silent / 1000:.1f} s (limit {h.ttl_ms / 1000:.0f} s)"
    if h.host == host and not pid_alive(h.pid):
        return f"pid {h.pid} is not running on {host}"
    return None


def _row(r: sa.Row[object] | None) -> Holder | None:
    if r is None:
        return None
    m = row_mapping(r)
    return Holder(m["run_id"], m["pid"], m["host"], m["token"], m["acquired_ms"], m["heartbeat_ms"],
                  m["ttl_ms"])


class LedgerLease:
    """This process's claim on one ledger file. ``acquire()`` (blocking: run it in a thread),
    ``set_run(id)``, ``start_heartbeat(on_lost)``, and ``release()`` at a clean stop."""

    def __init__(self, url: str, *, synchronous: str | None = None, heartbeat_s: float = HEARTBEAT_S,
                 ttl_s: float = TTL_S, host: str | None = None, pid: int | None = None,
                 clock: Callable[[], int] = now_ms) -> None:
        self.path = str(database_path(url)) if is_sqlite(url) else describe_url(url)
        self.engine = create_sync_engine(url, synchronous=synchronous)
        self.heartbeat_s = heartbeat_s
        self.ttl_ms = int(ttl_s * 1000)
        self.host = host or socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self.token = secrets.token_hex(16)
        self.clock = clock
        self.held = False
        self.taken_over: tuple[Holder, str] | None = None  # (previous holder, why it was gone)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _where(self) -> sa.ColumnElement[bool]:
        return sa.and_(leases_t.c.bot == BOT, leases_t.c.token == self.token)

    # -- taking and giving back

    def acquire(self) -> Holder | None:
        """Take the lease or raise ``LeaseHeld``; returns the gone holder it replaced, if any."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_write=True)
            with conn.begin():
                return self._acquire(conn)

    def _acquire(self, conn: Connection) -> Holder | None:
        if conn.dialect.name == "postgresql":
            # SQLite's BEGIN IMMEDIATE already serialises this read-then-write; PostgreSQL
            # needs the table locked against a second acquirer for the transaction.
            conn.execute(sa.text("LOCK TABLE ledger_leases IN SHARE ROW EXCLUSIVE MODE"))
        now = self.clock()
        current = _row(conn.execute(sa.select(leases_t).where(leases_t.c.bot == BOT)).first())
        why: str | None = None
        if current is not None:
            why = holder_gone(current, now, self.host)
            if why is None:
                raise LeaseHeld(self.path, current, now)
            conn.execute(sa.delete(leases_t).where(leases_t.c.bot == BOT))
            if current.run_id is not None:
                conn.execute(sa.update(runs_t)
                             .where(runs_t.c.id == current.run_id, runs_t.c.ended.is_(None))
                             .values(ended="abandoned", stopped_ms=current.heartbeat_ms,
                                     end_reason=f"lease taken over at start of a new run: {why}"[:500]))
        conn.execute(sa.insert(leases_t).values(bot=BOT, run_id=None, pid=self.pid, host=self.host,
                                                token=self.token, acquired_ms=now, heartbeat_ms=now,
                                                ttl_ms=self.ttl_ms))
        self.held = True
        if current is not None and why is not None:
            self.taken_over = (current, why)
            log.warning("ledger %s: took over the lease of %s: %s", self.path, current.describe(now), why)
        return current

    def set_run(self, run_id: int) -> None:
        """Name our run in the lease (the run row is written after the lease is taken)."""
        with self.engine.connect() as conn, conn.execution_options(sqlite_write=True).begin():
            conn.execute(sa.update(leases_t).where(self._where()).values(run_id=run_id))

    def release(self) -> bool:
        """Give the lease back (only ours: a row with another token is left alone)."""
        self.stop_heartbeat()
        if not self.held:
            return False
        self.held = False
        try:
            with self.engine.connect() as conn, conn.execution_options(sqlite_write=True).begin():
                gone = conn.execute(sa.delete(leases_t).where(self._where())).rowcount
        finally:
            self.engine.dispose()
        return bool(gone)

    def holder(self) -> Holder | None:
        with self.engine.connect() as conn:
            return _row(conn.execute(sa.select(leases_t).where(leases_t.c.bot == BOT)).first())

    # -- heartbeat

    def beat(self) -> bool:
        """One heartbeat; False when the row is no longer ours."""
        with self.engine.connect() as conn, conn.execution_options(sqlite_write=True).begin():
            return conn.execute(sa.update(leases_t).where(self._where())
                                .values(heartbeat_ms=self.clock())).rowcount == 1

    def start_heartbeat(self, on_lost: Callable[[str], None]) -> None:
        """Beat every ``heartbeat_s`` on a daemon thread until ``release``/``stop_heartbeat``.
        ``on_lost(message)`` is called (from that thread) once if the lease is lost."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(on_lost,), name="ledger-lease", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self, on_lost: Callable[[str], None]) -> None:
        last_ok = self.clock()
        while not self._stop.wait(self.heartbeat_s):
            try:
                if self.beat():
                    last_ok = self.clock()
                    continue
                now = self.clock()
                other = self.holder()
                who = other.describe(now) if other is not None else "nobody (the row was removed)"
                message = f"ledger {self.path}: lease lost, it is now held by {who}"
            except (SQLAlchemyError, OSError) as exc:  # retry until the TTL runs out
                silent = self.clock() - last_ok
                log.warning("ledger %s: lease heartbeat failed (%s: %s); %.1f s without a heartbeat",
                            self.path, type(exc).__name__, exc, silent / 1000)
                if silent <= self.ttl_ms:
                    continue
                message = (f"ledger {self.path}: lease heartbeat failing for {silent / 1000:.1f} s; "
                           "another bot may take the ledger over")
            self.held = False
            self._stop.set()
            on_lost(message)
            return
