"""Accounts of the embedded exchange: balances (free/locked, exact Decimal), commission
rates, permissions and API keys (HMAC, Ed25519, RSA).

Keys and secrets are derived from the sim's seed so the default account's test
credentials are stable across runs; they are local test credentials, never real ones.
Two internal accounts make the books balance: the counterparty (the other side of every
fill against the synthetic market) and the fee account (every commission charged).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

ZERO = Decimal(0)
COUNTERPARTY_ID = "counterparty"
FEES_ID = "fees"
DEFAULT_ID = "default"


def default_api_restrictions() -> dict[str, Any]:
    """The shape of GET /sapi/v1/account/apiRestrictions (createTime is filled per key)."""
    return {
        "ipRestrict": True,
        "createTime": 0,
        "enableReading": True,
        "enableWithdrawals": False,
        "enableInternalTransfer": False,
        "enableMargin": False,
        "enableFutures": True,
        "permitsUniversalTransfer": False,
        "enableVanillaOptions": False,
        "enableFixApiTrade": False,
        "enableFixReadOnly": False,
        "enableSpotAndMarginTrading": True,
        "enablePortfolioMarginTrading": False,
    }


@functools.lru_cache(maxsize=4)
def _rsa_private_key(slot: str) -> rsa.RSAPrivateKey:
    # RSA-2048 generation costs ~0.1-0.5 s; generated lazily and once per process per slot.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()


class ApiKey:
    """One API key. ``kind`` is "HMAC", "Ed25519" or "RSA"; the private half is kept only so
    the sim can print/hand out test credentials."""

    def __init__(self, key: str, kind: str, account_id: str, *, secret: str | None = None,
                 ed25519_seed: bytes | None = None, rsa_slot: str | None = None,
                 create_time: int = 0) -> None:
        self.key = key
        self.kind = kind
        self.account_id = account_id
        self.secret = secret
        self._ed_seed = ed25519_seed
        self._rsa_slot = rsa_slot
        self.api_restrictions = default_api_restrictions()
        self.api_restrictions["createTime"] = create_time

    def __repr__(self) -> str:
        return f"ApiKey({self.key[:6]}…, {self.kind}, account={self.account_id})"

    def _private(self) -> Any:
        if self.kind == "Ed25519":
            assert self._ed_seed is not None
            return ed25519.Ed25519PrivateKey.from_private_bytes(self._ed_seed)
        if self.kind == "RSA":
            assert self._rsa_slot is not None
            return _rsa_private_key(self._rsa_slot)
        raise ValueError("an HMAC key has no private key")

    @functools.cached_property
    def public_key(self) -> Any:
        return self._private().public_key()

    @property
    def private_key_pem(self) -> str:
        return self._private().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()


@dataclass
class Balance:
    free: Decimal = ZERO
    locked: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


class BalanceError(Exception):
    """An internal move that would make a balance negative (a sim bug, never a client error)."""


@dataclass
class Account:
    id: str
    uid: int
    maker_rate: Decimal = Decimal("0.001")
    taker_rate: Decimal = Decimal("0.001")
    can_trade: bool = True
    can_withdraw: bool = True
    can_deposit: bool = True
    balances: dict[str, Balance] = field(default_factory=dict)
    api_keys: list[ApiKey] = field(default_factory=list)
    update_time: int = 0

    def balance(self, asset: str) -> Balance:
        bal = self.balances.get(asset)
        if bal is None:
            bal = self.balances[asset] = Balance()
        return bal

    def free(self, asset: str) -> Decimal:
        return self.balances[asset].free if asset in self.balances else ZERO

    def locked(self, asset: str) -> Decimal:
        return self.balances[asset].locked if asset in self.balances else ZERO

    # Every move below keeps free and locked non-negative or raises before changing anything.
    def credit(self, asset: str, amount: Decimal) -> None:
        if amount < 0:
            raise BalanceError(f"negative credit {amount} {asset}")
        self.balance(asset).free += amount

    def debit(self, asset: str, amount: Decimal, *, allow_negative: bool = False) -> None:
        bal = self.balance(asset)
        if amount < 0 or (bal.free < amount and not allow_negative):
            raise BalanceError(f"{self.id}: cannot debit {amount} {asset} from free {bal.free}")
        bal.free -= amount

    def lock(self, asset: str, amount: Decimal) -> None:
        bal = self.balance(asset)
        if amount < 0 or bal.free < amount:
            raise BalanceError(f"{self.id}: cannot lock {amount} {asset} from free {bal.free}")
        bal.free -= amount
        bal.locked += amount

    def unlock(self, asset: str, amount: Decimal) -> None:
        bal = self.balance(asset)
        if amount < 0 or bal.locked < amount:
            raise BalanceError(f"{self.id}: cannot unlock {amount} {asset} from locked {bal.locked}")
        bal.locked -= amount
        bal.free += amount

    def debit_locked(self, asset: str, amount: Decimal) -> None:
        bal = self.balance(asset)
        if amount < 0 or bal.locked < amount:
            raise BalanceError(f"{self.id}: cannot spend {amount} {asset} from locked {bal.locked}")
        bal.locked -= amount

    def rates(self) -> dict[str, str]:
        return {"maker": f"{self.maker_rate:.8f}", "taker": f"{self.taker_rate:.8f}",
                "buyer": "0.00000000", "seller": "0.00000000"}


class Accounts:
    """Registry of accounts and API keys. ``default`` is the one the sim prints on start."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._by_id: dict[str, Account] = {}
        self._by_key: dict[str, ApiKey] = {}
        # ``uid`` (GET /api/v3/account) is drawn per exchange start, not from the seed: a
        # restarted exchange is a new venue (its order and trade ids restart), and a ledger
        # bound to the old one's account must refuse it (executor.persistence.identity).
        self._next_uid = 100_000_000 + secrets.randbelow(800_000_000)

    def __iter__(self) -> Iterator[Account]:
        return iter(self._by_id.values())

    def __contains__(self, account_id: object) -> bool:
        return account_id in self._by_id

    def get(self, account_id: str) -> Account:
        return self._by_id[account_id]

    def find(self, account_id: str) -> Account | None:
        return self._by_id.get(account_id)

    def by_api_key(self, key: str) -> tuple[Account, ApiKey] | None:
        api = self._by_key.get(key)
        if api is None:
            return None
        return self._by_id[api.account_id], api

    def add(self, account_id: str, balances: dict[str, Decimal] | None = None, *,
            with_keys: bool = True, now_ms: int = 0) -> Account:
        if account_id in self._by_id:
            raise ValueError(f"account {account_id!r} exists")
        acct = Account(id=account_id, uid=self._next_uid, update_time=now_ms)
        self._next_uid += 1
        for asset, amount in (balances or {}).items():
            acct.credit(asset, Decimal(amount))
        self._by_id[account_id] = acct
        if with_keys:
            self._make_keys(acct, now_ms)
        return acct

    def _make_keys(self, acct: Account, now_ms: int) -> None:
        hmac_key = _digest("sim-hmac-key", self.seed, acct.id).hex()
        secret = _digest("sim-hmac-secret", self.seed, acct.id).hex()
        ed_key = _digest("sim-ed25519-key", self.seed, acct.id).hex()
        rsa_key = _digest("sim-rsa-key", self.seed, acct.id).hex()
        for api in (
            ApiKey(hmac_key, "HMAC", acct.id, secret=secret, create_time=now_ms),
            ApiKey(ed_key, "Ed25519", acct.id, ed25519_seed=_digest("sim-ed25519-seed", self.seed, acct.id),
                   create_time=now_ms),
            ApiKey(rsa_key, "RSA", acct.id, rsa_slot=f"{self.seed}:{acct.id}", create_time=now_ms),
        ):
            self.add_key(api)

    def add_key(self, api: ApiKey) -> None:
        self._by_key[api.key] = api
        self._by_id[api.account_id].api_keys.append(api)

    def key_of(self, account_id: str, kind: str) -> ApiKey:
        for api in self._by_id[account_id].api_keys:
            if api.kind == kind:
                return api
        raise KeyError(f"{account_id} has no {kind} key")

    @property
    def default(self) -> Account:
        return self._by_id[DEFAULT_ID]

    @property
    def counterparty(self) -> Account:
        return self._by_id[COUNTERPARTY_ID]

    @property
    def fees(self) -> Account:
        return self._by_id[FEES_ID]
