"""The request guard: open paths, bearer check, the per-address failure window, JSON-only
changes; and the token file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from executor.config import ConfigError
from executor.web.auth import Guard, Verdict, load_token

TOKEN = "t" * 32


def test_guard_verdicts_and_failure_window() -> None:
    now = [0.0]
    g = Guard(TOKEN, max_failures=2, window_s=60, clock=lambda: now[0])
    ok = f"Bearer {TOKEN}"
    assert g.check("GET", "/", "a", None, "") == Verdict.OPEN
    assert g.check("GET", "/static/dashboard.js", "a", None, "") == Verdict.OPEN
    assert g.check("GET", "/api/v1/ping", "a", None, "") == Verdict.OPEN
    assert g.check("POST", "/api/v1/ping", "a", None, "") == Verdict.UNAUTHORIZED  # only GET is open
    assert g.check("GET", "/api/v1/status", "b", f"bearer {TOKEN}", "") == Verdict.OK
    assert g.check("POST", "/api/v1/pause", "b", ok, "text/plain") == Verdict.BAD_TYPE
    assert g.check("POST", "/api/v1/pause", "b", ok, "application/json") == Verdict.OK
    assert g.check("GET", "/metrics", "c", TOKEN, "") == Verdict.UNAUTHORIZED  # no scheme
    assert g.check("GET", "/metrics", "c", ok + "x", "") == Verdict.UNAUTHORIZED
    assert g.check("GET", "/metrics", "c", ok, "") == Verdict.LIMITED  # 2 failures this minute
    assert g.check("GET", "/metrics", "b", ok, "") == Verdict.OK  # per address
    now[0] = 60.0
    assert g.check("GET", "/metrics", "c", ok, "") == Verdict.OK  # the minute has passed


def test_token_file_is_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "web-token"
    token, where = load_token(path, env={})
    assert where == path and stat.S_IMODE(path.stat().st_mode) == 0o600 and len(token) >= 32
    assert load_token(path, env={}) == (token, path)
    path.chmod(0o644)  # readable by others: not trusted, replaced
    fresh, _ = load_token(path, env={})
    assert fresh != token and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_token(path, env={"BX_WEB_TOKEN": TOKEN}) == (TOKEN, None)
    with pytest.raises(ConfigError, match="at least 16"):
        load_token(path, env={"BX_WEB_TOKEN": "short"})
