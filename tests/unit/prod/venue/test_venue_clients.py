"""Unit tests of the prod.venue clients' pure parts: grouping under the cap, URL handling, log rate limit."""
from __future__ import annotations

import logging

import pytest

from prod.venue import VenueRestClient, VenueStreamClient, depth_stream, stream_name
from prod.venue.stream import RateLimitedLog


def test_streams_are_split_into_connections_under_the_cap_without_duplicates():
    streams = [f"s{k}usdt@depth5@500ms" for k in range(540)] + ["s0usdt@depth5@500ms"]
    c = VenueStreamClient("wss://fstream.binance.com/", streams, cap=200)
    assert [len(g) for g in c.groups] == [200, 200, 140]
    assert sum(c.groups, []) == streams[:540]
    assert c.ws_base == "wss://fstream.binance.com"
    assert c._url(c.groups[0][:2]) == "wss://fstream.binance.com/stream?streams=s0usdt@depth5@500ms/s1usdt@depth5@500ms"
    assert VenueStreamClient("ws://h:1/stream", ["a@bookTicker"]).ws_base == "ws://h:1"


def test_bad_client_arguments_are_rejected():
    with pytest.raises(ValueError):
        VenueStreamClient("ws://h:1", [])
    with pytest.raises(ValueError):
        VenueStreamClient("ws://h:1", ["a@bookTicker"], cap=0)
    with pytest.raises(ValueError):
        VenueRestClient("fapi.binance.com")


def test_stalled_streams_uses_the_injected_clock():
    now = [100.0]
    c = VenueStreamClient("ws://h:1", ["a@bookTicker", "b@bookTicker"], clock=lambda: now[0], stall_timeout_s=5)
    c.last_msg["a@bookTicker"] = 103.0
    now[0] = 104.5
    assert c.stalled_streams() == []
    now[0] = 106.0
    assert c.stalled_streams() == ["b@bookTicker"]
    assert c.stalled_streams(timeout_s=1.0) == ["a@bookTicker", "b@bookTicker"]


def test_rate_limited_log_emits_once_per_interval_and_counts_suppressed(caplog):
    now = [0.0]
    rl = RateLimitedLog(logging.getLogger("t"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        for _ in range(5):
            rl.warning("k", "bad frame")
        now[0] = 11.0
        rl.warning("k", "bad frame")
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == ["bad frame", "bad frame (4 similar suppressed)"]


def test_stream_name_helpers():
    assert depth_stream("BTCUSDT") == "btcusdt@depth5@500ms"
    assert depth_stream("ETHUSDT", 100) == "ethusdt@depth5@100ms"
    assert stream_name("SOLUSDT", "bookTicker") == "solusdt@bookTicker"
