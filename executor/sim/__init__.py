"""The embedded exchange: a Binance-compatible server on 127.0.0.1 for paper trading and tests.

``SimExchange`` holds the ground truth (accounts, books, orders, trades, listenKeys) and
one clock; ``SimServer`` exposes it over HTTP and WebSocket on five listeners, one per
Binance host (spot REST, spot streams, spot WS API, futures REST, futures streams).
"""
