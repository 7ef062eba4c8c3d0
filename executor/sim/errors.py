"""Binance error codes, their exact message texts and the HTTP status each is sent with.

Every rejection the embedded exchange makes is a ``BinanceError``; transports render it
as ``{"code": ..., "msg": ...}`` with ``http_status``. Message texts follow Binance's
``errors.md`` word for word, because clients (and our own bot) match on them.
"""

from __future__ import annotations

from typing import Any


class BinanceError(Exception):
    """A Binance-shaped rejection: ``code``, ``msg`` and the HTTP status to answer with."""

    def __init__(self, code: int, msg: str, http_status: int = 400,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg}


# -- 10xx general -------------------------------------------------------------------------

def too_much_weight(limit: int, retry_after_s: int) -> BinanceError:
    return BinanceError(
        -1003,
        f"Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
        429, {"Retry-After": str(retry_after_s)})


def ip_banned(until_ms: int, retry_after_s: int) -> BinanceError:
    return BinanceError(
        -1003,
        f"Way too much request weight used; IP banned until {until_ms}. "
        "Please use WebSocket Streams for live updates to avoid bans.",
        418, {"Retry-After": str(retry_after_s)})


def too_many_orders(limit: int, interval: str) -> BinanceError:
    # rest-api.md "Order Rate Limits": a 429 *without* the Retry-After header.
    return BinanceError(-1015, f"Too many new orders; current limit is {limit} orders per {interval}.", 429)


TIMEOUT_MSG = ("Timeout waiting for response from backend server. "
               "Send status unknown; execution status unknown.")


def timeout(http_status: int = 503) -> BinanceError:
    return BinanceError(-1007, TIMEOUT_MSG, http_status)


def invalid_timestamp_window() -> BinanceError:
    return BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")


def invalid_timestamp_ahead() -> BinanceError:
    return BinanceError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")


def invalid_signature() -> BinanceError:
    return BinanceError(-1022, "Signature for this request is not valid.")


# -- 11xx request content -------------------------------------------------------------------

def illegal_chars(param: str, legal: str) -> BinanceError:
    return BinanceError(-1100, f"Illegal characters found in parameter '{param}'; legal range is '{legal}'.")


def duplicate_param() -> BinanceError:
    return BinanceError(-1101, "Duplicate values for a parameter detected.")


def mandatory_missing(param: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{param}' was not sent, was empty/null, or malformed.")


def one_of_missing(a: str, b: str) -> BinanceError:
    return BinanceError(-1102, f"Param '{a}' or '{b}' must be sent, but both were empty/null!")


def unread_params(read: int, sent: int) -> BinanceError:
    return BinanceError(-1104, f"Not all sent parameters were read; read '{read}' parameter(s) but was sent "
                        f"'{sent}'.")


def param_not_required(param: str) -> BinanceError:
    return BinanceError(-1106, f"Parameter '{param}' sent when not required.")


def bad_precision(param: str) -> BinanceError:
    return BinanceError(-1111, f"Parameter '{param}' has too much precision.")


def invalid_tif() -> BinanceError:
    return BinanceError(-1115, "Invalid timeInForce.")


def invalid_order_type() -> BinanceError:
    return BinanceError(-1116, "Invalid orderType.")


def invalid_side() -> BinanceError:
    return BinanceError(-1117, "Invalid side.")


def empty_client_id() -> BinanceError:
    return BinanceError(-1118, "New client order ID was empty.")


def invalid_symbol() -> BinanceError:
    return BinanceError(-1121, "Invalid symbol.")


def lookup_too_big(hours: int = 24) -> BinanceError:
    return BinanceError(-1127, f"More than {hours} hours between startTime and endTime.")


def bad_param_combo() -> BinanceError:
    return BinanceError(-1128, "Combination of optional parameters invalid.")


def invalid_param(param: str) -> BinanceError:
    return BinanceError(-1130, f"Data sent for parameter '{param}' is not valid.")


def bad_recv_window(maximum: int = 60000) -> BinanceError:
    # Spot errors.md dropped -1131 BAD_RECV_WINDOW; the over-maximum case is now a -1102 variant.
    return BinanceError(-1102, f"'recvWindow' contains unexpected value. Cannot be greater than {maximum}.")


# -- 20xx trading -----------------------------------------------------------------------------

def filter_failure(name: str) -> BinanceError:
    return BinanceError(-1013, f"Filter failure: {name}")


def insufficient_balance() -> BinanceError:
    return BinanceError(-2010, "Account has insufficient balance for requested action.")


def duplicate_order() -> BinanceError:
    return BinanceError(-2010, "Duplicate order sent.")


def would_match() -> BinanceError:
    return BinanceError(-2010, "Order would immediately match and take.")


def trading_disabled(code: int = -2010) -> BinanceError:
    # CHANGELOG 2023-03-13 replaced "This action is disabled on this account." for this case.
    return BinanceError(code, "This account may not place or cancel orders.")


def not_in_trading_phase() -> BinanceError:
    """A new order on a symbol whose status is not TRADING (CHANGELOG 2023-03-13)."""
    return BinanceError(-2010, "This order type is not possible in this trading phase.")


def order_type_not_supported(order_type: str) -> BinanceError:
    """A valid Binance order type the symbol does not enable (errors.md message table)."""
    words = {"STOP_LOSS": "Stop loss", "STOP_LOSS_LIMIT": "Stop loss limit", "TAKE_PROFIT": "Take profit",
             "TAKE_PROFIT_LIMIT": "Take profit limit"}.get(order_type, order_type)
    return BinanceError(-2010, f"{words} orders are not supported for this symbol.")


def invalid_symbol_status() -> BinanceError:
    return BinanceError(-1122, "Invalid symbolStatus.")


def unknown_order_cancel() -> BinanceError:
    return BinanceError(-2011, "Unknown order sent.")


def no_such_order() -> BinanceError:
    return BinanceError(-2013, "Order does not exist.")


def bad_api_key_format() -> BinanceError:
    return BinanceError(-2014, "API-key format invalid.", 401)


def rejected_key() -> BinanceError:
    return BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)


def order_id_mismatch() -> BinanceError:
    return BinanceError(-2039, "Client order ID is not correct for this order ID.")
