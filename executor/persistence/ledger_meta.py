"""The ``ledger_meta`` keys and their read-only side: ``read_meta`` and the audit's one line.

Split from ``identity`` (which writes and checks the identity through the ORM models) so that
``run.py audit`` can print the identity line without importing SQLAlchemy's ORM and the models
(~0.1 s of its start-up, bench/RESULTS.md, "#16 audit start-up and teardown"). ``read_meta``
takes any connection with ``execute(sql)`` returning rows: the audit's read-only ``sqlite3``
connection or, on PostgreSQL, its ``SqlReader``; so both backends print the same line from
the same code. ``identity`` re-exports every name here.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

__all__ = ["ACCOUNT_KEY", "CREATED_KEY", "PREFIX_KEY", "PROFILE_KEY", "REST_KEY", "VenueIdentity",
           "describe_meta", "read_meta"]

PREFIX_KEY = "client_prefix"
PROFILE_KEY = "venue_profile"
REST_KEY = "venue_rest"
ACCOUNT_KEY = "venue_account"
CREATED_KEY = "created_ms"


@dataclass(frozen=True)
class VenueIdentity:
    """Where a ledger's orders go: profile, REST host, and the account where known."""

    profile: str
    rest: str
    account: str | None = None

    def describe(self) -> str:
        acct = f", account {self.account}" if self.account else ""
        return f"{self.profile} at {self.rest}{acct}"


def read_meta(conn: Any) -> dict[str, str]:
    """The ledger's identity rows for a read-only reader; {} on a ledger without them."""
    try:
        return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM ledger_meta")}
    except sqlite3.OperationalError:
        return {}


def describe_meta(meta: dict[str, str]) -> str:
    """One line for the audit: the prefix and the venue."""
    if PREFIX_KEY not in meta:
        return "ledger: no identity recorded (written by a version before ledger_meta)"
    venue = VenueIdentity(meta.get(PROFILE_KEY, "?"), meta.get(REST_KEY, "?"), meta.get(ACCOUNT_KEY))
    return f"ledger: client id prefix {meta[PREFIX_KEY]} · venue {venue.describe()}"
