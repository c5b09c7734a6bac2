"""Bad and out-of-order user-stream input through the real parser and ExecutionClient (no network needed)."""
from __future__ import annotations

import json

import orjson
import pytest

from prod.execution import Credentials, ExecutionClient, Order, OrderStatus
from prod.execution.rest import OrderRestClient


def _client() -> ExecutionClient:
    events: list = []
    c = ExecutionClient(OrderRestClient("http://127.0.0.1:1", Credentials("k", "s")), "ws://127.0.0.1:1",
                        on_order=lambda e, d: events.append((e, d["status"], d["filled_qty"])))
    c.events = events
    o = Order("DLP-a", "ETHUSDT", "SELL", "MARKET", 2.0)
    c.orders[o.client_id] = o
    return c


def _ev(status: str, tid: int, last: str, cum: str, cid: str = "DLP-a", t: int = 10) -> bytes:
    return orjson.dumps({"e": "ORDER_TRADE_UPDATE", "E": t, "T": t, "o": {
        "s": "ETHUSDT", "c": cid, "S": "SELL", "o": "MARKET", "f": "GTC", "q": "2", "p": "0", "ap": "100",
        "x": "TRADE", "X": status, "i": 55, "l": last, "z": cum, "L": "100", "N": "USDT", "n": "-0.05",
        "T": t, "t": tid, "m": False, "R": False, "rp": "0"}})


def test_out_of_order_events_end_filled_with_each_fill_once():
    c = _client()
    c.stream._handle(_ev("FILLED", 2, "1", "2", t=20))
    c.stream._handle(_ev("PARTIALLY_FILLED", 1, "1", "1", t=10))      # late: the fill counts, the status does not
    c.stream._handle(_ev("FILLED", 2, "1", "2", t=20))                # duplicate
    o = c.orders["DLP-a"]
    assert o.status == OrderStatus.FILLED and o.filled_qty == 2.0 and len(o.fills) == 2
    assert c.stats.stale == 1 and [e for e, *_ in c.events].count("FILL") == 2


def test_fill_beyond_the_order_and_unknown_ids_are_refused_and_counted():
    c = _client()
    c.stream._handle(_ev("FILLED", 9, "3", "3"))                       # 3 filled of an order for 2
    c.stream._handle(_ev("FILLED", 1, "1", "1", cid="DLP-unknown"))
    o = c.orders["DLP-a"]
    assert o.filled_qty == 0 and o.status == OrderStatus.PENDING_NEW
    assert c.stats.bad_fills == 1 and c.stats.unknown_client_id == 1
    assert c._track["DLP-a"].needs_check                              # the poller re-reads it from the venue


@pytest.mark.parametrize("raw", [b"nope", b"[1]", b'{"e":"ORDER_TRADE_UPDATE","o":{}}',
                                 b'{"e":"ACCOUNT_UPDATE","E":1,"a":{"P":["x"]}}',
                                 json.dumps({"e": "ORDER_TRADE_UPDATE", "o": {"x": "TRADE", "l": "NaN"}}).encode()])
def test_malformed_frames_never_reach_the_orders(raw):
    c = _client()
    c.stream._handle(raw)
    assert c.stream.malformed == 1 and c.stream.events == 0 and c.events == []
