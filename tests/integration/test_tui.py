"""The TUI against the real embedded member: listener-fed panels, garbage payloads, refresh, member restart."""
from __future__ import annotations

import asyncio
import json
import time

from observability import state as S
from observability.tui import DolphinTui
from prod.bus import maps
from prod.runtime import Bus
from tests.helpers import Proc, free_port, port_open, wait_until


async def _wait_for(pilot, pred, timeout: float, what: str):
    """Bounded wait on a condition while the app keeps running (the async twin of wait_until)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _plain(app: DolphinTui, panel: str) -> str:
    return app.query_one(f"#panel-{panel}").plain


def _bus(app: DolphinTui) -> str:
    return app.query_one("#bus").plain


def _scan(n: int, now: float) -> dict:
    mwr = {f"w{w}": {"lambda_max": 0.1 * (i + 1), "velocity": 0.001, "eigengap": 0.05, "instability": 0.01}
           for i, w in enumerate(S.WINDOWS)}
    return {"scan_number": n, "timestamp_ns": int(now * 1e9), "timestamp": "2026-11-22T00:00:00+00:00",
            "bridge_ts": now, "vel_div": -0.0345, "w50_velocity": 0.002, "w150_velocity": 0.001,
            "w300_velocity": 0.0, "w750_velocity": 0.0365, "instability_50": 0.01, "instability_150": 0.02,
            "assets": ["BTCUSDT", "ETHUSDT"], "asset_prices": [1.0, 2.0], "warm_windows": [50, 150],
            "n_assets": 2, "multi_window_results": mwr}


def _writer(settings, name: str) -> Bus:
    b = Bus(settings, name).start()
    assert b.wait_connected(10)
    return b


def _put(bus: Bus, map_name: str, key: str, payload: dict | str) -> None:
    """Publish ``payload`` through its topic, or write a raw string as is (garbage on purpose)."""
    if isinstance(payload, str):
        bus.map(map_name).blocking().set(key, payload)
    else:
        bus.publish(maps.topic_for(map_name, key), payload, key)


def test_panels_follow_the_maps_and_garbage_is_an_error_line(hz_member, settings_for):
    _, port = hz_member
    settings = settings_for(hz_port=port)
    writer = _writer(settings, "tui-test-writer")
    now = time.time()
    today = time.strftime("%Y-%m-%d", time.gmtime(now))
    # one value present before the TUI starts: must come from the initial read
    _put(writer, maps.SAFETY, maps.KEY_LATEST, {"posture": "STALKER", "Rm": 0.62, "ts": now,
                                                "sensors": {"cat1": 1.0, "dvol": 55.5}})

    async def scenario() -> None:
        app = DolphinTui(settings, connect_timeout=2.0, retry_s=0.2)
        async with app.run_test(size=(220, 70)) as pilot:
            await _wait_for(pilot, lambda: _bus(app).startswith("bus: connected"), 15, "bus connected")
            await _wait_for(pilot, lambda: "posture STALKER" in _plain(app, S.SAFETY), 5, "initial read")

            def write_all() -> None:
                t = time.time()
                _put(writer, maps.FEATURES, maps.KEY_EIGEN_SCAN, _scan(4242, t))
                _put(writer, maps.FEATURES, maps.KEY_ACB_BOOST, {"boost": 1.2345, "beta": 0.8, "signals": 1.5,
                                                                 "computed_at": t})
                _put(writer, maps.FEATURES, maps.KEY_EXF, {"_pushed_at": t, "indicators": {
                    "funding_btc": {"value": -0.0001, "status": "OK", "age_s": 3.0},
                    "dvol_btc": {"value": 61.25, "status": "STALE", "age_s": 900.0}}})
                _put(writer, maps.FEATURES, maps.KEY_OBF_UNIVERSE, {"_snapshot_utc": t, "_n_assets": 3, "assets": {
                    "AAAUSDT": {"spread_bps": 1.0}, "ZZZUSDT": {"spread_bps": 37.5}, "MMMUSDT": {"spread_bps": 4.0}}})
                _put(writer, maps.META_HEALTH, maps.KEY_LATEST, {
                    "rm_meta": 0.975, "status": "GREEN", "timestamp": t,
                    "sensors": {"m1_data_infra": 1.0, "m5_coherence": 0.75},
                    "services": {"scanner": "RUNNING", "exf_fetcher": "STOPPED"}})
                _put(writer, maps.HEARTBEAT, "scanner", {"service": "scanner", "ts": t})
                _put(writer, maps.HEARTBEAT, "obf_universe", {"service": "obf_universe", "ts": t - 300})
                _put(writer, maps.PNL_BLUE, today, {"date": today, "strategy": "blue", "capital": 25123.5,
                                                    "pnl": 123.5, "trades": 7, "updated_at": t})
                _put(writer, maps.STATE_BLUE, maps.KEY_LATEST, {
                    "strategy": "blue", "capital": 25123.5, "updated_at": t, "posture": "APEX",
                    "account": {"position": {"symbol": "ETHUSDT", "direction": -1, "entry_price": 3012.5,
                                           "notional": 5000.0, "entry_ts": t - 60}}})

            await asyncio.to_thread(write_all)
            checks = {S.SCAN: ["scan #4242", "vel_div -0.034500", "w750 0.4000", "warm windows 50,150 (2/4)"],
                      S.ACB: ["boost 1.2345", "beta 0.8000", "signals 1.50"],
                      S.EXF: ["funding_btc", "dvol_btc", "STALE"],
                      S.OBF: ["assets 3", "ZZZUSDT", "37.50 bps"],
                      S.META: ["rm_meta 0.975", "[GREEN]", "M1 DATA_INFRA", "exf_fetcher", "STOPPED"],
                      S.HEARTBEAT: ["scanner", "obf_universe", "age 5m"],
                      S.PNL: [today, "capital 25,123.50", "pnl +123.50", "trades 7"],
                      S.POSITION: ["position: SHORT ETHUSDT @ 3012.5"]}
            for panel, needles in checks.items():
                await _wait_for(pilot, lambda p=panel, ns=needles: all(n in _plain(app, p) for n in ns), 5,
                                f"{panel} panel showing {needles}")
            obf_lines = _plain(app, S.OBF).splitlines()
            assert obf_lines[1].startswith("ZZZUSDT"), obf_lines          # worst spread first
            styles = {ln.text.split()[0]: ln.style for ln in app.state.lines(S.HEARTBEAT, time.time())}
            assert (styles["obf_universe"], styles["scanner"]) == (S.BAD, S.OK)   # the member beats too

            # garbage: an error line naming the source; the last good values stay; the app keeps running
            await asyncio.to_thread(_put, writer, maps.FEATURES, maps.KEY_ACB_BOOST, "{not json")
            await asyncio.to_thread(_put, writer, maps.HEARTBEAT, "broken", json.dumps({"service": "broken"}))
            await _wait_for(pilot, lambda: "ERROR DOLPHIN_FEATURES['acb_boost']: malformed JSON"
                            in _plain(app, S.ACB), 5, "acb error line")
            await _wait_for(pilot, lambda: "missing field 'ts'" in _plain(app, S.HEARTBEAT), 5, "heartbeat error")
            assert "boost 1.2345" in _plain(app, S.ACB)
            assert app.is_running

            # a good value clears the error
            await asyncio.to_thread(_put, writer, maps.FEATURES, maps.KEY_ACB_BOOST,
                                    {"boost": 1.5, "beta": 0.5, "computed_at": time.time()})
            await _wait_for(pilot, lambda: "boost 1.5000" in _plain(app, S.ACB)
                            and "ERROR" not in _plain(app, S.ACB), 5, "acb error cleared")

            # a removed heartbeat leaves its panel (removal listener registered on the bus's client)
            await asyncio.to_thread(lambda: writer.map(maps.HEARTBEAT).blocking().remove("obf_universe"))
            await _wait_for(pilot, lambda: "obf_universe" not in _plain(app, S.HEARTBEAT), 5, "heartbeat removed")

            # r: one read of every key
            reads = app.feed.reads
            await pilot.press("r")
            await _wait_for(pilot, lambda: app.feed.reads > reads, 5, "forced refresh")
            await pilot.press("q")
        assert not app.is_running

    try:
        asyncio.run(scenario())
    finally:
        writer.close()


def test_member_loss_shows_disconnected_and_recovers(hz_member, settings_for, tmp_path):
    proc, port = hz_member
    settings = settings_for(hz_port=port)

    async def scenario() -> None:
        app = DolphinTui(settings, connect_timeout=1.0, retry_s=0.2)
        async with app.run_test(size=(200, 60)) as pilot:
            await _wait_for(pilot, lambda: _bus(app).startswith("bus: connected"), 15, "bus connected")
            await asyncio.to_thread(proc.kill)
            await _wait_for(pilot, lambda: _bus(app).startswith("bus: disconnected"), 10, "bus: disconnected")
            assert app.is_running
            again = Proc("standins.hz_member", ["--host", "127.0.0.1", "--port", str(port),
                                                "--cluster-name", "dolphin"], tmp_path / "hz_member2.log").start()
            try:
                await asyncio.to_thread(wait_until, lambda: port_open(port), 20, 0.05, "member restarted")
                await _wait_for(pilot, lambda: _bus(app).startswith("bus: connected"), 15, "bus reconnected")
                writer = await asyncio.to_thread(_writer, settings, "tui-test-writer2")
                try:
                    await asyncio.to_thread(_put, writer, maps.HEARTBEAT, "scanner",
                                            {"service": "scanner", "ts": time.time()})
                    await _wait_for(pilot, lambda: "scanner" in _plain(app, S.HEARTBEAT), 10,
                                    "heartbeat after reconnect")
                finally:
                    writer.close()
            finally:
                again.stop()

    asyncio.run(scenario())


def test_started_before_the_member_it_waits_then_connects_by_itself(settings_for, tmp_path):
    port = free_port()
    settings = settings_for(hz_port=port)

    async def scenario() -> None:
        app = DolphinTui(settings, connect_timeout=0.5, retry_s=0.1)
        async with app.run_test(size=(200, 60)) as pilot:
            await _wait_for(pilot, lambda: "unreachable" in _bus(app), 10, "first connect attempt failed")
            assert _bus(app).startswith("bus: disconnected")
            member = Proc("standins.hz_member", ["--host", "127.0.0.1", "--port", str(port),
                                                 "--cluster-name", "dolphin"], tmp_path / "late_member.log").start()
            try:
                await _wait_for(pilot, lambda: _bus(app).startswith("bus: connected"), 20, "bus connected")
                assert app.feed.connects >= 1
                writer = await asyncio.to_thread(_writer, settings, "tui-test-writer3")
                try:
                    await asyncio.to_thread(_put, writer, maps.SAFETY, maps.KEY_LATEST,
                                            {"posture": "HIBERNATE", "Rm": 0.0, "ts": time.time()})
                    await _wait_for(pilot, lambda: "posture HIBERNATE" in _plain(app, S.SAFETY), 10, "safety shown")
                finally:
                    writer.close()
            finally:
                member.stop()

    asyncio.run(scenario())
