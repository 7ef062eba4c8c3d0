"""Failures as one line a user can act on, and the process exit codes (README: "Exit codes").

Every way ``python run.py`` can fail to start (bad config, the venue out of reach, a ledger
that is corrupt, read-only or from a newer version, a refused live run) ends with one
line naming what failed and what to do, and an exit code a script can branch on; the
traceback is only logged at ``--log-level DEBUG``. ``classify`` maps an exception to that
line and code; it knows the exception types of the layers below (config, preflight, REST
gateway, SQLite/SQLAlchemy, Alembic) but imports them lazily so ``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from dataclasses import dataclass

__all__ = ["EXIT_CONFIG", "EXIT_DATABASE", "EXIT_ERROR", "EXIT_FORCED", "EXIT_OK", "EXIT_PREFLIGHT",
           "EXIT_UNCLEAN", "EXIT_VENUE", "Failure", "VenueUnreachable", "classify", "exit_code_for_ending"]

EXIT_OK = 0          # the run ended clean (or the command did what it was asked)
EXIT_ERROR = 1       # the bot stopped on an unexpected error (the run row says "error")
EXIT_CONFIG = 2      # usage or configuration: a bad option, key or value; the ledger belongs elsewhere
EXIT_PREFLIGHT = 3   # live run not confirmed, or a preflight check failed
EXIT_VENUE = 4       # the exchange could not be reached (network, DNS, refused, timed out)
EXIT_DATABASE = 5    # the ledger cannot be used: corrupt, read-only, newer schema, cannot be opened
EXIT_UNCLEAN = 6     # the run stopped but a shutdown step failed (the run row says "unclean")
EXIT_FORCED = 130    # a second Ctrl-C forced the exit (the run row says "forced")

_ENDINGS = {"clean": EXIT_OK, "unclean": EXIT_UNCLEAN, "forced": EXIT_FORCED, "error": EXIT_ERROR}


def exit_code_for_ending(ended: str) -> int:
    """The exit code of a run that ended as ``ended`` (the run row's value)."""
    return _ENDINGS.get(ended, EXIT_ERROR)


class VenueUnreachable(Exception):
    """The exchange did not answer at all (the message names the URL and why)."""


@dataclass(frozen=True)
class Failure:
    code: int
    line: str


def _one_line(text: str, limit: int = 400) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _sqlite_error(exc: BaseException) -> sqlite3.Error | None:
    """The sqlite3 error behind ``exc`` (SQLAlchemy wraps it as ``.orig``), if any."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, sqlite3.Error):
            return cur
        orig = getattr(cur, "orig", None)
        if isinstance(orig, sqlite3.Error):
            return orig
        cur = cur.__cause__ or cur.__context__
    return None


def database_line(err: BaseException, where: str) -> str:
    """What is wrong with the ledger at ``where``, in words, from a sqlite3 error."""
    text = str(err).lower()
    if "not a database" in text or "malformed" in text or "disk image" in text:
        what = "is not a usable SQLite database (corrupt, or another kind of file); move it aside " \
               "or choose another file with --db / [database] url"
    elif "readonly" in text or "read-only" in text:
        what = "is read-only (the file or its folder cannot be written by this user); the bot " \
               "needs to write its ledger; `run.py audit` can still read it"
    elif "unable to open" in text:
        what = "cannot be opened (does the folder exist, and may this user write there?)"
    elif "locked" in text or "busy" in text:
        what = "is locked by another process (another bot or a long write); try again when it is done"
    elif "disk is full" in text or "database or disk is full" in text:
        what = "cannot be written: the disk is full"
    else:
        what = f"failed: {_one_line(str(err), 200)}"
    return f"database error: {where} {what}"


def _is_network(exc: BaseException) -> bool:
    import aiohttp

    if isinstance(exc, aiohttp.ClientError | TimeoutError | ConnectionError):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH,
                                                      errno.ENETUNREACH, errno.ETIMEDOUT)


def classify(exc: BaseException, *, database: str | None = None, venue: str | None = None) -> Failure:
    """The one line and the exit code for ``exc``; ``database`` and ``venue`` name what the
    run was using, for the message."""
    from executor.config import ConfigError

    if isinstance(exc, ConfigError):
        return Failure(EXIT_CONFIG, f"config error: {_one_line(str(exc))}")
    from executor.venue.preflight import LiveRefused

    if isinstance(exc, LiveRefused):
        return Failure(EXIT_PREFLIGHT, str(exc).strip())
    db_failure = _database_failure(exc, database)
    if db_failure is not None:
        return db_failure
    from executor.exchange.outcome import RateLimited, Rejected
    from executor.exchange.rest import GatewayError

    where = f" {venue}" if venue else ""
    if isinstance(exc, VenueUnreachable):
        return Failure(EXIT_VENUE, f"venue unreachable: {_one_line(str(exc))}")
    if isinstance(exc, GatewayError):
        if isinstance(exc.outcome, Rejected):
            return Failure(EXIT_PREFLIGHT, f"the venue{where} refused {exc.endpoint}: "
                           f"{exc.outcome.code} {_one_line(exc.outcome.msg, 200)} "
                           "(check the API key: `python run.py preflight`)")
        if isinstance(exc.outcome, RateLimited):
            return Failure(EXIT_VENUE, f"the venue{where} is rate limiting this IP: "
                           f"{_one_line(str(exc.outcome), 200)}; try again later")
        return Failure(EXIT_VENUE, f"venue unreachable{where}: {_one_line(_reason(exc), 300)} "
                       "(network, DNS or the exchange down?)")
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return Failure(EXIT_CONFIG, f"config error: a port is already in use ({_one_line(str(exc), 200)}); "
                       "choose other [sim.ports] or 0 for free ones")
    if isinstance(exc, OSError) and exc.filename and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS,
                                                                   errno.ENOENT, errno.ENOTDIR):
        return Failure(EXIT_CONFIG, f"config error: cannot use {exc.filename}: {exc.strerror} "
                       "(check --data-dir / data_dir and the paths in the config)")
    if _is_network(exc):
        return Failure(EXIT_VENUE, f"venue unreachable{where}: {type(exc).__name__}: "
                       f"{_one_line(str(exc), 300)} (network, DNS or the exchange down?)")
    return Failure(EXIT_ERROR, f"error: {type(exc).__name__}: {_one_line(str(exc))}")


def _reason(exc: BaseException) -> str:
    outcome = getattr(exc, "outcome", None)
    reason = getattr(outcome, "reason", None)
    return f"{getattr(exc, 'endpoint', '')}: {reason}" if reason else str(exc)


def _database_failure(exc: BaseException, database: str | None) -> Failure | None:
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from executor.persistence.db import DatabaseUrlError, database_path
    from executor.persistence.migrate import SchemaError

    where = str(database or "the ledger")
    if database:
        with contextlib.suppress(ValueError, ArgumentError):
            where = str(database_path(database))
    if isinstance(exc, SchemaError):
        return Failure(EXIT_DATABASE, f"database error: {_one_line(str(exc))}")
    if isinstance(exc, DatabaseUrlError):
        return Failure(EXIT_CONFIG, f"config error: {_one_line(str(exc))}")
    if isinstance(exc, ArgumentError):
        return Failure(EXIT_CONFIG, f"config error: database url {database!r}: {_one_line(str(exc), 200)}")
    err = _sqlite_error(exc)
    if err is not None:
        return Failure(EXIT_DATABASE, database_line(err, where))
    if isinstance(exc, SQLAlchemyError):
        return Failure(EXIT_DATABASE, f"database error: {where}: {_one_line(str(exc), 300)}")
    return None
