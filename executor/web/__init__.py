"""The bot's local web server: JSON API, dashboard, control and Prometheus metrics.

``server.WebServer`` (aiohttp, inside the bot's event loop) serves ``/api/v1/...``
(``api``), ``/metrics``, and the dashboard page from ``static/``; ``auth`` owns the bearer
token and the checks every request passes. Off by default (``[web] enabled`` or ``--web``).
"""
