"""The web server's bearer token and the checks every request passes.

The token comes from ``BX_WEB_TOKEN``, or else from the token file (``[web] token_file``),
which is created with a fresh random token, mode 0600, when missing or readable by others.
It is registered with the log redactor and never logged; only the file's path is.

``Guard.check``: ``GET /api/v1/ping`` and the static dashboard shell (``/``, ``/static/``:
no data in them, and a browser cannot put a bearer header on a page load) are open;
everything else needs ``Authorization: Bearer <token>``, compared in constant time. A wrong
or missing token answers 401 with no detail. A client address with ``max_failures`` failures
in the last minute is answered 429 without looking at its token until the minute has passed.
Requests that change something (POST, ...) must be ``Content-Type: application/json``: an
HTML form cannot send that cross-site without a CORS preflight, which this server never
grants.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["OPEN_PATHS", "Guard", "Verdict", "load_token"]

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/", "/index.html", "/favicon.ico"})
_SAFE_METHODS = frozenset({"GET", "HEAD"})
MIN_TOKEN_LEN = 16


def load_token(token_file: str | Path, env: Mapping[str, str] | None = None) -> tuple[str, Path | None]:
    """(token, file it lives in or None when it came from ``BX_WEB_TOKEN``)."""
    from executor.config import ConfigError
    from executor.run.logs import register_secrets

    env = os.environ if env is None else env
    given = env.get("BX_WEB_TOKEN", "").strip()
    if given:
        if len(given) < MIN_TOKEN_LEN:
            raise ConfigError(f"BX_WEB_TOKEN must be at least {MIN_TOKEN_LEN} characters")
        register_secrets(given)
        return given, None
    path = Path(token_file)
    token = ""
    if path.is_file():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("web token file %s was readable by others (mode %o): replacing its token", path, mode)
        else:
            token = path.read_text(encoding="utf-8").strip()
    if len(token) < MIN_TOKEN_LEN:
        token = secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (token + "\n").encode())
        finally:
            os.close(fd)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    register_secrets(token)
    return token, path


class Verdict:
    OK = "ok"
    OPEN = "open"
    UNAUTHORIZED = "unauthorized"
    LIMITED = "limited"
    BAD_TYPE = "bad_type"


class Guard:
    """Token check, failure rate limit and the JSON-only rule for changing requests."""

    def __init__(self, token: str, *, max_failures: int = 20, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._token = token.encode()
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self.failures: dict[str, deque[float]] = {}
        self.refused = 0

    def _recent(self, client: str, now: float) -> deque[float]:
        q = self.failures.setdefault(client, deque())
        while q and now - q[0] >= self.window_s:
            q.popleft()
        return q

    def check(self, method: str, path: str, client: str, authorization: str | None,
              content_type: str) -> str:
        if method in _SAFE_METHODS and (path in OPEN_PATHS or path.startswith("/static/")
                                         or path == "/api/v1/ping"):
            return Verdict.OPEN
        now = self.clock()
        recent = self._recent(client, now)
        if len(recent) >= self.max_failures:
            self.refused += 1
            return Verdict.LIMITED
        given = b""
        if authorization and authorization[:7].lower() == "bearer ":
            given = authorization[7:].strip().encode()
        if not hmac.compare_digest(given, self._token):
            recent.append(now)
            if len(self.failures) > 10_000:  # bounded: forget addresses with no failure this minute
                for key in list(self.failures):
                    if not self._recent(key, now):
                        del self.failures[key]
            return Verdict.UNAUTHORIZED
        if method not in _SAFE_METHODS and content_type != "application/json":
            return Verdict.BAD_TYPE
        return Verdict.OK
