"""Ledger URLs: which backend a URL names, the file behind a SQLite URL, how to name a ledger
to a human, and a ``--db`` / ``[database] url`` value as a URL.

No SQLAlchemy at import. SQLAlchemy parses the URLs (``make_url``), but importing it costs
~0.1 s, and a read-only ``run.py audit --db FILE`` on SQLite never needs it otherwise (it reads
with plain ``sqlite3``). So the one form that command and the config's own default produce,
``sqlite+aiosqlite:///PATH`` with no query and no ``%`` escape, is recognised here directly
(``_plain_sqlite``: for that form ``make_url`` yields exactly backend ``sqlite``, driver
``aiosqlite``, database ``PATH``, no query, which ``tests/persistence/test_urls.py`` checks
against ``make_url``); every other URL goes to ``make_url`` as before. Only the parsing is
skipped: the checks below are the same for both. ``executor.persistence.db`` re-exports these
names, so older imports keep working.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from executor.paths import ROOT

if TYPE_CHECKING:
    from sqlalchemy.engine.url import URL

__all__ = ["BACKENDS", "DatabaseUrlError", "backend", "database_path", "database_url", "describe_url",
           "is_sqlite"]

BACKENDS = ("sqlite+aiosqlite", "postgresql+asyncpg")
_PLAIN_SQLITE = "sqlite+aiosqlite:///"


class DatabaseUrlError(ValueError):
    """The database URL cannot be used (wrong driver, in-memory, unreadable)."""


def _plain_sqlite(url: str | URL) -> str | None:
    """The database part of ``sqlite+aiosqlite:///PATH`` when ``make_url`` would take it as it
    stands (no ``?query``, no ``%`` to unquote); None: let SQLAlchemy parse it."""
    if isinstance(url, str) and url.startswith(_PLAIN_SQLITE) and "?" not in url and "%" not in url:
        return url[len(_PLAIN_SQLITE):]
    return None


def _make_url(url: str | URL) -> URL:
    from sqlalchemy.engine import make_url

    return make_url(url) if isinstance(url, str) else url


def backend(url: str | URL) -> str:
    """``"sqlite"`` or ``"postgresql"`` for a usable ledger URL; anything else is refused."""
    if _plain_sqlite(url) is not None:
        return "sqlite"
    from sqlalchemy.exc import ArgumentError

    try:
        u = _make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise DatabaseUrlError(f"not a database url: {exc}") from None
    name = f"{u.get_backend_name()}+{u.get_driver_name()}"
    if name not in BACKENDS:
        raise DatabaseUrlError(
            "database url must be sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB, got "
            f"{u.render_as_string(hide_password=True)!r}"
        )
    return u.get_backend_name()


def is_sqlite(url: str | URL) -> bool:
    return backend(url) == "sqlite"


def describe_url(url: str | URL, base: Path = ROOT) -> str:
    """How to name a ledger to a human: the file for SQLite, the URL without its password
    for PostgreSQL (a password never reaches a message or a log)."""
    if is_sqlite(url):
        return str(database_path(url, base))
    return _make_url(url).render_as_string(hide_password=True)


def database_path(url: str | URL, base: Path = ROOT) -> Path:
    """The file behind a ``sqlite+aiosqlite`` URL; a relative path is taken from ``base``
    (the project root), so the bot finds the same file whatever the working directory."""
    db = _plain_sqlite(url)
    mode = None
    if db is None:
        u = _make_url(url)
        if u.get_backend_name() != "sqlite" or u.get_driver_name() != "aiosqlite":
            shown = u.render_as_string(hide_password=True)
            raise DatabaseUrlError(f"database url must be sqlite+aiosqlite:///PATH, got {shown!r}")
        db = u.database or ""
        mode = u.query.get("mode")
    if db in ("", ":memory:") or db.startswith("file::memory:") or mode == "memory":
        raise DatabaseUrlError("an in-memory database cannot be a ledger; give a file path")
    path = Path(db).expanduser()
    return path if path.is_absolute() else base / path


def database_url(value: str, base: Path) -> str:
    """A ``[database] url`` or ``--db`` value as a URL: a SQLAlchemy URL (``scheme://...``)
    as given, except that a relative SQLite file path is taken from ``base``; a plain path
    (``ledger.db``, ``/srv/bx/ledger.db``) becomes ``sqlite+aiosqlite:///<absolute path>``."""
    text = value.strip()
    if "://" not in text:
        path = Path(text).expanduser()
        return f"sqlite+aiosqlite:///{path if path.is_absolute() else base / path}"
    scheme, _, rest = text.partition("://")
    if scheme.startswith("sqlite") and rest.startswith("/") and not rest.startswith("//"):
        file, sep, query = rest[1:].partition("?")
        special = file.startswith((":", "file:"))  # :memory: and URI forms are left alone
        if file and not special and not Path(file).is_absolute():
            return f"{scheme}:///{base / file}{sep}{query}"
    return text
