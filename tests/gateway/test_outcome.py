"""Classification of request failures into Rejected / Unknown / RateLimited."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from binance.exceptions import BinanceRequestException
from hypothesis import given
from hypothesis import strategies as st

from executor.exchange.outcome import (
    DEFAULT_RETRY_AFTER_418_S,
    DEFAULT_RETRY_AFTER_429_S,
    RateLimited,
    Rejected,
    Unknown,
    classify,
    parse_retry_after,
    redact,
)
from tests.gateway.fakes import api_error


def test_plain_rejection_is_a_definite_no() -> None:
    out = classify(api_error(400, -2010, "Account has insufficient balance for requested action."))
    assert out == Rejected(-2010, "Account has insufficient balance for requested action.", 400)


def test_timestamp_error_is_a_rejection_the_gateway_can_recognise() -> None:
    out = classify(api_error(400, -1021, "Timestamp for this request is outside of the recvWindow."))
    assert isinstance(out, Rejected) and out.code == -1021


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_unknown_with_or_without_a_json_body(status: int) -> None:
    assert isinstance(classify(api_error(status, None)), Unknown)
    assert isinstance(classify(api_error(status, -1000, "internal")), Unknown)


def test_minus_1007_is_unknown_even_on_a_4xx() -> None:
    out = classify(api_error(400, -1007, "Timeout waiting for response from backend server."))
    assert isinstance(out, Unknown) and "-1007" in out.reason


@pytest.mark.parametrize("exc", [
    aiohttp.SocketTimeoutError("socket read"),
    TimeoutError(),
    aiohttp.ServerTimeoutError("read timed out"),
    aiohttp.ServerDisconnectedError(),
    aiohttp.ClientConnectionError("reset"),
    aiohttp.ClientOSError(104, "Connection reset by peer"),
    ConnectionResetError(104, "reset"),
    aiohttp.ClientPayloadError("truncated"),
    BinanceRequestException("Invalid Response: <html>"),
])
def test_transport_failures_are_unknown(exc: BaseException) -> None:
    assert isinstance(classify(exc), Unknown)


def test_429_reads_retry_after() -> None:
    out = classify(api_error(429, -1003, "Too many requests.", {"Retry-After": "7"}))
    assert out == RateLimited(7.0, False, -1003, "Too many requests.")


def test_418_is_a_ban_and_reads_retry_after() -> None:
    out = classify(api_error(418, -1003, "Way too many requests; IP banned until 1700000123000.",
                             {"Retry-After": "123"}))
    assert isinstance(out, RateLimited) and out.banned and out.retry_after_s == 123.0


def test_ban_without_header_uses_banned_until_in_message() -> None:
    out = classify(api_error(418, -1003, "IP banned until 1700000060000.", {}), now_ms=1_700_000_000_000)
    assert isinstance(out, RateLimited) and out.retry_after_s == pytest.approx(60.0)


def test_missing_retry_after_falls_back_to_conservative_defaults() -> None:
    r429 = classify(api_error(429, -1003, "Too many requests."))
    r418 = classify(api_error(418, None))
    assert isinstance(r429, RateLimited) and r429.retry_after_s == DEFAULT_RETRY_AFTER_429_S
    assert isinstance(r418, RateLimited) and r418.retry_after_s == DEFAULT_RETRY_AFTER_418_S


def test_too_many_orders_is_rate_limited() -> None:
    out = classify(api_error(429, -1015, "Too many new orders; current limit is 100 orders per 10 SECOND.",
                             {"Retry-After": "3"}))
    assert isinstance(out, RateLimited) and out.code == -1015 and not out.banned


def test_programming_errors_and_cancellation_are_not_classified() -> None:
    assert classify(KeyError("x")) is None
    assert classify(asyncio.CancelledError()) is None


def test_redact_removes_signature_and_query() -> None:
    text = "GET http://h/api/v3/order?symbol=BTCUSDT&timestamp=1&signature=deadbeef failed"
    cleaned = redact(text)
    assert "deadbeef" not in cleaned and "timestamp=1" not in cleaned
    assert "signature=<redacted>" in redact("signature=abc&x=1")


def test_unknown_reason_never_carries_the_signature() -> None:
    exc = aiohttp.ClientConnectionError("failed http://h/api/v3/order?signature=s3cr3t")
    out = classify(exc)
    assert isinstance(out, Unknown) and "s3cr3t" not in out.reason


@given(st.text(max_size=20))
def test_parse_retry_after_never_raises(value: str) -> None:
    parsed = parse_retry_after(value)
    assert parsed is None or parsed >= 0


@given(st.integers(min_value=400, max_value=599), st.integers(min_value=-3000, max_value=0))
def test_every_api_error_gets_exactly_one_class(status: int, code: int) -> None:
    out = classify(api_error(status, code, "m", {"Retry-After": "1"}))
    assert isinstance(out, Rejected | Unknown | RateLimited)
    if status >= 500 and status not in (418, 429) and code not in (-1003, -1015):
        assert isinstance(out, Unknown)
    if isinstance(out, Rejected):
        assert status < 500 and code != -1007


def test_non_json_4xx_is_a_plain_rejection() -> None:
    out = classify(api_error(403, None))
    assert out == Rejected(0, "HTTP 403 without a Binance error body", 403)
