"""Adapters between the bot and Binance (via python-binance and websockets)."""
