"""Alerts to the bot's owner: a generic JSON webhook and Telegram's Bot API.

``Alerter.send(kind, text, **data)`` never blocks and never raises: each channel has a
bounded queue and its own task that delivers with retries and backoff. A channel that
keeps failing is logged once per ``dead_log_interval_s`` (with how many alerts it dropped),
not once per alert. Secrets (the Telegram token and chat id, the webhook URL) are never
logged: errors are reported by channel name, exception type and HTTP status only.
"""

from executor.alerts.channels import Alert, Channel, TelegramChannel, WebhookChannel
from executor.alerts.dispatcher import Alerter, AlertSettings, channels_from_config

__all__ = ["Alert", "AlertSettings", "Alerter", "Channel", "TelegramChannel", "WebhookChannel",
           "channels_from_config"]
