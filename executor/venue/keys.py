"""API credentials for a profile, from the environment or a ``.env`` file.

Each venue class has its own variable names (``BX_TESTNET_*``, ``BX_DEMO_*``,
``BX_LIVE_*``) and a profile reads only its own, so a testnet key can never be sent to
live by a mix-up. A key is either HMAC (``*_API_SECRET``) or a PEM private key file
(``*_PRIVATE_KEY_FILE``, Ed25519 or RSA, optional ``*_PRIVATE_KEY_PASS``).

The USDⓈ-M futures testnet (testnet.binancefuture.com) issues its own keys, separate from
the spot testnet's, and the demo futures host may too, so testnet and demo read a second
set for the futures account (``BX_TESTNET_FUTURES_*``, ``BX_DEMO_FUTURES_*``, same shape)
whenever the futures user stream runs: a spot key is never sent to the futures host. On
live one key serves both markets.

``.env`` files are read with ``dotenv_values`` and never copied into ``os.environ``, so
child processes and crash dumps of the environment do not inherit the secrets. Real
environment variables win over ``.env`` values. The sim profile needs no keys (the
embedded exchange issues its own test account).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from executor.config import ROOT, ConfigError
from executor.exchange.credentials import Credentials

log = logging.getLogger(__name__)

PREFIXES = {"testnet": "BX_TESTNET_", "demo": "BX_DEMO_", "live": "BX_LIVE_"}
SUFFIXES = ("API_KEY", "API_SECRET", "PRIVATE_KEY_FILE", "PRIVATE_KEY_PASS")
# Profiles whose futures host issues keys of its own (live: one key serves spot and futures).
FUTURES_PREFIXES = {"testnet": "BX_TESTNET_FUTURES_", "demo": "BX_DEMO_FUTURES_"}


class KeysError(ConfigError):
    """Missing or unusable credentials; the text says exactly what to set or fix."""


@dataclass(frozen=True)
class KeyVars:
    """The variable names one profile reads."""

    api_key: str
    api_secret: str
    private_key_file: str
    private_key_pass: str

    @classmethod
    def for_profile(cls, profile: str) -> KeyVars:
        if profile not in PREFIXES:
            raise KeysError(f"profile {profile!r} takes no API keys")
        p = PREFIXES[profile]
        return cls(*(p + s for s in SUFFIXES))

    @classmethod
    def for_futures(cls, profile: str) -> KeyVars:
        if profile not in FUTURES_PREFIXES:
            raise KeysError(f"profile {profile!r} has no separate futures keys")
        p = FUTURES_PREFIXES[profile]
        return cls(*(p + s for s in SUFFIXES))

    def names(self) -> tuple[str, ...]:
        return (self.api_key, self.api_secret, self.private_key_file, self.private_key_pass)


def default_env_files() -> list[Path]:
    """``.env`` at the repo root, then in the working directory (later files win)."""
    files = [ROOT / ".env", Path.cwd() / ".env"]
    unique: list[Path] = []
    for f in files:
        if f.resolve() not in [u.resolve() for u in unique]:
            unique.append(f)
    return unique


def _loose_permissions(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def read_env_files(files: Sequence[Path]) -> dict[str, str]:
    """Values from the existing ``files`` (later ones win); warns on loose permissions."""
    values: dict[str, str] = {}
    for path in files:
        if not path.is_file():
            continue
        if _loose_permissions(path):
            mode = stat.S_IMODE(path.stat().st_mode)
            log.warning("%s is readable by group or others (mode %o): it may hold API secrets; "
                        "run: chmod 600 %s", path, mode, path)
        for name, value in dotenv_values(path).items():
            if value is not None:
                values[name] = value
    return values


def missing_message(profile: str, looked_in: Sequence[Path]) -> str:
    v = KeyVars.for_profile(profile)
    where = ", ".join(str(p) for p in looked_in) or "no .env file"
    return (f"profile {profile!r} needs API credentials. Set {v.api_key} and either "
            f"{v.api_secret} (HMAC secret) or {v.private_key_file} (path to an Ed25519 or RSA "
            f"PEM private key; {v.private_key_pass} if it is encrypted), in the environment or in "
            f"a .env file (looked in: {where}).")


def _read_private_key(path_text: str, var: str, passphrase: str | None) -> str:
    """The PEM text python-binance can load (checked to be Ed25519 or RSA)."""
    path = Path(path_text).expanduser()
    try:
        pem = path.read_text()
    except OSError as exc:
        raise KeysError(f"{var}: cannot read private key file {path}: {exc.strerror}") from None
    if _loose_permissions(path):
        log.warning("%s (%s) is readable by group or others; run: chmod 600 %s", path, var, path)
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        load_pem_private_key,
    )

    try:
        key = load_pem_private_key(pem.encode(), passphrase.encode() if passphrase else None)
    except (ValueError, TypeError) as exc:
        # The library's text names the problem (bad password, not PEM) without key bytes.
        raise KeysError(f"{var}: {path} is not a usable PEM private key ({exc})") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        # python-binance tells Ed25519 from RSA by PEM length (<= 120 chars) and cannot
        # decrypt Ed25519 keys, so hand it the canonical unencrypted PKCS#8 form.
        return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeysError(f"{var}: {path} holds a {type(key).__name__}; Binance takes Ed25519 or RSA")
    return pem


def separate_futures_keys(profile: str) -> bool:
    """Whether ``profile``'s futures account needs its own key set (testnet, demo)."""
    return profile in FUTURES_PREFIXES


def futures_missing_message(profile: str, looked_in: Sequence[Path]) -> str:
    v = KeyVars.for_futures(profile)
    spot = KeyVars.for_profile(profile)
    where = ", ".join(str(p) for p in looked_in) or "no .env file"
    host = "testnet.binancefuture.com" if profile == "testnet" else "demo-fapi.binance.com"
    return (f"profile {profile!r} with the futures user stream ([futures] user_stream) needs futures "
            f"API credentials: the futures {profile} ({host}) issues its own keys, separate from the "
            f"spot ones in {spot.api_key}, and those are never sent to the futures host. Set "
            f"{v.api_key} and either {v.api_secret} (HMAC secret) or {v.private_key_file} (path to "
            f"an Ed25519 or RSA PEM private key; {v.private_key_pass} if it is encrypted), in the "
            f"environment or in a .env file (looked in: {where}); or set [futures] user_stream = "
            f"false.")


def _load(profile: str, names: KeyVars, missing: Callable[[str, Sequence[Path]], str],
          environ: Mapping[str, str] | None, env_files: Sequence[Path] | None) -> Credentials:
    files = list(default_env_files() if env_files is None else env_files)
    file_values = read_env_files(files)
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(name)
        if value is None or value == "":
            value = file_values.get(name)
        return value.strip() if value and value.strip() else None

    api_key = get(names.api_key)
    secret = get(names.api_secret)
    key_file = get(names.private_key_file)
    passphrase = get(names.private_key_pass)
    if not api_key or not (secret or key_file):
        raise KeysError(missing(profile, [f for f in files if f.is_file()]))
    if secret and key_file:
        raise KeysError(f"both {names.api_secret} and {names.private_key_file} are set for profile "
                        f"{profile!r}; set only one (HMAC secret or private key file)")
    if secret:
        return Credentials(api_key=api_key, api_secret=secret)
    assert key_file
    pem = _read_private_key(key_file, names.private_key_file, passphrase)
    # The passphrase stays in the value even for a decrypted Ed25519 PEM (python-binance
    # ignores it there) so that log redaction still knows it.
    return Credentials(api_key=api_key, private_key_pem=pem, private_key_pass=passphrase)


def load_credentials(profile: str, environ: Mapping[str, str] | None = None,
                     env_files: Sequence[Path] | None = None) -> Credentials | None:
    """The credentials for ``profile`` (None for ``sim``); ``KeysError`` when missing or bad.

    Only the profile's own variables are read, from ``environ`` (default ``os.environ``)
    and then the ``.env`` files (default: repo root and working directory).
    """
    if profile == "sim":
        return None
    return _load(profile, KeyVars.for_profile(profile), missing_message, environ, env_files)


def load_futures_credentials(profile: str, environ: Mapping[str, str] | None = None,
                             env_files: Sequence[Path] | None = None) -> Credentials | None:
    """The futures account's own credentials for ``profile``: ``BX_<PROFILE>_FUTURES_*``.

    None where one key serves both markets (``live``) or the venue issues its own
    (``sim``); ``KeysError`` naming the variables when testnet's or demo's are missing.
    Never falls back to the spot key set.
    """
    if not separate_futures_keys(profile):
        return None
    return _load(profile, KeyVars.for_futures(profile), futures_missing_message, environ, env_files)
