"""obf_universe against the real venue simulator and embedded member (real websockets, real client)."""
from __future__ import annotations

import json
import math
import urllib.request

import pyarrow.parquet as pq

from prod.bus import maps
from prod.runtime import Bus, result_within
from tests.helpers import Proc, free_port, port_open, wait_until

FAST = ["--warmup-s", "2", "--bar-s", "0.5", "--snapshot-s", "2", "--parquet-s", "4", "--file-s", "0.5",
        "--heartbeat-s", "1", "--stall-timeout-s", "2"]


def _admin(vport: int, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{vport}{path}",
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"},
                                 method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _obf(tmp_path, hz_port, vport, *extra, name="obf"):
    return Proc("services.obf_universe",
                ["--hz-members", f"127.0.0.1:{hz_port}", "--venue-ws", f"ws://127.0.0.1:{vport}",
                 "--venue-rest", f"http://127.0.0.1:{vport}", "--data-dir", str(tmp_path / "data"), *FAST, *extra],
                tmp_path / f"{name}.log").start()


def _file(tmp_path) -> dict:
    return json.loads((tmp_path / "data" / "ob_cache" / "latest_ob_features.json").read_text())


def _stats(tmp_path) -> dict:
    return _file(tmp_path)["_stats"]


def _bus(settings, name="t_obf") -> Bus:
    bus = Bus(settings, name, backoff_s=(0.1, 0.5)).start()
    assert bus.wait_connected(30), "test bus did not connect"
    return bus


def _shard(bus: Bus, sym: str):
    return bus.get(maps.ob_topic(sym), sym)


def _n_shard_entries(bus: Bus) -> int:
    return sum(result_within(bus.map(m).size(), 5) for m in maps.SHARD_MAPS)


def test_universe_features_faults_stall_and_stress(hz_member, venue, tmp_path, settings_for):
    _, hz_port = hz_member
    _, vport = venue
    n_venue = len([s for s in _admin(vport, "/fapi/v1/exchangeInfo")["symbols"]
                   if s["status"] == "TRADING" and s["quoteAsset"] == "USDT"
                   and s.get("contractType") == "PERPETUAL"])
    assert n_venue >= 540
    proc = _obf(tmp_path, hz_port, vport)
    bus = _bus(settings_for(hz_port=hz_port))
    try:
        # right number of connections, each under the cap
        st = wait_until(lambda: (s := _stats(tmp_path))["connected"] == 3 and s["n_assets_with_book"] == n_venue
                        and s["published"] and s, 40, what="3 connections and a book for every symbol")
        assert st["connections"] == [200, 200, n_venue - 400]
        assert _admin(vport, "/sim/status")["connections"] == 3

        # shard entries decode, are routed by sum-of-ord and their numbers agree with their own book
        assert maps.shard_map("BTCUSDT") == f"DOLPHIN_FEATURES_SHARD_{sum(map(ord, 'BTCUSDT')) % 10:02d}"
        p = wait_until(lambda: _shard(bus, "BTCUSDT"), 20, what="BTCUSDT in its shard")
        mid = (p.best_bid + p.best_ask) / 2
        assert p.symbol == "BTCUSDT" and p.best_ask > p.best_bid
        assert math.isclose(p.spread_bps, (p.best_ask - p.best_bid) / mid * 1e4, rel_tol=1e-12)
        assert 0 <= p.depth_quality <= 1 and 0 < p.fill_probability <= 1 and -1 <= p.imbalance <= 1
        assert p.extra["n_bid_levels"] == 5 and p.extra["n_ask_levels"] == 5 and p.extra["recv_ts"] == p.ts
        assert p.written_at >= p.ts and p.imbalance_ma5 is not None and p.stale is False
        wait_until(lambda: _n_shard_entries(bus) == n_venue, 20, what="every symbol in the shards")
        uni = wait_until(lambda: bus.get(maps.OBF_UNIVERSE), 20, what="obf_universe_latest")
        assert uni.n_assets == n_venue and "BTCUSDT" in uni.assets and uni.stats["connected"] == 3

        # crossed book and garbage frames: dropped and counted, never published
        _admin(vport, "/sim/admin/fault", {"kind": "crossed", "symbol": "ETHUSDT", "duration_s": 3})
        _admin(vport, "/sim/admin/fault", {"kind": "garbage", "count": 5})
        wait_until(lambda: (s := _stats(tmp_path))["crossed_books"] >= 1 and s["garbage_frames"] >= 5, 20,
                   what="crossed and garbage frames counted")
        for _ in range(5):
            e = _shard(bus, "ETHUSDT")
            assert e.best_ask > e.best_bid
        assert "crossed book" in proc.log_text() and "malformed frame" in proc.log_text()

        # stalled streams: detected, reconnected, flowing again
        books0 = _stats(tmp_path)["books"]
        _admin(vport, "/sim/admin/fault", {"kind": "stall", "stream": "*", "duration_s": 3})
        wait_until(lambda: (s := _stats(tmp_path))["stalls"] >= 1 and s["reconnects"] >= 1, 20,
                   what="stall detected and reconnect")
        wait_until(lambda: (s := _stats(tmp_path))["connected"] == 3 and s["books"] > books0 + 1000, 30,
                   what="books flowing again after the stall")
        assert "STALL" in proc.log_text()
        # one silent stream on a live connection: the per-symbol watchdog reconnects its connection
        _admin(vport, "/sim/admin/fault", {"kind": "stall", "stream": "btcusdt@depth5@500ms", "duration_s": 4})
        wait_until(lambda: _stats(tmp_path)["symbol_stalls"] >= 1, 20, what="per-symbol stall detected")
        assert "symbol(s) without updates" in proc.log_text()

        # the venue drops every connection: reconnected and resubscribed by itself
        wait_until(lambda: _admin(vport, "/sim/status")["connections"] == 3 and _stats(tmp_path)["connected"] == 3,
                   20, what="all connections up before drop_all")
        rec0 = _stats(tmp_path)["reconnects"]
        assert _admin(vport, "/sim/admin/fault", {"kind": "drop_all"})["result"]["dropped"] == 3
        wait_until(lambda: (s := _stats(tmp_path))["reconnects"] >= rec0 + 3 and s["connected"] == 3, 30,
                   what="reconnect after drop_all")
        wait_until(lambda: _admin(vport, "/sim/status")["streams"] == n_venue, 10, what="resubscribed")

        # stress: books thin → withdrawal stress, regime_signal +1, cascades
        calm = wait_until(lambda: (s := _stats(tmp_path))["n_macro_assets"] >= n_venue // 2 and s, 20,
                          what="macro warm")
        assert calm["regime_signal"] <= 0
        _admin(vport, "/sim/admin/regime", {"regime": "stress", "hold_s": 60, "settle": True})
        stressed = wait_until(lambda: (s := _stats(tmp_path))["regime_signal"] == 1 and s["cascade_count"] > 0
                              and s["withdrawal_stress"] > 0.5 and s, 20, what="regime_signal +1 under stress")
        assert calm["withdrawal_stress"] < 0.25
        assert stressed["cascade_count"] > calm["cascade_count"]
        assert wait_until(lambda: _shard(bus, "SOLUSDT").regime_signal == 1, 10, what="SOLUSDT sees the stress")

        # Hive Parquet archive
        parts = wait_until(lambda: list((tmp_path / "data" / "ob_universe").glob("date=*/part-*.parquet")), 20,
                           what="a parquet part")
        t = pq.read_table(parts[0])
        assert t.num_rows >= n_venue and {"symbol", "spread_bps", "imbalance_ma5"} <= set(t.column_names)
        hb = bus.get(maps.HEARTBEATS, "obf_universe")
        assert hb.service == "obf_universe" and hb.pid == proc.p.pid and hb.extra["breaker"] == "CLOSED"
    finally:
        proc.stop()
        bus.close()
    assert "stopped cleanly" in proc.log_text()


def test_breaker_opens_when_member_dies_and_closes_when_it_returns(venue, tmp_path, settings_for):
    _, vport = venue
    hz_port = free_port()
    member_args = ["--host", "127.0.0.1", "--port", str(hz_port), "--cluster-name", "dolphin"]
    member = Proc("standins.hz_member", member_args, tmp_path / "hz1.log").start()
    wait_until(lambda: port_open(hz_port), 30, what="member 1")
    proc = _obf(tmp_path, hz_port, vport, "--max-symbols", "60", "--breaker-base-s", "0.5", "--breaker-max-s", "2",
                "--write-timeout-s", "1", "--warmup-s", "4")
    member2 = None
    try:
        # warm-up: the fallback file exists (books are flowing) but nothing is published yet
        first = wait_until(lambda: (f := _file(tmp_path))["_n_assets"] > 0 and f, 30, what="first fallback file")
        assert first["_published"] is False
        bus1 = _bus(settings_for(hz_port=hz_port), "t_obf1")
        try:
            assert _n_shard_entries(bus1) == 0
        finally:
            bus1.close()
        wait_until(lambda: _stats(tmp_path)["published"] and _stats(tmp_path)["bus_writes"] > 5, 40,
                   what="publishing to member 1")
        member.kill()
        st = wait_until(lambda: (s := _stats(tmp_path))["breaker"]["state"] in ("OPEN", "HALF_OPEN")
                        and s, 40, what="breaker open")
        assert st["breaker"]["opened"] >= 1
        t_open = _file(tmp_path)["_snapshot_utc"]
        wait_until(lambda: _file(tmp_path)["_snapshot_utc"] > t_open + 1, 10, what="file fallback keeps updating")
        assert _file(tmp_path)["_n_assets"] == 60
        assert "circuit breaker OPENED" in proc.log_text()
        member2 = Proc("standins.hz_member", member_args, tmp_path / "hz2.log").start()
        wait_until(lambda: port_open(hz_port), 30, what="member 2 on the same port")
        wait_until(lambda: (s := _stats(tmp_path))["breaker"]["state"] == "CLOSED" and s["breaker"]["closed"] >= 1,
                   60, what="breaker closed again")
        bus2 = _bus(settings_for(hz_port=hz_port), "t_obf2")
        try:
            wait_until(lambda: _n_shard_entries(bus2) == 60, 20, what="all 60 assets rewritten to the new member")
            # the per-bar OB macro resumes too (it never takes the breaker's half-open probe)
            macro = wait_until(lambda: bus2.get(maps.OB_MACRO), 20, what="the OB macro on the new member")
            assert macro.n_assets > 0 and -1.0 <= macro.market_imbalance <= 1.0
        finally:
            bus2.close()
        assert proc.p.poll() is None            # recovered without a restart
    finally:
        proc.stop()
        member.stop()
        if member2:
            member2.stop()
