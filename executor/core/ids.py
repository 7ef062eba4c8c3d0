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

Reserved blocks (``ClientIdFactory(..., blocks=True)``): order ids are then handed out only
from sequence ranges the caller has added with ``add_order_block`` (ranges the ledger has
durably reserved, ``orders.id_supply``); ``on_low`` is called once when the ids left fall to
``low_water`` (time to reserve the next block), and ``next_order_id`` raises
``IdsExhausted`` when none is left. Cancel ids are not blocked: a cancel is recorded with an
fsynced commit before it is sent.
An id is *ours* only if it parses with our prefix; anything else on the account (web UI,
another program, Binance's generated ids) is external and must not be touched.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "BINANCE_CLIENT_ID_RE",
    "ClientId",
    "ClientIdFactory",
    "IdKind",
    "IdsExhausted",
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


class IdsExhausted(Exception):
    """Every reserved order id has been handed out; the next block is not reserved yet."""


class ClientIdFactory:
    """Hands out the ids of one run, in sequence. Pure (a counter), not thread-safe.

    ``next_order_seq``/``next_cancel_seq`` let a caller continue a run; a fresh run starts at 1.
    ``blocks``: order ids only from added blocks (see the module docstring).
    """

    def __init__(self, prefix: str, run: str, next_order_seq: int = 1, next_cancel_seq: int = 1, *,
                 blocks: bool = False, low_water: int = 0, on_low: Callable[[], None] | None = None) -> None:
        self.prefix = validate_prefix(prefix)
        if not isinstance(run, str) or not _RUN_RE.fullmatch(run):
            raise ValueError(f"run tag: must be 1-14 of [a-z0-9], got {run!r}")
        self.run = run
        self._next = {IdKind.ORDER: next_order_seq, IdKind.CANCEL: next_cancel_seq}
        self.blocked = blocks
        self._blocks: deque[tuple[int, int]] = deque()  # (first, last) not yet (fully) handed out
        self._reserved_to = next_order_seq - 1           # the last seq of the newest block added
        self.low_water = low_water
        self.on_low = on_low
        self.last_order_seq = next_order_seq - 1          # the highest order seq handed out
        # "<prefix>-<run>-<kind>" per kind, made once: an id is then one concatenation, the
        # same text ``str(ClientId(...))`` gives (it runs for every order on the tick path).
        self._heads = {kind: str(ClientId(self.prefix, run, kind, 0))[:-1] for kind in IdKind}

    def _take(self, kind: IdKind) -> str:
        seq = self._next[kind]
        if not 1 <= seq <= MAX_SEQ:
            raise ValueError(f"client id sequence {seq} out of range")
        self._next[kind] = seq + 1
        return self._heads[kind] + str(seq)

    # -- reserved blocks of order ids

    def add_order_block(self, first: int, last: int) -> None:
        """Order seqs ``first..last`` may now be handed out (blocks come in increasing order)."""
        if not 1 <= first <= last <= MAX_SEQ or first <= self._reserved_to:
            raise ValueError(f"order id block {first}..{last} overlaps or precedes {self._reserved_to}")
        self._blocks.append((first, last))
        self._reserved_to = last

    @property
    def order_ids_left(self) -> int:
        """Reserved order ids not handed out yet (unbounded without ``blocks``: -1)."""
        if not self.blocked:
            return -1
        nxt = self._next[IdKind.ORDER]
        return sum(last - max(first, nxt) + 1 for first, last in self._blocks if last >= nxt)

    @property
    def next_block_first(self) -> int:
        """Where the next block must start: after everything reserved and handed out so far."""
        return max(self._reserved_to, self.last_order_seq) + 1

    def next_order_id(self) -> str:
        if self.blocked:
            nxt = self._next[IdKind.ORDER]
            while self._blocks and self._blocks[0][1] < nxt:
                self._blocks.popleft()
            if not self._blocks:
                raise IdsExhausted(f"no reserved order id left after seq {nxt - 1}")
            first = self._blocks[0][0]
            if nxt < first:  # a gap between blocks (never expected): skip to the block
                self._next[IdKind.ORDER] = first
            cid = self._take(IdKind.ORDER)
            self.last_order_seq = self._next[IdKind.ORDER] - 1
            if self.on_low is not None and self.order_ids_left == self.low_water:
                self.on_low()
            return cid
        cid = self._take(IdKind.ORDER)
        self.last_order_seq = self._next[IdKind.ORDER] - 1
        return cid

    def next_cancel_id(self) -> str:
        return self._take(IdKind.CANCEL)
