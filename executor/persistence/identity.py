"""What a ledger is: its order namespace (client-id prefix) and its venue, in ``ledger_meta``.

Written when a bot first opens the ledger, checked by every later one:

* ``client_prefix``: the prefix of every client order id this ledger's bot sends. Generated
  (``generate_prefix``: short, random, so two ledgers trading on one account never share a
  namespace) unless the config sets ``[orders] client_id_prefix`` explicitly (non-empty);
  then that one is stored, and a ledger whose stored prefix differs from an explicitly
  configured one is refused. "Ours" everywhere (reconciler adoption, inventory, shutdown
  cancel, gap fill) means this prefix.
* ``venue_profile``, ``venue_rest`` (the REST host), and ``venue_account`` (the account's
  ``uid`` from ``GET /api/v3/account``, where the venue gives one; recorded once known).
  Opening the ledger for another profile, host or account is refused: ids, fills and
  balances of two venues must never meet in one ledger.
* ``created_ms``.

A ledger from before this table (orders but no meta) keeps the prefix its orders carry and
is refused if its runs were made on another profile. The read-only side (``read_meta``,
``describe_meta``, the keys and ``VenueIdentity``) lives in ``ledger_meta``, without the ORM
models this module's writers use, and is re-exported here.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from executor.core.ids import parse_client_id, validate_prefix
from executor.persistence.ledger_meta import (
    ACCOUNT_KEY,
    CREATED_KEY,
    PREFIX_KEY,
    PROFILE_KEY,
    REST_KEY,
    VenueIdentity,
    describe_meta,
    read_meta,
)
from executor.persistence.models import LedgerMeta as _MetaModel
from executor.persistence.models import Order as _OrderModel
from executor.persistence.models import Run as _RunModel
from executor.persistence.types import now_ms

if TYPE_CHECKING:  # annotations only: `audit` reads the identity without the async engine
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["LedgerIdentity", "LedgerMismatch", "VenueIdentity", "bind_account", "describe_meta", "establish",
           "generate_prefix", "read_meta", "rest_host"]

meta_t = _MetaModel.__table__
orders_t = _OrderModel.__table__
runs_t = _RunModel.__table__

# "b" + 5 base36 characters: 60M namespaces, and 6 of the 8 characters core.ids allows, so
# every id stays within Binance's ^[a-zA-Z0-9-_]{1,36}$.
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
GENERATED_LEN = 5


class LedgerMismatch(Exception):
    """The ledger belongs to another venue or namespace; ``str()`` is the one line to print."""


@dataclass(frozen=True)
class LedgerIdentity:
    prefix: str
    venue: VenueIdentity
    created_ms: int | None

    def describe(self) -> str:
        return f"client ids {self.prefix}-…, venue {self.venue.describe()}"


def rest_host(url: str) -> str:
    """The host (and port, if any) of a REST base URL: what identifies the venue."""
    parts = urlsplit(url)
    return parts.netloc or url


def generate_prefix() -> str:
    return "b" + "".join(secrets.choice(_ALPHABET) for _ in range(GENERATED_LEN))


def _meta(conn: Connection) -> dict[str, str]:
    return {k: v for k, v in conn.execute(sa.select(meta_t.c.key, meta_t.c.value))}


def _write_lock(conn: Connection) -> None:
    """Serialise identity writers. SQLite's ``sqlite_write`` transaction (BEGIN IMMEDIATE)
    already does; PostgreSQL's read-then-insert would let two first opens both see no
    identity (the second would then fail on the key, not with ``LedgerMismatch``)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("LOCK TABLE ledger_meta IN SHARE ROW EXCLUSIVE MODE"))


def _put(conn: Connection, values: dict[str, str], at: int) -> None:
    for key, value in values.items():
        conn.execute(sa.insert(meta_t).values(key=key, value=value, set_ms=at))


def _legacy_prefix(conn: Connection) -> str | None:
    """The prefix a pre-identity ledger's own orders carry (the most frequent one)."""
    seen: Counter[str] = Counter()
    rows = conn.execute(sa.select(orders_t.c.client_order_id).where(orders_t.c.external.is_(False))
                        .order_by(orders_t.c.id.desc()).limit(1000))
    for (cid,) in rows:
        parsed = parse_client_id(cid)
        if parsed is not None:
            seen[parsed.prefix] += 1
    return seen.most_common(1)[0][0] if seen else None


def _establish(conn: Connection, path: str, configured: str | None, venue: VenueIdentity,
               at: int) -> LedgerIdentity:
    meta = _meta(conn)
    if PREFIX_KEY not in meta:
        # New ledger (or one from before ledger_meta): record what it is now.
        used = {p for (p,) in conn.execute(sa.select(runs_t.c.profile).distinct())}
        profiles = sorted(used - {venue.profile})
        if profiles:
            raise LedgerMismatch(f"ledger {path} holds runs of profile {', '.join(profiles)} and no venue "
                                 f"record; it cannot be used for profile {venue.profile} (give this profile "
                                 "its own [database] url)")
        prefix = configured or _legacy_prefix(conn) or generate_prefix()
        values = {PREFIX_KEY: prefix, PROFILE_KEY: venue.profile, REST_KEY: venue.rest, CREATED_KEY: str(at)}
        if venue.account:
            values[ACCOUNT_KEY] = venue.account
        _put(conn, values, at)
        meta = {**meta, **values}
    stored = VenueIdentity(meta.get(PROFILE_KEY, ""), meta.get(REST_KEY, ""), meta.get(ACCOUNT_KEY))
    if (stored.profile, stored.rest) != (venue.profile, venue.rest):
        raise LedgerMismatch(f"ledger {path} belongs to {stored.describe()}, not {venue.describe()}; "
                             "give this venue its own [database] url")
    if configured and meta[PREFIX_KEY] != configured:
        raise LedgerMismatch(f"ledger {path} uses client id prefix {meta[PREFIX_KEY]!r}, but the config sets "
                             f"[orders] client_id_prefix = {configured!r}; remove that setting or use "
                             "another [database] url")
    created = meta.get(CREATED_KEY)
    return LedgerIdentity(meta[PREFIX_KEY], stored, int(created) if created and created.isdigit() else None)


async def establish(engine: AsyncEngine, path: str, *, configured_prefix: str | None,
                    venue: VenueIdentity, at_ms: int | None = None) -> LedgerIdentity:
    """Record the ledger's identity if it has none, else check it against ``venue`` and the
    configured prefix (None or "" = use the stored one); raises ``LedgerMismatch``. One
    write transaction, so two first opens cannot record two identities."""
    if configured_prefix:
        validate_prefix(configured_prefix)
    at = at_ms if at_ms is not None else now_ms()
    async with engine.connect() as conn:
        await conn.execution_options(sqlite_write=True)
        async with conn.begin():
            await conn.run_sync(_write_lock)
            return await conn.run_sync(_establish, path, configured_prefix or None, venue, at)


def _bind(conn: Connection, path: str, account: str, at: int) -> None:
    meta = _meta(conn)
    stored = meta.get(ACCOUNT_KEY)
    if stored is None:
        _put(conn, {ACCOUNT_KEY: account}, at)
    elif stored != account:
        venue = VenueIdentity(meta.get(PROFILE_KEY, "?"), meta.get(REST_KEY, "?"), stored)
        raise LedgerMismatch(f"ledger {path} belongs to {venue.describe()}, but these keys reach account "
                             f"{account}; give this account its own [database] url")


async def bind_account(engine: AsyncEngine, path: str, account: str, *, at_ms: int | None = None) -> None:
    """Record the account's identity (``uid``) the first time it is known, or check it."""
    at = at_ms if at_ms is not None else now_ms()
    async with engine.connect() as conn:
        await conn.execution_options(sqlite_write=True)
        async with conn.begin():
            await conn.run_sync(_write_lock)
            await conn.run_sync(_bind, path, account, at)
