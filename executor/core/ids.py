"""Our client order ids and cancel ids: making them, and recognising them.

Format: ``<prefix>-<run>-<kind><seq>``, for example ``bx-mhx2k9q0a7f3-o42``:

* ``prefix``: 1-8 of ``[A-Za-z0-9_]``: the ledger's own namespace, generated when the ledger
  is created or pinned by config ``orders.client_id_prefix`` (``persistence.identity``); no
  ``-`` so the id splits unambiguously;
* ``run``: 1-14 of ``[a-z0-9]``, unique per bot start. ``make_run_tag(started_ms, nonce)``
  builds one from the start time and a random nonce (the caller supplies both: this module
  does no I/O and draws no randomness), so ids stay unique across runs, restarts after a
  crash, and even two bots sharing an account;
* ``kind``: ``o`` for an order, ``c`` for a cancel request (the cancel's own
  ``newClientOrderId``; Binance reports it as ``c`` on the CANCELED executionReport);
* ``seq``: 1-10 decimal digits, from 1 upward within the run.

At most 8 + 1 + 14 + 1 + 1 + 10 = 35 characters, inside Binance's ``^[a-zA-Z0-9-_]{1,36}$``.
An id is *ours* only if it parses with our prefix; anything else on the account (web UI,
another program, Binance's generated ids) is external and must not be touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "BINANCE_CLIENT_ID_RE",
    "ClientId",
    "ClientIdFactory",
    "IdKind",
    "is_ours",
    "make_run_tag",
    "parse_client_id",
    "validate_prefix",
]

BINANCE_CLIENT_ID_RE = re.compile(r"[a-zA-Z0-9_-]{1,36}", re.ASCII)
_PREFIX_RE = re.compile(r"[A-Za-z0-9_]{1,8}", re.ASCII)
_RUN_RE = re.compile(r"[a-z0-9]{1,14}", re.ASCII)
_ID_RE = re.compile(
    r"(?P<prefix>[A-Za-z0-9_]{1,8})-(?P<run>[a-z0-9]{1,14})-(?P<kind>[oc])(?P<seq>[0-9]{1,10})", re.ASCII)
MAX_SEQ = 9_999_999_999
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


class IdKind(StrEnum):
    ORDER = "o"
    CANCEL = "c"


@dataclass(frozen=True)
class ClientId:
    prefix: str
    run: str
    kind: IdKind
    seq: int

    def __str__(self) -> str:
        return f"{self.prefix}-{self.run}-{self.kind.value}{self.seq}"


def _base36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _B36[r] + out
        if n == 0:
            return out


def validate_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"client id prefix: must be 1-8 of [A-Za-z0-9_], got {prefix!r}")
    return prefix


def make_run_tag(started_ms: int, nonce: int) -> str:
    """A run tag: base36 start time (8-9 chars) + 4 base36 chars of ``nonce``.

    Pass e.g. ``secrets.randbits(20)`` as ``nonce``; two runs collide only if they start in
    the same millisecond *and* draw the same nonce.
    """
    if started_ms < 0 or nonce < 0:
        raise ValueError("run tag: started_ms and nonce must be non-negative")
    tag = _base36(started_ms) + _base36(nonce % 36**4).rjust(4, "0")
    if len(tag) > 14:
        raise ValueError(f"run tag: started_ms {started_ms} too large")
    return tag


def parse_client_id(value: object, prefix: str | None = None) -> ClientId | None:
    """Parse one of our ids; ``None`` if it is not in our format (or not ``prefix``'s)."""
    if not isinstance(value, str):
        return None
    m = _ID_RE.fullmatch(value)
    if m is None or (prefix is not None and m["prefix"] != prefix):
        return None
    return ClientId(m["prefix"], m["run"], IdKind(m["kind"]), int(m["seq"]))


def is_ours(value: object, prefix: str) -> bool:
    """True if ``value`` is an order or cancel id this bot (any of its runs) made."""
    return parse_client_id(value, prefix) is not None


class ClientIdFactory:
    """Hands out the ids of one run, in sequence. Pure (a counter), not thread-safe.

    ``next_order_seq``/``next_cancel_seq`` let a caller continue a run; a fresh run starts at 1.
    """

    def __init__(self, prefix: str, run: str, next_order_seq: int = 1, next_cancel_seq: int = 1) -> None:
        self.prefix = validate_prefix(prefix)
        if not isinstance(run, str) or not _RUN_RE.fullmatch(run):
            raise ValueError(f"run tag: must be 1-14 of [a-z0-9], got {run!r}")
        self.run = run
        self._next = {IdKind.ORDER: next_order_seq, IdKind.CANCEL: next_cancel_seq}

    def _take(self, kind: IdKind) -> str:
        seq = self._next[kind]
        if not 1 <= seq <= MAX_SEQ:
            raise ValueError(f"client id sequence {seq} out of range")
        self._next[kind] = seq + 1
        return str(ClientId(self.prefix, self.run, kind, seq))

    def next_order_id(self) -> str:
        return self._take(IdKind.ORDER)

    def next_cancel_id(self) -> str:
        return self._take(IdKind.CANCEL)
