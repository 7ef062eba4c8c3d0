"""The alert dispatcher: one bounded queue and one delivery task per channel.

``send`` puts the alert on every channel's queue without waiting (a full queue drops the
alert and counts it), so trading never waits for an alert. A channel's task delivers in
order, retrying a failure ``retries`` times with doubling backoff (``backoff_s`` first,
at most ``max_backoff_s``); a failure retrying cannot fix (HTTP 4xx) is not retried. While a
channel keeps failing, one WARNING per ``dead_log_interval_s`` says so, with the number of
alerts dropped meanwhile; one INFO says when it delivers again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from executor.alerts.channels import Alert, Channel, DeliveryError, TelegramChannel, WebhookChannel

__all__ = ["AlertSettings", "Alerter", "channels_from_config", "settings_from_config"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertSettings:
    retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    dead_log_interval_s: float = 300.0
    queue_size: int = 1000


class _Lane:
    """One channel's queue, task and failure bookkeeping."""

    def __init__(self, channel: Channel, size: int) -> None:
        self.channel = channel
        self.queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=size)
        self.task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0  # alerts given up on
        self.dropped = 0  # alerts refused by a full queue
        self.failing = False
        self.last_dead_log = -1e18
        self.unlogged = 0  # failures since the last WARNING


class Alerter:
    """Sends alerts to its channels; ``start()`` before, ``close()`` after."""

    def __init__(self, channels: list[Channel], settings: AlertSettings | None = None) -> None:
        self.settings = settings or AlertSettings()
        self.lanes = [_Lane(c, self.settings.queue_size) for c in channels]
        self._session: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.lanes)

    def start(self) -> None:
        if not self.lanes or self._session is not None:
            return
        self._session = aiohttp.ClientSession()
        for lane in self.lanes:
            lane.task = asyncio.create_task(self._run(lane), name=f"alerts-{lane.channel.name}")

    def send(self, kind: str, text: str, **data: Any) -> None:
        """Queue one alert on every channel; never waits, never raises."""
        alert = Alert(kind, text, data)
        for lane in self.lanes:
            try:
                lane.queue.put_nowait(alert)
            except asyncio.QueueFull:
                lane.dropped += 1
                self._note_failure(lane, "queue full")

    def stats(self) -> dict[str, dict[str, int]]:
        return {lane.channel.name: {"delivered": lane.delivered, "failed": lane.failed,
                                    "dropped": lane.dropped, "queued": lane.queue.qsize()}
                for lane in self.lanes}

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every queued alert was delivered or given up on (True), or ``timeout_s``."""
        async def drained() -> None:
            for lane in self.lanes:
                await lane.queue.join()

        try:
            await asyncio.wait_for(drained(), timeout_s)
            return True
        except TimeoutError:
            return False

    async def close(self, timeout_s: float = 3.0) -> None:
        """Deliver what is queued (up to ``timeout_s``), then stop."""
        if self._session is None:
            return
        await self.flush(timeout_s)
        for lane in self.lanes:
            if lane.task is not None:
                lane.task.cancel()
        await asyncio.gather(*(lane.task for lane in self.lanes if lane.task is not None),
                             return_exceptions=True)
        await self._session.close()
        self._session = None

    async def _run(self, lane: _Lane) -> None:
        while True:
            alert = await lane.queue.get()
            try:
                await self._deliver(lane, alert)
            finally:
                lane.queue.task_done()

    async def _deliver(self, lane: _Lane, alert: Alert) -> None:
        assert self._session is not None
        s = self.settings
        delay = s.backoff_s
        for attempt in range(s.retries + 1):
            try:
                await lane.channel.deliver(self._session, alert)
            except DeliveryError as exc:
                if not exc.retry or attempt == s.retries:
                    lane.failed += 1
                    self._note_failure(lane, exc.what)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, s.max_backoff_s)
                continue
            except Exception as exc:  # noqa: BLE001 - a bug in a channel must not end its task
                lane.failed += 1
                self._note_failure(lane, type(exc).__name__)
                return
            lane.delivered += 1
            if lane.failing:
                lane.failing = False
                log.info("alerts: %s delivers again", lane.channel.name)
            return

    def _note_failure(self, lane: _Lane, what: str) -> None:
        lane.failing = True
        lane.unlogged += 1
        now = time.monotonic()
        if now - lane.last_dead_log >= self.settings.dead_log_interval_s:
            log.warning("alerts: %s is failing (%s); %d alert(s) not delivered since the last report; "
                        "next report in %.0f s at the earliest", lane.channel.name, what, lane.unlogged,
                        self.settings.dead_log_interval_s)
            lane.last_dead_log = now
            lane.unlogged = 0


def channels_from_config(cfg: Any, env: Mapping[str, str] | None = None) -> list[Channel]:
    """The channels ``[alerts]`` turns on, with their secrets from ``env`` (default: the
    process environment, which ``.env`` has been loaded into). A channel turned on without its
    secrets raises ``ConfigError`` naming the variable (never its value)."""
    from executor.config import ConfigError
    from executor.run.logs import register_secrets

    env = os.environ if env is None else env
    out: list[Channel] = []
    if cfg.webhook:
        url = env.get("BX_ALERT_WEBHOOK_URL", "").strip()
        if not url.startswith(("http://", "https://")):
            raise ConfigError("alerts.webhook = true needs BX_ALERT_WEBHOOK_URL (an http(s) URL) "
                              "in the environment or .env")
        register_secrets(url)
        out.append(WebhookChannel(url))
    if cfg.telegram:
        token = env.get("BX_TELEGRAM_BOT_TOKEN", "").strip()
        chat = env.get("BX_TELEGRAM_CHAT_ID", "").strip()
        if not token or not chat:
            raise ConfigError("alerts.telegram = true needs BX_TELEGRAM_BOT_TOKEN and BX_TELEGRAM_CHAT_ID "
                              "in the environment or .env")
        register_secrets(token, chat)
        out.append(TelegramChannel(token, chat, base_url=cfg.telegram_base_url))
    return out


def settings_from_config(cfg: Any) -> AlertSettings:
    return AlertSettings(retries=cfg.retries, dead_log_interval_s=float(cfg.dead_log_interval_s),
                         queue_size=cfg.queue_size)

