"""Integration tests: the venue simulator process over real sockets, with prod.venue clients and raw websockets."""
from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import connect

from prod.venue.macro import FearGreedClient
from prod.venue import (BookTickerEvent, DepthEvent, RateLimitedError, TransientVenueError, VenueRequestError,
                        VenueRestClient, VenueStreamClient, VenueUnreachableError)
from tests.helpers import FIXTURES, Proc, free_port, port_open, running_venue, start_venue, wait_until

FIX = FIXTURES / "venue"
START_MS = 1_790_000_000_000
CAP = 6


def _start(tmp: Path, name: str, *args: str) -> tuple[Proc, int]:
    return start_venue(tmp, *args, name=name, seed=None)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with running_venue(tmp_path_factory.mktemp("venue"), "--speed", "1", "--stream-cap", str(CAP),
                       "--start-ms", str(START_MS), name="sim", seed=42) as pv:
        yield pv


def http_json(port: int, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"null")


async def await_until(pred, timeout: float, what: str):
    """Bounded async condition poll (the async twin of tests.helpers.wait_until)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def shape(x):
    if isinstance(x, dict):
        return {k: shape(v) for k, v in x.items() if not k.startswith("_")}
    if isinstance(x, list):
        return [shape(x[0])] if x else []
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, (int, float)):
        return "number"
    return "null" if x is None else "str"


@pytest.fixture(autouse=True)
def _clear_faults(sim):
    yield
    http_json(sim[1], "/sim/admin/fault", {"kind": "clear"})


# ---------------------------------------------------------------------------------------------- REST
@pytest.mark.parametrize("name", ["rest_depth.json", "rest_klines.json", "rest_premium_index.json",
                                  "rest_taker_long_short_ratio.json", "rest_dvol.json", "rest_fng.json",
                                  "rest_error_invalid_symbol.json"])
def test_rest_endpoints_answer_in_the_documented_shape(sim, name):
    fx = json.loads((FIX / name).read_text())
    status, headers, body = http_json(sim[1], fx["path"])
    assert status == fx.get("status", 200)
    assert shape(body) == shape(fx["body"]), name
    if fx["path"].startswith("/fapi"):
        assert int(headers["X-MBX-USED-WEIGHT-1M"]) >= 0


def test_exchange_info_lists_540_trading_perpetuals_with_filters(sim):
    status, _, body = http_json(sim[1], "/fapi/v1/exchangeInfo")
    assert status == 200
    perps = [s for s in body["symbols"] if s["status"] == "TRADING" and s["contractType"] == "PERPETUAL"
             and s["quoteAsset"] == "USDT"]
    assert len(perps) >= 540
    f = {x["filterType"]: x for x in perps[0]["filters"]}
    assert float(f["PRICE_FILTER"]["tickSize"]) > 0 and float(f["LOT_SIZE"]["stepSize"]) > 0


def test_rest_errors_use_venue_codes(sim):
    port = sim[1]
    assert http_json(port, "/fapi/v1/depth")[2]["code"] == -1102
    assert http_json(port, "/fapi/v1/klines?symbol=BTCUSDT&interval=7m")[2] == {"code": -1120, "msg": "Invalid interval."}
    assert http_json(port, "/fapi/v1/depth?symbol=BTCUSDT&limit=abc")[2]["code"] == -1100
    assert http_json(port, "/fapi/v1/depth?symbol=BTCUSDT&limit=7")[2]["code"] == -1130
    st, _, body = http_json(port, "/api/v2/public/get_volatility_index_data?currency=XYZ&start_timestamp=0&end_timestamp=1")
    assert st == 400 and body["error"]["code"] == -32602


def test_rest_client_typed_results_retry_after_and_timeouts(sim):
    port = sim[1]

    async def body():
        async with VenueRestClient(f"http://127.0.0.1:{port}", timeout_s=2.0, retries=2) as rest:
            perps = await rest.trading_perpetuals()
            assert len(perps) >= 540 and rest.used_weight >= 1
            kl = await rest.klines("ETHUSDT", "5m", limit=10)
            assert len(kl) == 10 and all(k.high >= k.low for k in kl)
            assert (await rest.premium_index())[0].mark_price > 0
            async with FearGreedClient(f"http://127.0.0.1:{port}", timeout_s=2.0) as fng:
                assert (await fng.fear_greed(3))[0].value >= 0
            with pytest.raises(VenueRequestError) as ei:
                await rest.depth("NOPEUSDT")
            assert ei.value.code == -1121
            # 429 with Retry-After 1: waits, retries, succeeds
            http_json(port, "/sim/admin/fault", {"kind": "rest_error", "status": 429, "count": 1, "retry_after": 1})
            t0 = time.monotonic()
            snap = await rest.depth("BTCUSDT", 5)
            assert snap.bids[0][0] < snap.asks[0][0]
            assert time.monotonic() - t0 >= 0.9 and rest.retried >= 1
            # 5xx twice: retried with backoff, then served
            before = rest.retried
            http_json(port, "/sim/admin/fault", {"kind": "rest_error", "status": 503, "count": 2, "retry_after": 0})
            assert (await rest.premium_index("BTCUSDT"))[0].symbol == "BTCUSDT"
            assert rest.retried == before + 2
            # 5xx beyond the retries: transient, but the venue answered (not "unreachable")
            http_json(port, "/sim/admin/fault", {"kind": "rest_error", "status": 500, "count": 3, "retry_after": 0})
            with pytest.raises(TransientVenueError) as e5:
                await rest.premium_index("BTCUSDT")
            assert not isinstance(e5.value, VenueUnreachableError) and "HTTP 500" in str(e5.value)
            # 418 with a Retry-After beyond the client's patience: raised, not waited
            rest.max_retry_after_s = 5
            http_json(port, "/sim/admin/fault", {"kind": "rest_error", "status": 418, "count": 1, "retry_after": 600})
            with pytest.raises(RateLimitedError) as ei2:
                await rest.depth("BTCUSDT", 5)
            assert ei2.value.status == 418 and ei2.value.retry_after_s == 600
        # REST delay beyond the timeout: transient error after the retries
        http_json(port, "/sim/admin/fault", {"kind": "rest_delay", "delay_ms": 1500, "duration_s": 30})
        async with VenueRestClient(f"http://127.0.0.1:{port}", timeout_s=0.3, retries=1,
                                   backoff_initial_s=0.01) as slow:
            with pytest.raises(VenueUnreachableError):       # no answer in time: a TransientVenueError
                await slow.depth("BTCUSDT", 5)
            assert slow.retried == 1
        # nothing listening: unreachable
        async with VenueRestClient(f"http://127.0.0.1:{free_port()}", retries=0) as gone:
            with pytest.raises(VenueUnreachableError):
                await gone.depth("BTCUSDT", 5)

    asyncio.run(body())


# ---------------------------------------------------------------------------------------------- websocket protocol
def test_ws_streams_send_the_documented_shapes(sim):
    port = sim[1]
    names = {"ws_depth5_500ms.json": "btcusdt@depth5@500ms", "ws_book_ticker.json": "btcusdt@bookTicker",
             "ws_agg_trade.json": "btcusdt@aggTrade", "ws_mark_price_1s.json": "btcusdt@markPrice@1s",
             "ws_mark_price_arr_1s.json": "!markPrice@arr@1s", "ws_kline_1m.json": "btcusdt@kline_1m"}

    async def body():
        url = f"ws://127.0.0.1:{port}/stream?streams=" + "/".join(names.values())
        seen: dict[str, object] = {}
        async with connect(url, max_size=1 << 24) as ws:
            deadline = time.monotonic() + 15
            while len(seen) < len(names) and time.monotonic() < deadline:
                env = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert set(env) == {"stream", "data"}
                seen.setdefault(env["stream"], env["data"])
        for fname, stream in names.items():
            assert stream in seen, f"no message on {stream}"
            assert shape(seen[stream]) == shape(json.loads((FIX / fname).read_text())["data"]), stream

    asyncio.run(body())


def test_subscribe_list_unsubscribe_cap_and_error_frames(sim):
    port = sim[1]

    async def body():
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            async def call(req):
                await ws.send(req if isinstance(req, str) else json.dumps(req))
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if isinstance(msg, dict) and ("result" in msg or "error" in msg):
                        return msg

            too_many = [f"{s}@bookTicker" for s in ("btcusdt", "ethusdt", "bnbusdt", "solusdt", "xrpusdt",
                                                    "dogeusdt", "adausdt")]
            r = await call({"method": "SUBSCRIBE", "params": too_many, "id": 1})
            assert r["id"] == 1 and r["error"]["code"] == 2 and "too many streams" in r["error"]["msg"]
            assert await call({"method": "LIST_SUBSCRIPTIONS", "id": 2}) == {"result": [], "id": 2}
            assert await call({"method": "SUBSCRIBE", "params": too_many[:CAP], "id": 3}) == {"result": None, "id": 3}
            assert len((await call({"method": "LIST_SUBSCRIPTIONS", "id": 4}))["result"]) == CAP
            assert await call({"method": "UNSUBSCRIBE", "params": too_many[:2], "id": 5}) == {"result": None, "id": 5}
            assert sorted((await call({"method": "LIST_SUBSCRIPTIONS", "id": 6}))["result"]) == sorted(too_many[2:CAP])
            raw = await asyncio.wait_for(ws.recv(), 5)         # raw /ws payloads carry no envelope
            assert json.loads(raw)["e"] == "bookTicker"
            assert (await call("{not json"))["error"]["code"] == 3
            assert (await call({"method": "FOO", "id": 7}))["error"]["code"] == 2
            assert (await call({"method": "SUBSCRIBE", "params": ["nopeusdt@bookTicker"], "id": 8}))["error"]["code"] == 2
            assert (await call({"method": "LIST_SUBSCRIPTIONS", "id": -1}))["error"]["code"] == 2
            doc = json.loads((FIX / "ws_subscribe_reply.json").read_text())
            assert shape(await call({"method": "LIST_SUBSCRIPTIONS", "id": 9})) == shape(doc["list_response"])
            assert shape(await call({"method": "SUBSCRIBE", "params": [], "id": 10})) == shape(doc["subscribe_response"])
            assert shape(await call({"method": "NOPE", "id": 11})) == shape(doc["error_response"])
            pong = await ws.ping(b"x")
            assert await asyncio.wait_for(pong, 5) is not None
        url = f"ws://127.0.0.1:{port}/stream?streams=" + "/".join(too_many)
        async with connect(url) as ws:
            err = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert err["error"]["code"] == 2
            with pytest.raises(websockets.exceptions.ConnectionClosed) as ei:
                await asyncio.wait_for(ws.recv(), 5)
            assert ei.value.rcvd.code == 1008

    asyncio.run(body())


# ---------------------------------------------------------------------------------------------- stream client
def _client_session(port: int, streams: list[str], scenario, **kw):
    async def body():
        events: list = []
        client = VenueStreamClient(f"ws://127.0.0.1:{port}", streams, events.append, cap=CAP,
                                   backoff_initial_s=0.1, backoff_max_s=0.5, **kw)
        task = asyncio.create_task(client.run())
        try:
            await await_until(lambda: client.all_connected() and len(events) > 3, 15, "client connected")
            async with aiohttp.ClientSession() as http:
                async def admin(path, payload):
                    async with http.post(f"http://127.0.0.1:{port}{path}", json=payload) as r:
                        assert r.status == 200, await r.text()
                        return await r.json()
                await scenario(client, events, admin)
        finally:
            await client.stop()
            await asyncio.wait_for(task, 10)
    asyncio.run(body())


def test_client_splits_streams_under_the_cap_and_subscribes_all(sim):
    port = sim[1]
    syms = ["btcusdt", "ethusdt", "bnbusdt", "solusdt", "xrpusdt", "dogeusdt", "adausdt"]
    streams = [f"{s}@depth5@500ms" for s in syms] + [f"{s}@bookTicker" for s in syms]

    async def scenario(client, events, admin):
        assert len(client.groups) == 3 and all(len(g) <= CAP for g in client.groups)
        await await_until(lambda: {e.symbol for e in events if isinstance(e, DepthEvent)}
                           == {s.upper() for s in syms}, 10, "depth from every symbol")
        assert client.stats.errors == 0 and client.stats.malformed == 0

    _client_session(port, streams, scenario, batch=2)


def test_client_reconnects_and_resubscribes_after_drop_all(sim):
    streams = ["btcusdt@depth5@100ms", "ethusdt@bookTicker"]

    async def scenario(client, events, admin):
        r = await admin("/sim/admin/fault", {"kind": "drop_all", "refuse_s": 0.6})
        assert r["result"]["dropped"] >= 1
        await await_until(lambda: client.stats.reconnects >= 1 and client.all_connected(), 10, "reconnect")
        assert "503" in client.stats.last_error      # attempts during the refusal window failed and backed off
        n = len(events)
        await await_until(lambda: len(events) > n + 5, 5, "events after reconnect")
        assert {type(e) for e in events[n:]} >= {DepthEvent}

    _client_session(sim[1], streams, scenario)


def test_client_detects_stalled_stream_and_stalled_connection(sim):
    streams = ["btcusdt@depth5@100ms", "ethusdt@depth5@100ms"]

    async def scenario(client, events, admin):
        await admin("/sim/admin/fault", {"kind": "stall", "stream": "btcusdt@depth5@100ms", "duration_s": 2})
        await await_until(lambda: client.stalled_streams(0.6) == ["btcusdt@depth5@100ms"], 5, "one stream stalled")
        await await_until(lambda: not client.stalled_streams(0.6), 5, "stream recovered")
        await admin("/sim/admin/fault", {"kind": "stall", "stream": "*", "duration_s": 1.8})
        await await_until(lambda: client.stats.stalls >= 1, 5, "connection stall detected")
        n = len(events)
        await await_until(lambda: len(events) > n + 5 and client.all_connected(), 8, "data after stall")

    _client_session(sim[1], streams, scenario, stall_timeout_s=1.0)


def test_crossed_books_and_garbage_frames_are_dropped_and_counted(sim):
    streams = ["btcusdt@depth5@100ms", "btcusdt@bookTicker"]

    async def scenario(client, events, admin):
        await admin("/sim/admin/fault", {"kind": "crossed", "symbol": "BTCUSDT", "duration_s": 1.0})
        await admin("/sim/admin/fault", {"kind": "garbage", "count": 5})
        await await_until(lambda: client.stats.crossed >= 2 and client.stats.malformed >= 7, 8, "faults counted")
        n = len(events)
        await await_until(lambda: len(events) > n + 3, 5, "clean data after faults")
        assert client.all_connected()
        for e in events:
            if isinstance(e, DepthEvent):
                assert e.best_bid < e.best_ask
            elif isinstance(e, BookTickerEvent):
                assert e.bid_price < e.ask_price

    _client_session(sim[1], streams, scenario)


def test_client_counts_sequence_gaps_when_a_depth_message_is_lost(sim):
    streams = ["btcusdt@depth5@100ms", "ethusdt@depth5@100ms"]

    async def scenario(client, events, admin):
        assert client.stats.gaps == 0
        await admin("/sim/admin/fault", {"kind": "gap", "symbol": "BTCUSDT", "count": 2})
        await await_until(lambda: client.stats.gaps >= 1, 5, "gap detected")
        assert client.all_connected()

    _client_session(sim[1], streams, scenario)


def test_sigterm_stops_the_simulator_cleanly(tmp_path):
    proc, port = _start(tmp_path, "term", "--symbols", "60")
    proc.p.terminate()
    assert proc.p.wait(15) == 0
    assert not port_open(port)


# ---------------------------------------------------------------------------------------------- regime / determinism
def test_regime_can_be_forced_and_the_timeline_is_queryable(sim):
    port = sim[1]
    st, _, body = http_json(port, "/sim/admin/regime", {"regime": "stress"})
    assert st == 200 and body["current"] == "stress" and body["forced"]
    _, _, reg = http_json(port, "/sim/regime")
    assert reg["timeline"][-1]["regime"] == "stress" and reg["timeline"][-1]["end_ms"] is None
    assert all(set(e) >= {"start_ms", "end_ms", "regime"} for e in reg["timeline"])
    st, _, body = http_json(port, "/sim/admin/regime", {"regime": "calm"})
    assert body["current"] == "calm" and body["timeline"][-2]["end_ms"] == body["timeline"][-1]["start_ms"]
    wait_until(lambda: "regime -> stress" in sim[0].log_text(), 5, what="regime change logged")
    assert http_json(port, "/sim/admin/regime", {"regime": "panic"})[0] == 400
    assert http_json(port, "/sim/admin/fault", {"kind": "meteor"})[0] == 400


def test_same_seed_processes_send_identical_messages(tmp_path):
    args = ("--seed", "7", "--speed", "1", "--start-ms", str(START_MS), "--symbols", "100")
    a, pa = _start(tmp_path, "a", *args)
    b, pb = _start(tmp_path, "b", *args)
    streams = "btcusdt@depth5@100ms/ethusdt@bookTicker/solusdt@depth5@100ms"

    got: list[dict] = [{}, {}]

    def enough() -> bool:
        return len(set(got[0]) & set(got[1])) >= 30

    async def collect(port, out):
        async with connect(f"ws://127.0.0.1:{port}/stream?streams={streams}") as ws:
            t_end = time.monotonic() + 15.0      # the two processes started ~1 s apart: wait for overlap
            while time.monotonic() < t_end and not enough():
                raw = await asyncio.wait_for(ws.recv(), 5)
                env = json.loads(raw)
                out[(env["stream"], env["data"]["u"])] = raw

    async def body():
        await asyncio.gather(collect(pa, got[0]), collect(pb, got[1]))
    try:
        asyncio.run(body())
    finally:
        a.stop()
        b.stop()
    ma, mb = got
    common = set(ma) & set(mb)
    assert len(common) >= 20, (len(ma), len(mb), len(common))
    assert all(ma[k] == mb[k] for k in common)


# ---------------------------------------------------------------------------------------------- replay / speed
def test_replay_serves_the_recorded_sample_at_speed(tmp_path):
    proc, port = _start(tmp_path, "replay", "--replay", str(FIX / "replay"), "--speed", "30")
    rows = [list(map(float, ln.split(",")[:5])) for ln in (FIX / "replay" / "BTCUSDT.csv").read_text().split()]
    try:
        _, _, info = http_json(port, "/fapi/v1/exchangeInfo")
        assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT"]
        _, _, s1 = http_json(port, "/sim/status")
        w1 = time.monotonic()

        async def body():
            got = []
            async with connect(f"ws://127.0.0.1:{port}/ws/btcusdt@bookTicker") as ws:
                while len(got) < 40:
                    got.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            return got
        ticks = asyncio.run(body())
        _, _, s2 = http_json(port, "/sim/status")
        ratio = (s2["market_time_ms"] - s1["market_time_ms"]) / 1000 / (time.monotonic() - w1)
        assert 10 < ratio < 40, ratio
        for t in ticks:
            row = max((r for r in rows if r[0] <= t["E"]), key=lambda r: r[0])
            mid = (float(t["b"]) + float(t["a"])) / 2
            assert row[3] - 50 <= mid <= row[2] + 50, (t, row)     # within the recorded minute's range (+ spread)
        assert ticks[0]["E"] >= int(rows[0][0])
        # request weight: depth limit=1000 weighs 20; the 2400/minute budget runs out -> 429 + Retry-After
        wait_until(lambda: time.time() % 60 < 45, 20, what="not near a minute boundary (weights reset per minute)")
        for k in range(200):  # noqa: B007 - k is the count checked after the loop
            st, headers, body = http_json(port, "/fapi/v1/depth?symbol=BTCUSDT&limit=1000")
            if st != 200:
                break
            assert int(headers["X-MBX-USED-WEIGHT-1M"]) <= 2400
        assert st == 429 and body["code"] == -1003 and 0 < int(headers["Retry-After"]) <= 60
        assert 100 <= k <= 121
        # the test-isolation reset: every IP's budget for the minute back to 0
        _, _, reset = http_json(port, "/sim/admin/fault", {"kind": "reset_weight"})
        assert reset["ok"] and reset["result"]["weights_reset"] >= 1, reset
        st, headers, _ = http_json(port, "/fapi/v1/depth?symbol=BTCUSDT&limit=1000")
        assert st == 200 and int(headers["X-MBX-USED-WEIGHT-1M"]) == 20, (st, headers)
    finally:
        proc.stop()


def test_bad_replay_dir_exits_nonzero_with_a_clear_line(tmp_path):
    proc = Proc("standins.venue_sim", ["--port", str(free_port()), "--replay", str(tmp_path / "none")],
                tmp_path / "bad.log").start()
    assert proc.p.wait(60) != 0
    assert "does not exist" in proc.log_text()
