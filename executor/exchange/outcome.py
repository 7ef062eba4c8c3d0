"""What a REST request's failure means: a definite no, an unknown outcome, or a rate limit.

The distinction is the heart of "never send an order twice": a ``Rejected`` request did not
act on the exchange (safe to decide again), an ``Unknown`` one may have (resolve by querying
the client order id, never by resending), and a ``RateLimited`` one was refused by the
limiter before acting and additionally means *everyone* must stop sending for a while.

``classify`` is pure: it looks at the exception (and the response headers python-binance
left on it) and never touches the network.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from binance.exceptions import BinanceAPIException, BinanceRequestException

# Error codes with special meaning (reference.md §7).
TOO_MANY_REQUESTS = -1003
TIMEOUT = -1007
TOO_MANY_ORDERS = -1015
INVALID_TIMESTAMP = -1021
NO_SUCH_ORDER = -2013

# Used when a 429/418 arrives without a usable Retry-After (Binance always sends one;
# a proxy might not). A ban starts at 2 minutes, so never assume less for a 418.
DEFAULT_RETRY_AFTER_429_S = 5.0
DEFAULT_RETRY_AFTER_418_S = 120.0

_BANNED_UNTIL = re.compile(r"banned until (\d{12,14})")
_SECRET_PARAMS = re.compile(r"(signature|apiKey|api_key|X-MBX-APIKEY)=[^&\s'\"]*", re.IGNORECASE)
_QUERY = re.compile(r"\?[^\s'\"]*")


@dataclass(frozen=True)
class Accepted:
    """The exchange answered 2xx; ``response`` is its decoded JSON body."""

    response: Any


@dataclass(frozen=True)
class Rejected:
    """A definite no: the request did not act on the exchange."""

    code: int
    msg: str
    http_status: int | None = None

    def __str__(self) -> str:  # log lines read "rejected: -2010 Account has insufficient balance"
        http = f" (HTTP {self.http_status})" if self.http_status else ""
        return f"rejected: {self.code} {self.msg}{http}"


@dataclass(frozen=True)
class Unknown:
    """The request may or may not have acted; only a query can tell."""

    reason: str

    def __str__(self) -> str:
        return f"outcome unknown: {self.reason}"


@dataclass(frozen=True)
class RateLimited:
    """429 (or 418 = IP banned): refused before acting; all sending must pause.

    ``retry_after_s`` counts from when the response was received.
    """

    retry_after_s: float
    banned: bool
    code: int | None = None
    msg: str = ""

    def __str__(self) -> str:
        what = "IP banned (418)" if self.banned else "rate limited (429)"
        code = f", {self.code} {self.msg}".rstrip() if self.code is not None else ""
        return f"{what}, retry after {self.retry_after_s:g} s{code}"


Failure = Rejected | Unknown | RateLimited
Outcome = Accepted | Failure


def redact(text: str) -> str:
    """Strip query strings and signed parameters from exception text before it is logged."""
    return _QUERY.sub("?<redacted>", _SECRET_PARAMS.sub(r"\1=<redacted>", text))


def _headers_of(exc: BaseException) -> Mapping[str, str]:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers if headers is not None else {}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (Binance sends integer seconds)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _retry_after(exc: BaseException, status: int, msg: str, now_ms: int | None) -> float:
    seconds = parse_retry_after(_headers_of(exc).get("Retry-After"))
    if seconds is not None:
        return seconds
    # -1003 bans say "IP banned until <epoch ms>"; use it when the header is missing.
    match = _BANNED_UNTIL.search(msg or "")
    if match and now_ms is not None:
        return max(0.0, (int(match.group(1)) - now_ms) / 1000.0)
    return DEFAULT_RETRY_AFTER_418_S if status == 418 else DEFAULT_RETRY_AFTER_429_S


def _api_exception(exc: BinanceAPIException, now_ms: int | None) -> Failure:
    status = int(exc.status_code)
    code = int(exc.code or 0)
    msg = str(exc.message or "")
    if status in (429, 418) or code in (TOO_MANY_REQUESTS, TOO_MANY_ORDERS):
        banned = status == 418 or "banned" in msg.lower()
        return RateLimited(_retry_after(exc, status, msg, now_ms), banned, code or None, msg)
    if status >= 500:
        return Unknown(f"HTTP {status}" + (f" code {code}: {msg}" if code else ""))
    if code == TIMEOUT:
        return Unknown(f"HTTP {status} code {TIMEOUT}: {msg}")
    if status == 408:
        return Unknown("HTTP 408")
    if not code:
        # A non-JSON 4xx (a WAF 403, a proxy page): python-binance's message is useless here.
        return Rejected(0, f"HTTP {status} without a Binance error body", status)
    return Rejected(code, msg, status)


def classify(exc: BaseException, *, now_ms: int | None = None) -> Failure | None:
    """Map an exception raised by a python-binance REST call to its outcome.

    Returns None for exceptions that are not about the request's fate (programming
    errors), which the caller should re-raise. Cancellation is never classified.
    """
    if isinstance(exc, asyncio.CancelledError):
        return None
    if isinstance(exc, BinanceAPIException):
        return _api_exception(exc, now_ms)
    if isinstance(exc, BinanceRequestException):
        # A 2xx whose body could not be read: the request was processed, its result lost.
        return Unknown(f"unreadable 2xx response: {redact(exc.message)[:200]}")
    if isinstance(exc, TimeoutError):  # asyncio.TimeoutError and aiohttp.ServerTimeoutError
        return Unknown(f"timeout ({type(exc).__name__})")
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | ConnectionError):
        # Connect failures included: conservative, since a query resolves them cheaply.
        return Unknown(f"connection error ({type(exc).__name__}: {redact(str(exc))[:200]})")
    return None
