"""Binance-USDT-M-compatible venue simulator: market model, wire-format messages, aiohttp server.

Start with ``python -m standins.venue_sim --host 127.0.0.1 --port 8765 --seed 42 --speed 1``.
See docs/venue.md for the served streams, endpoints, admin (fault / regime) API and replay layout.
"""
