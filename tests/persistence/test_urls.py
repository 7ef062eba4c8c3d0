"""``persistence.urls`` reads ``sqlite+aiosqlite:///PATH`` without SQLAlchemy; for every URL it
takes that way the answer must be SQLAlchemy's own (``make_url``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from executor.persistence import urls

PLAIN = "sqlite+aiosqlite:///"


@given(st.text(max_size=40) | st.sampled_from(["", ":memory:", "file::memory:", "~/x.db", "/a/b.db", "a?b",
                                                  "a%20b.db", "//host/x.db", "x.db#frag"]))
def test_plain_sqlite_is_what_make_url_reads(rest: str) -> None:
    url = PLAIN + rest
    fast = urls._plain_sqlite(url)
    if fast is None:
        return  # left to make_url itself
    u = make_url(url)
    assert (u.get_backend_name(), u.get_driver_name(), u.database or "", dict(u.query)) == (
        "sqlite", "aiosqlite", fast, {})
    assert u.host is None and u.username is None


@pytest.mark.parametrize("rest", ["rel/x.db", "/abs/x.db", "~/x.db"])
def test_database_path_same_either_way(rest: str, tmp_path: Path) -> None:
    # With a query the URL goes through make_url; without, through the plain reading.
    assert urls.database_path(PLAIN + rest, tmp_path) == urls.database_path(PLAIN + rest + "?x=1", tmp_path)


@pytest.mark.parametrize("rest", ["", ":memory:", "file::memory:?cache=shared"])
def test_in_memory_is_refused(rest: str) -> None:
    with pytest.raises(urls.DatabaseUrlError, match="in-memory"):
        urls.database_path(PLAIN + rest)
