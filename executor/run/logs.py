"""Logging for a run: console plus one file per run, readable lines or JSON, secrets scrubbed.

``setup_logging`` installs two handlers on the root logger (stderr and
``<logging.dir>/run-<UTC time>[-<run id>].log``), both with the same format: readable
lines by default, one JSON object per line with ``logging.json`` / ``--log-json``.

The file rotates (``logging.rotate``: at UTC midnight, or at ``logging.max_bytes``) into
``<name>.log.<suffix>``, and the folder keeps at most ``logging.keep_files`` log files of
all runs together: at start and at every rotation the oldest ``run-*.log*`` go.

Every record passes a ``RedactingFilter`` on each handler (handler filters see records
from every logger, logger filters would not) that replaces each registered secret and
any ``signature=`` value in the message, its arguments, the exception text and the stack
text. Register secrets with ``register_secrets(credentials)`` as soon as they are loaded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import logging.handlers
import os
import re
import sys
import time
import traceback
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from executor.config import Config

MASK = "***"
# The handlers ``setup_logging`` installed, so a second call replaces exactly those.
_INSTALLED: weakref.WeakSet[logging.Handler] = weakref.WeakSet()
_MIN_FRAGMENT = 16   # a PEM line this long is specific enough to redact on its own

# signature=... in query strings / URLs, and "signature": "..." in WS API params.
_SIGNATURE_PATTERNS = (
    re.compile(r"(signature=)[^&\s'\"]+", re.IGNORECASE),
    re.compile(r"""(["']signature["']\s*:\s*["'])[^"']+""", re.IGNORECASE),
)

# Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

# Third-party loggers stay at WARNING even at --log-level DEBUG (their DEBUG is every SQL
# statement and every WebSocket frame, drowning ours); ``[logging.levels]`` can name one.
_NOISY = {"websockets": "WARNING", "aiohttp": "WARNING", "apscheduler": "WARNING",
          "asyncio": "WARNING", "sqlalchemy": "WARNING", "alembic": "WARNING", "aiosqlite": "WARNING",
          "urllib3": "WARNING", "binance": "WARNING", "matplotlib": "WARNING", "PIL": "WARNING"}
# websockets' DEBUG frame log elides the middle of long frames ("...<tail>"), so a signed
# WS API request can show a signature's tail with no "signature" key in front of it: in
# that logger's lines every long token (signatures, keys, listenKeys) is masked.
_FRAME_TOKEN = re.compile(r"[A-Za-z0-9+/_=-]{16,}")


class Redactor:
    """Knows the secret strings of this process and blanks them out of any text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._ordered: list[str] = []

    def add(self, *secrets: str | None) -> None:
        for secret in secrets:
            if not secret:
                continue
            parts = {secret.strip(), secret}
            # A PEM can leak one line at a time (a parse error quoting a line, a repr).
            parts.update(line.strip() for line in secret.splitlines()
                         if len(line.strip()) >= _MIN_FRAGMENT and not line.startswith("-----"))
            self._secrets.update(p for p in parts if p)
        # Longest first so a fragment never leaves a longer secret's remainder behind.
        self._ordered = sorted(self._secrets, key=len, reverse=True)

    def add_credentials(self, credentials: Any) -> None:
        """Register ``Credentials.secrets()`` (None is ignored: the sim needs no keys)."""
        if credentials is not None:
            self.add(*credentials.secrets())

    def redact(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in _SIGNATURE_PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        return text

    def redact_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {k: self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_value(v) for v in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.redact(str(value))


REDACTOR = Redactor()


def register_secrets(*items: Any) -> None:
    """Register ``Credentials`` objects or plain secret strings with the process redactor."""
    for item in items:
        if isinstance(item, str):
            REDACTOR.add(item)
        else:
            REDACTOR.add_credentials(item)


class RedactingFilter(logging.Filter):
    """Rewrites a record in place so no handler ever formats a secret."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed %-format must not hide the record
            message = f"{record.msg!s} {record.args!r}"
        message = self.redactor.redact(message)
        if record.name.startswith("websockets"):
            message = _FRAME_TOKEN.sub(MASK, message)
        record.msg = message
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = self.redactor.redact(text)
            record.exc_info = None   # formatters would re-render the raw traceback
        elif record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, self.redactor.redact_value(value))
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s",
                         datefmt="%Y-%m-%dT%H:%M:%S")
        self.converter = time.gmtime


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, optional exc/stack and extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in out:
                out[key] = value
        return orjson.dumps(out, default=str).decode()


@dataclass
class LogSetup:
    """What ``setup_logging`` installed; ``close()`` removes it again."""

    path: Path
    handlers: list[logging.Handler]
    redactor: Redactor

    def attach_run_id(self, run_id: int) -> Path:
        """Rename the log file to carry the run id once the run row exists."""
        new = self.path.with_name(f"{self.path.stem}-run{run_id}{self.path.suffix}")
        for handler in self.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.acquire()
                try:
                    os.replace(self.path, new)
                    handler.baseFilename = str(new)
                finally:
                    handler.release()
        self.path = new
        return new

    def close(self) -> None:
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
            handler.close()


LOG_GLOB = "run-*.log*"


def prune_log_files(directory: Path, keep: int, current: Path | None = None) -> list[Path]:
    """Delete the oldest ``run-*.log*`` files in ``directory`` beyond ``keep`` (never ``current``)."""
    files = [p for p in directory.glob(LOG_GLOB) if p.is_file()]
    files.sort(key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    kept = 1 if current is not None and current.exists() else 0
    removed = []
    for path in files:
        if current is not None and path == current:
            continue
        if kept < keep:
            kept += 1
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


class _Retention:
    """After a rotation, keep at most ``keep`` log files in the folder (all runs)."""

    keep: int

    def _prune(self, handler: logging.handlers.BaseRotatingHandler) -> None:
        path = Path(handler.baseFilename)
        prune_log_files(path.parent, self.keep, current=path)


class DailyRotatingFile(_Retention, logging.handlers.TimedRotatingFileHandler):
    """The run's log file, rotated at UTC midnight."""

    def __init__(self, path: Path, keep: int) -> None:
        super().__init__(path, when="midnight", utc=True, backupCount=keep, encoding="utf-8")
        self.keep = keep

    def doRollover(self) -> None:
        super().doRollover()
        self._prune(self)


class SizeRotatingFile(_Retention, logging.handlers.RotatingFileHandler):
    """The run's log file, rotated at ``max_bytes``."""

    def __init__(self, path: Path, keep: int, max_bytes: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=keep, encoding="utf-8")
        self.keep = keep

    def doRollover(self) -> None:
        super().doRollover()
        self._prune(self)


def log_file_name(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return f"run-{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z.log"


def installed_by_setup(handler: logging.Handler) -> bool:
    """Whether ``setup_logging`` installed ``handler`` (a later call replaces it)."""
    return handler in _INSTALLED


def setup_logging(cfg: Config, *, json: bool | None = None, level: str | None = None,
                  log_dir: Path | str | None = None, stream: IO[str] | None = None,
                  redactor: Redactor = REDACTOR, secrets: Iterable[Any] = ()) -> LogSetup:
    """Install console + per-run file logging; returns the ``LogSetup`` (file path inside).

    ``json``/``level`` override the config (the CLI already folds ``--log-json`` and
    ``--log-level`` into it). Handlers this function installed earlier are replaced.
    """
    use_json = cfg.logging.json if json is None else json
    level_name = (level or cfg.logging.level).upper()
    directory = Path(log_dir if log_dir is not None else cfg.logging.dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / log_file_name()
    for item in secrets:
        redactor.add(item) if isinstance(item, str) else redactor.add_credentials(item)

    formatter: logging.Formatter = JsonFormatter() if use_json else TextFormatter()
    redacting = RedactingFilter(redactor)
    console = logging.StreamHandler(stream or sys.stderr)
    keep = cfg.logging.keep_files
    prune_log_files(directory, max(0, keep - 1))  # room for this run's file
    file: logging.FileHandler = (SizeRotatingFile(path, keep, cfg.logging.max_bytes)
                                 if cfg.logging.rotate == "size" else DailyRotatingFile(path, keep))
    handlers: list[logging.Handler] = [console, file]
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(redacting)
        _INSTALLED.add(handler)

    root = logging.getLogger()
    for old in list(root.handlers):
        if old in _INSTALLED:
            root.removeHandler(old)
            old.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level_name)
    for name, noisy_level in _NOISY.items():
        logging.getLogger(name).setLevel(noisy_level)
    for name, override in cfg.logging.levels.items():
        logging.getLogger(name).setLevel(override.upper())
    logging.captureWarnings(True)
    return LogSetup(path=path, handlers=handlers, redactor=redactor)
