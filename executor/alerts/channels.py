"""Where alerts go: one ``deliver`` per channel, raising ``DeliveryError`` on failure.

``WebhookChannel`` POSTs the alert as JSON (``kind``, ``text``, ``at_ms``, ``bot``, ``data``)
to a URL. ``TelegramChannel`` calls the Bot API's ``sendMessage`` at
``<base_url>/bot<token>/sendMessage`` with ``chat_id`` and ``text`` (the base URL is
configurable so tests point it at a local server). A ``DeliveryError`` carries only what is
safe to log: the HTTP status or the exception's type, and whether retrying can help.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

__all__ = ["Alert", "Channel", "DeliveryError", "TelegramChannel", "WebhookChannel"]


@dataclass(frozen=True)
class Alert:
    kind: str  # fill, pause, resume, cancel-all, kill, stream_stale, reconciliation, unclean_shutdown, ...
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    at_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)


class DeliveryError(Exception):
    """A failed delivery, described without the URL, token or chat id."""

    def __init__(self, what: str, *, retry: bool = True) -> None:
        super().__init__(what)
        self.what = what
        self.retry = retry


class Channel(Protocol):
    name: str

    async def deliver(self, session: aiohttp.ClientSession, alert: Alert) -> None: ...


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any], timeout_s: float) -> Any:
    try:
        async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status >= 400:
                # 4xx (but 429) will not get better by asking again; 5xx and 429 may.
                raise DeliveryError(f"HTTP {resp.status}", retry=resp.status >= 500 or resp.status == 429)
            try:
                return await resp.json(content_type=None)
            except ValueError:
                return None
    except DeliveryError:
        raise
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        # The exception's text may hold the URL (and so a token): its type is enough.
        raise DeliveryError(type(exc).__name__) from None


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, *, bot: str = "binance-executor", timeout_s: float = 10.0) -> None:
        self.url = url
        self.bot = bot
        self.timeout_s = timeout_s

    async def deliver(self, session: aiohttp.ClientSession, alert: Alert) -> None:
        await _post(session, self.url, {"kind": alert.kind, "text": alert.text, "at_ms": alert.at_ms,
                                        "bot": self.bot, "data": alert.data}, self.timeout_s)


class TelegramChannel:
    name = "telegram"

    def __init__(self, token: str, chat_id: str, *, base_url: str = "https://api.telegram.org",
                 timeout_s: float = 10.0) -> None:
        self.token = token
        self.chat_id = chat_id
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    async def deliver(self, session: aiohttp.ClientSession, alert: Alert) -> None:
        url = f"{self.base_url}/bot{self.token}/sendMessage"
        answer = await _post(session, url, {"chat_id": self.chat_id, "text": alert.text[:4000],
                                            "disable_web_page_preview": True}, self.timeout_s)
        if isinstance(answer, dict) and answer.get("ok") is False:
            raise DeliveryError(f"Telegram answered ok=false (error_code {answer.get('error_code')})",
                                retry=False)
