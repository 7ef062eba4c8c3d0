"""Request authentication as Binance does it: API key, timestamp/recvWindow, signature.

The signature is checked over the request exactly as received: the raw query string
concatenated with the raw body, with the ``signature`` parameter removed — so a client
that signs something other than what it sends fails here as on Binance (-1022). HMAC
signatures are hex (case-insensitive); Ed25519 and RSA (PKCS#1 v1.5, SHA-256) are base64,
percent-decoded first.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from executor.sim import errors
from executor.sim.accounts import Account, Accounts, ApiKey

AUTH_PARAMS = frozenset({"timestamp", "recvWindow", "signature"})
API_KEY_RE = re.compile(r"^[A-Za-z0-9]{1,128}$")
MAX_RECV_WINDOW = Decimal(60000)
DEFAULT_RECV_WINDOW = Decimal(5000)
RECV_WINDOW_LEGAL = r"^[0-9]{1,20}(\.[0-9]{1,3})?$"
RECV_WINDOW_RE = re.compile(RECV_WINDOW_LEGAL)
RECV_WINDOW_INT_RE = re.compile(r"[0-9]{1,20}")
TIMESTAMP_RE = re.compile(r"[0-9]{1,20}")


def parse_params(query: str, body: str) -> dict[str, str]:
    """Query + form body as one dict. A name sent twice in one part is -1101; a name in both
    parts takes the query string's value (rest-api.md, "General information on endpoints")."""
    out: dict[str, str] = {}
    for part in (body, query):
        if not part:
            continue
        if "%" in part or "+" in part:
            try:
                pairs = parse_qsl(part, keep_blank_values=True, strict_parsing=False)
            except ValueError:
                raise errors.BinanceError(-1100, "Illegal characters found in a parameter.") from None
        else:
            # Nothing to decode (the usual signed order body): parse_qsl's result without its
            # per-field unquote and '+' replacement (empty fields skipped, a field without '='
            # is a blank value).
            pairs = [field.partition("=")[::2] for field in part.split("&") if field]
        seen: set[str] = set()
        for key, value in pairs:
            if key in seen:
                raise errors.duplicate_param()
            seen.add(key)
            out[key] = value
    return out


def _strip_signature(raw: str) -> tuple[str, str | None]:
    """``raw`` without its signature component, and the signature's raw (encoded) value."""
    if not raw:
        return raw, None
    kept: list[str] = []
    sig: str | None = None
    for part in raw.split("&"):
        if part.startswith("signature="):
            sig = part[len("signature="):]
        else:
            kept.append(part)
    return "&".join(kept), sig


def lookup_key(accounts: Accounts, headers: Mapping[str, str]) -> tuple[Account, ApiKey]:
    """The account behind ``X-MBX-APIKEY``: -2014 when absent or malformed, -2015 when unknown."""
    key = headers.get("X-MBX-APIKEY", "")
    if not key or not API_KEY_RE.match(key):
        raise errors.bad_api_key_format()
    found = accounts.by_api_key(key)
    if found is None:
        raise errors.rejected_key()
    return found


def check_timestamp(params: Mapping[str, str], now_ms: int, time_scale: float = 1.0) -> None:
    """recvWindow and the 1 s lead are wall-clock spans on Binance; when the sim's clock runs
    ``time_scale`` times faster they cover that many more exchange milliseconds."""
    raw_ts = params.get("timestamp")
    raw_rw = params.get("recvWindow")
    if (raw_ts and len(raw_ts) <= 15 and time_scale <= 1.0 and TIMESTAMP_RE.fullmatch(raw_ts)
            and (raw_rw is None or RECV_WINDOW_INT_RE.fullmatch(raw_rw))):
        # The usual request (milliseconds, an integer recvWindow, a real-time clock): the
        # checks of ``check_timestamp_exact`` in integers, which compare exactly as its
        # Decimals do (tests/sim/test_order_path_fast.py compares the two).
        ts_ms = int(raw_ts)
        rw_ms = 5000 if raw_rw is None else int(raw_rw)
        if rw_ms > 60000:
            raise errors.bad_recv_window()
        if ts_ms > now_ms + 1000:
            raise errors.invalid_timestamp_ahead()
        if now_ms - ts_ms > rw_ms:
            raise errors.invalid_timestamp_window()
        return
    check_timestamp_exact(params, now_ms, time_scale)


def check_timestamp_exact(params: Mapping[str, str], now_ms: int, time_scale: float = 1.0) -> None:
    """``check_timestamp`` for every form Binance accepts (microseconds, a recvWindow with
    decimals, a sped-up clock), in Decimals."""
    raw_ts = params.get("timestamp")
    if raw_ts is None or raw_ts == "":
        raise errors.mandatory_missing("timestamp")
    if not TIMESTAMP_RE.fullmatch(raw_ts):
        raise errors.illegal_chars("timestamp", "^[0-9]{1,20}$")
    raw_rw = params.get("recvWindow")
    ts = Decimal(raw_ts)
    if ts >= 10**15:            # microseconds
        ts = ts / 1000
    recv_window = DEFAULT_RECV_WINDOW
    if raw_rw is not None:
        # Milliseconds with up to 3 decimals (µs precision, CHANGELOG 2025-08-12).
        if not RECV_WINDOW_RE.fullmatch(raw_rw):
            raise errors.illegal_chars("recvWindow", RECV_WINDOW_LEGAL)
        recv_window = Decimal(raw_rw)
        if recv_window > MAX_RECV_WINDOW:
            raise errors.bad_recv_window()
    scale = Decimal(repr(max(1.0, time_scale)))
    if ts > now_ms + 1000 * scale:
        raise errors.invalid_timestamp_ahead()
    if now_ms - ts > recv_window * scale:
        raise errors.invalid_timestamp_window()


_HMAC_BLOCK = 64
_HMAC_PADS: dict[str, tuple[Any, Any]] = {}


def hmac_sha256_hex(secret: str, data: bytes) -> str:
    """HMAC-SHA256 of ``data`` under ``secret``, in hex: ``hmac.new(secret, data, sha256)``'s
    result (RFC 2104), from the secret's inner and outer SHA-256 states computed once per
    secret and copied per request (a one-shot HMAC sets the key up, and with OpenSSL 3 fetches
    the digest, on every call)."""
    pads = _HMAC_PADS.get(secret)
    if pads is None:
        key = secret.encode()
        if len(key) > _HMAC_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_HMAC_BLOCK, b"\0")
        pads = (hashlib.sha256(bytes(b ^ 0x36 for b in key)), hashlib.sha256(bytes(b ^ 0x5C for b in key)))
        if len(_HMAC_PADS) < 1024:  # the exchange's keys: a handful (bounded all the same)
            _HMAC_PADS[secret] = pads
    inner = pads[0].copy()
    inner.update(data)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.hexdigest()


def verify_signature(api: ApiKey, payload: str, signature: str) -> bool:
    data = payload.encode()
    if api.kind == "HMAC":
        assert api.secret is not None
        expected = hmac_sha256_hex(api.secret, data)
        if not signature.isascii():
            return False
        return hmac.compare_digest(expected, signature.lower())
    try:
        raw = base64.b64decode(unquote(signature), validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        if api.kind == "Ed25519":
            api.public_key.verify(raw, data)
        else:
            api.public_key.verify(raw, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def authenticate_signed(accounts: Accounts, headers: Mapping[str, str], query: str, body: str,
                        params: Mapping[str, str], now_ms: int,
                        time_scale: float = 1.0) -> tuple[Account, ApiKey]:
    """Full SIGNED check (TRADE / USER_DATA endpoints); returns the caller's account and key."""
    account, api = lookup_key(accounts, headers)
    q, sig_q = _strip_signature(query)
    b, sig_b = _strip_signature(body)
    signature = sig_q if sig_q is not None else sig_b
    check_timestamp(params, now_ms, time_scale)
    if signature is None or signature == "":
        raise errors.mandatory_missing("signature")
    if not verify_signature(api, q + b, signature):
        raise errors.invalid_signature()
    return account, api
