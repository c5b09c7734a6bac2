"""The web console end to end: real embedded member, the console process, headless Debian Chromium."""
from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from prod.bus import maps
from prod.bus.client import make_client
from tests.helpers import REPO_ROOT, Proc, free_port, start_listening, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _put(client, map_name: str, key: str, payload: dict | str) -> None:
    raw = payload if isinstance(payload, str) else maps.encode(map_name, key, payload)
    client.get_map(map_name).blocking().set(key, raw)


def _get(url: str) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def console(hz_member, tmp_path, settings_for):
    """The console (``python -m observability.web``) on a free port against the test member."""
    _, hz_port = hz_member
    run_logs = tmp_path / "run_logs"
    run_logs.mkdir()
    (run_logs / "meta_health.json").write_text(json.dumps({"rm_meta": 0.5, "status": "DEGRADED", "timestamp": 1.0,
                                                           "services": {"scanner": "STOPPED"}}))
    port = free_port()
    env = {"DOLPHIN_METRICS_PORT_BASE": "0", "DOLPHIN_RUN_LOGS": str(run_logs), "DOLPHIN_HZ_CLUSTER": "dolphin"}
    proc = start_listening("observability.web", ["--port", str(port), "--members", f"127.0.0.1:{hz_port}",
                                                 "--no-alerts"], tmp_path / "web.log", port, 30, env=env)
    writer = make_client(settings_for(hz_port=hz_port), name="web-test-writer", cluster_connect_timeout=10)
    try:
        wait_until(lambda: _get(f"http://127.0.0.1:{port}/api/maps")[1]["bus"]["connected"], 20, what="console on bus")
        yield f"http://127.0.0.1:{port}", writer, proc
    finally:
        writer.shutdown()
        proc.stop()


def test_api_is_read_only_and_names_bad_values(console):
    url, writer, proc = console
    _put(writer, maps.FEATURES, maps.KEY_ACB_BOOST, '{"boost": NaN, "beta": 0.2}')
    _put(writer, maps.SHARD_MAPS[4], "SOLUSDT", {"symbol": "SOLUSDT", "ts": 1.0, "imbalance": 0.1,
                                                 "fill_probability": 0.5, "depth_quality": 0.9, "spread_bps": 2.0,
                                                 "best_bid": 1.0, "best_ask": 1.1})
    wait_until(lambda: _get(f"{url}/api/maps")[1]["sizes"][maps.SHARD_MAPS[4]] == 1, 10, what="shard key counted")
    wait_until(lambda: _get(f"{url}/api/entry?map={maps.FEATURES}&key=acb_boost")[0] == 200, 10, what="acb entry")
    status, body = _get(f"{url}/api/entry?map={maps.FEATURES}&key=acb_boost")
    assert "DOLPHIN_FEATURES['acb_boost']" in body["error"] and "non-finite" in body["error"]
    status, body = _get(f"{url}/api/entry?map={maps.SHARD_MAPS[4]}&key=SOLUSDT")   # key-only map: read on demand
    assert status == 200 and body["source"] == "read" and body["error"] is None and '"SOLUSDT"' in body["pretty"]
    assert _get(f"{url}/api/entry?map={maps.FEATURES}&key=nosuch")[0] == 404
    assert _get(f"{url}/api/map/NOPE")[0] == 404
    for method in ("POST", "PUT", "DELETE"):
        req = urllib.request.Request(f"{url}/api/entry?map={maps.FEATURES}&key=acb_boost", method=method, data=b"{}")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=5)
        assert exc.value.code == 405
    assert proc.p.poll() is None, proc.log_text()


def test_page_shows_live_values_in_headless_chromium(console):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install -y chromium) to run this test")
    from playwright.sync_api import expect, sync_playwright

    url, writer, proc = console
    now = time.time()
    today = time.strftime("%Y-%m-%d", time.gmtime(now))
    _put(writer, maps.FEATURES, maps.KEY_EXF, {"_pushed_at": now, "indicators": {"funding_btc": {"value": -0.0001}}})
    shots = REPO_ROOT / "run_logs"
    shots.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + "/")
            expect(page.locator("#bus")).to_contain_text("bus: connected", timeout=15_000)
            expect(page.locator("#page-link")).to_have_text("page: live")
            # before any MHS report on the bus: the file run_logs/meta_health.json
            expect(page.locator("#rm-meta")).to_contain_text("[DEGRADED]")
            expect(page.locator("#rm-meta")).to_contain_text("from run_logs/meta_health.json")

            t = time.time()
            _put(writer, maps.SAFETY, maps.KEY_LATEST, {"posture": "HIBERNATE", "Rm": 0.12, "ts": t, "sensors": {
                "hz_nodes": 1, "dvol_btc": 88.0, "obf_present": True, "mc_source": "HZ",
                "kept_readings": {"mc": 1, "obf": 3}, "categories_seen": [1, 2]}})
            # supervisord names programs group:name (MHS's services), processes heartbeat as name
            _put(writer, maps.META_HEALTH, maps.KEY_LATEST, {
                "rm_meta": 0.975, "status": "GREEN", "timestamp": t, "sensors": {"m1_data_infra": 1.0},
                "services": {"dolphin_data:scanner": "RUNNING", "dolphin_data:exf_fetcher": "STOPPED",
                             "dolphin_data:acb_processor": "RUNNING"},
                "holds": {"dolphin_data:exf_fetcher": {"reason": "key rotation", "since": t - 60, "until": t + 600}}})
            for name in ("scanner", "acb_processor", "web_console"):
                _put(writer, maps.HEARTBEAT, name, {"service": name, "ts": t})
            history = [{"trade_id": f"T{i}", "symbol": "ETHUSDT", "side": "BUY", "entry_price": 2000.0, "price": 1990.0,
                        "net": 4.5 * (i + 1), "reason": "FIXED_TP", "ts": t - 600 + 60 * i,
                        "capital_after": 25000.0 + 4.5 * (i + 1)} for i in range(3)]
            _put(writer, maps.STATE_BLUE, maps.KEY_LATEST, {
                "strategy": "blue", "capital": 25013.5, "updated_at": t, "posture": "HIBERNATE",
                "account": {"capital": 25013.5, "history": history,
                          "position": {"trade_id": 9, "symbol": "BTCUSDT", "direction": -1, "entry_price": 65000.5,
                                       "notional": 5000.0, "entry_ts": t - 30}}})
            _put(writer, maps.PNL_BLUE, today, {"date": today, "strategy": "blue", "capital": 25013.5,
                                                     "pnl": 13.5, "trades": 3, "updated_at": t})

            expect(page.locator("#posture")).to_contain_text("posture HIBERNATE  Rm 0.120")
            expect(page.locator("#posture")).to_have_class("bad")
            expect(page.locator("#rm-meta")).to_contain_text("rm_meta 0.975 [GREEN]")
            expect(page.locator("#rm-meta")).not_to_contain_text("meta_health.json")
            # one row per service: supervisor state and heartbeat joined (issue 28: acb_processor was listed
            # twice, once as "dolphin_data:acb_processor" without a heartbeat and once without a state)
            rows = page.locator("#services tbody tr")
            expect(page.locator('#services tr[data-service="acb_processor"] td').nth(2)).to_contain_text("ago")
            names = rows.evaluate_all("rs => rs.map(r => r.dataset.service)")
            assert len(names) == len(set(names)) and not any(":" in n for n in names), names
            assert {"acb_processor", "exf_fetcher", "scanner", "web_console"} <= set(names), names
            for name in ("scanner", "acb_processor"):
                cells = page.locator(f'#services tr[data-service="{name}"] td')
                expect(cells.nth(1)).to_have_text("RUNNING")
                expect(cells.nth(2)).to_have_text(re.compile(r"^\d+s ago$"))
            exf = page.locator('#services tr[data-service="exf_fetcher"] td')
            expect(exf.nth(1)).to_have_text("STOPPED")
            expect(exf.nth(2)).to_have_text("no heartbeat")
            expect(exf.nth(3)).to_contain_text("HOLD key rotation")
            web = page.locator('#services tr[data-service="web_console"] td')
            expect(web.nth(1)).to_have_text("not watched by MHS")
            expect(web.nth(2)).to_have_text(re.compile(r"^\d+s ago$"))
            # nested values read as key/value, never as a raw object
            def sensor(name: str):
                return page.locator("#safety-sensors tr", has=page.locator("td", has_text=name)).locator("td").nth(1)
            expect(sensor("kept_readings")).to_have_text("mc 1, obf 3")
            expect(sensor("categories_seen")).to_have_text("1, 2")
            expect(page.locator("#position")).to_contain_text("SHORT BTCUSDT @ 65000.5")
            expect(page.locator("#pnl")).to_contain_text(f"{today}: pnl 13.5  trades 3")
            expect(page.locator("#trades tbody tr")).to_have_count(3)
            expect(page.locator("#equity polyline")).to_have_count(1)
            expect(page.locator("#equity-label")).to_contain_text("equity: 4 points")

            # map browser: sizes, keys, a value as formatted JSON, then a live update of that value
            expect(page.locator('#maps li[data-map="DOLPHIN_HEARTBEAT"] .size')).not_to_have_text("0")
            page.locator('#maps li[data-map="DOLPHIN_FEATURES"]').click()
            page.locator('#keys li[data-key="exf_latest"]').click()
            expect(page.locator("#entry")).to_contain_text('"funding_btc": {')
            _put(writer, maps.FEATURES, maps.KEY_EXF, {"_pushed_at": time.time(),
                                                       "indicators": {"dvol_btc": {"value": 61.25}}})
            expect(page.locator("#entry")).to_contain_text('"dvol_btc"')
            expect(page.locator("#entry-title")).to_contain_text("(listener)")
            # a new key appears in the open map's key list without a reload
            _put(writer, maps.FEATURES, maps.KEY_ACB_BOOST, "{garbage")
            page.locator('#keys li[data-key="acb_boost"]').click()
            expect(page.locator("#entry")).to_contain_text("ERROR DOLPHIN_FEATURES['acb_boost']: malformed JSON")
            expect(page.locator("#counts")).to_contain_text("bad payloads 1")
            assert "[object Object]" not in page.inner_text("body")
            page.screenshot(path=str(shots / "web_console.png"), full_page=True)
        finally:
            browser.close()
    assert (shots / "web_console.png").stat().st_size > 10_000
    assert proc.p.poll() is None, proc.log_text()


def test_posture_says_warming_up_until_the_watchdog_has_its_first_readings(console, tmp_path):
    """Issue 28: the watchdog's warm-up placeholder (HIBERNATE, Rm 0) read as a real posture for seconds."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install -y chromium) to run this test")
    from playwright.sync_api import expect, sync_playwright

    url, writer, proc = console
    members = _get(f"{url}/api/maps")[1]["bus"]["detail"]
    # the real safety watchdog against the same member: no order books yet, so it warms up
    wd = Proc("services.safety_watchdog", ["--interval", "0.5"], tmp_path / "watchdog.log",
              env={"DOLPHIN_HZ_MEMBERS": members, "DOLPHIN_HZ_CLUSTER": "dolphin", "DOLPHIN_METRICS_PORT_BASE": "0",
                   "DOLPHIN_RUN_LOGS": str(tmp_path / "run_logs")}).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(url + "/")
                posture = page.locator("#posture")
                expect(posture).to_contain_text("warming up: no posture computed yet", timeout=30_000)
                expect(posture).to_contain_text("order books, obf_universe_latest (Cat3)")
                expect(posture).not_to_contain_text("HIBERNATE")
                expect(posture).not_to_contain_text("Rm 0.000")
                expect(posture).to_have_class("warn")
                obf_row = page.locator("#safety-sensors tr", has=page.locator("td", has_text="obf_present"))
                expect(obf_row.locator("td").nth(1)).to_have_text("no reading yet")
                assert "[object Object]" not in page.inner_text("body")

                now = time.time()
                _put(writer, maps.FEATURES, maps.KEY_OBF_UNIVERSE, {
                    "_snapshot_utc": now, "_n_assets": 2,
                    "assets": {s: {"depth_quality": 0.95, "fill_probability": 0.95} for s in ("BTCUSDT", "ETHUSDT")}})
                # the first readings arrived: a computed posture replaces the warm-up line
                expect(posture).to_have_text(re.compile(r"^posture (APEX|STALKER|TURTLE|HIBERNATE)  Rm \d\.\d{3}"),
                                             timeout=30_000)
                expect(posture).not_to_contain_text("warming up")
                # still no MC-Forewarner run and no DVOL: named, not shown as readings
                expect(posture).to_contain_text("no reading yet: MC-Forewarner (Cat2), DVOL, exf_latest (Cat4)")
                expect(obf_row.locator("td").nth(1)).to_have_text("yes")
                assert "[object Object]" not in page.inner_text("body")
            finally:
                browser.close()
    finally:
        wd.stop()
    assert "warm-up done" in wd.log_text()
    assert proc.p.poll() is None, proc.log_text()


def test_port_in_use_is_a_clear_error_and_exit_2(tmp_path):
    import socket
    import subprocess
    import sys
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        busy = s.getsockname()[1]
        env = {**os.environ, "DOLPHIN_METRICS_PORT_BASE": "0", "DOLPHIN_RUN_LOGS": str(tmp_path)}
        r = subprocess.run([sys.executable, "-m", "observability.web", "--port", str(busy), "--members",
                            f"127.0.0.1:{free_port()}", "--no-alerts"], cwd=REPO_ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"web console: cannot listen on 127.0.0.1:{busy}" in r.stderr


def test_other_host_names_and_cross_site_websockets_are_refused(console):
    import asyncio

    import aiohttp

    url, writer, proc = console
    req = urllib.request.Request(f"{url}/api/maps", headers={"Host": "attacker.example:8088"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=5)
    assert exc.value.code == 403
    assert _get(url.replace("127.0.0.1", "localhost") + "/api/maps")[0] == 200

    async def ws_status(origin: str | None) -> int | str:
        async with aiohttp.ClientSession() as s:
            try:
                async with s.ws_connect(url + "/ws", headers={"Origin": origin} if origin else {}) as ws:
                    msg = await ws.receive_json(timeout=10)
                    return msg["t"]
            except aiohttp.WSServerHandshakeError as e:
                return e.status

    assert asyncio.run(ws_status("http://evil.example")) == 403
    assert asyncio.run(ws_status(url)) == "snapshot"
    assert asyncio.run(ws_status(None)) == "snapshot"


def test_member_restart_shows_disconnected_then_recovers_with_fresh_keys(tmp_path, settings_for):
    hz_port, port = free_port(), free_port()
    hz_args = ["--host", "127.0.0.1", "--port", str(hz_port), "--cluster-name", "dolphin"]
    hz = start_listening("standins.hz_member", hz_args, tmp_path / "hz1.log", hz_port, 30)
    web = start_listening("observability.web", ["--port", str(port), "--members", f"127.0.0.1:{hz_port}", "--no-alerts"],
                          tmp_path / "web.log", port, 30,
                          env={"DOLPHIN_METRICS_PORT_BASE": "0", "DOLPHIN_RUN_LOGS": str(tmp_path)})
    url = f"http://127.0.0.1:{port}/api/maps"
    try:
        w = make_client(settings_for(hz_port=hz_port), name="web-test-writer", cluster_connect_timeout=10)
        _put(w, maps.HEARTBEAT, "ghost", {"service": "ghost", "ts": time.time()})
        w.shutdown()
        wait_until(lambda: _get(url)[1]["sizes"][maps.HEARTBEAT] >= 1, 20, what="heartbeat counted")
        hz.kill()
        wait_until(lambda: not _get(url)[1]["bus"]["connected"], 20, what="bus: disconnected")
        assert web.p.poll() is None
        hz = start_listening("standins.hz_member", hz_args, tmp_path / "hz2.log", hz_port, 30)   # empty member
        w = make_client(settings_for(hz_port=hz_port), name="web-test-writer2", cluster_connect_timeout=10)
        _put(w, maps.SAFETY, maps.KEY_LATEST, {"posture": "APEX", "Rm": 1.0, "ts": time.time()})
        w.shutdown()
        wait_until(lambda: _get(url)[1]["bus"]["connected"], 30, what="bus: connected again")
        wait_until(lambda: _get(url)[1]["sizes"][maps.SAFETY] == 1, 15, what="new member's value")
        sizes = _get(url)[1]["sizes"]
        assert "ghost" not in _get(f"http://127.0.0.1:{port}/api/map/{maps.HEARTBEAT}")[1]["keys"], sizes
    finally:
        web.stop()
        hz.stop()
