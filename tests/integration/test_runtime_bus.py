"""prod.runtime.Bus and Service.main against the real embedded member over TCP."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from prod.bus import maps
from prod.runtime import Bus, BusUnavailable
from tests.helpers import REPO_ROOT, free_port, start_listening, wait_until


def _member(tmp_path, port, name="hz"):
    return start_listening("standins.hz_member", ["--host", "127.0.0.1", "--port", str(port), "--cluster-name",
                                                  "dolphin", "--no-heartbeat"], tmp_path / f"{name}.log", port, 30)


def _scan(n: int) -> dict:
    return dict(scan_number=n, timestamp_ns=time.time_ns(), timestamp="t", bridge_ts=time.time(), vel_div=None,
                w50_velocity=None, w150_velocity=None, w300_velocity=None, w750_velocity=None,
                instability_50=None, instability_150=None, assets=["BTCUSDT"], asset_prices=[1.0])


def test_bus_connects_in_the_background_once_a_member_appears(tmp_path, settings_for):
    port = free_port()
    bus = Bus(settings_for(hz_port=port, hz_connect_timeout_s=1.0), "t_bus", backoff_s=(0.1, 0.5)).start()
    try:
        assert not bus.connected
        with pytest.raises(BusUnavailable):
            _ = bus.client
        wait_until(lambda: bus.attempts >= 2, 30, what="a second connection attempt")
        m = _member(tmp_path, port)
        try:
            assert bus.wait_connected(30)
            bus.publish(maps.ACB_BOOST, {"boost": 1.25, "beta": 0.5, "computed_at": 1.0})
            got = bus.get(maps.ACB_BOOST)
            assert got.boost == 1.25 and got.beta == 0.5
        finally:
            m.stop()
    finally:
        bus.close()


def test_typed_listener_drops_garbage_and_survives_a_member_restart(tmp_path, settings_for):
    port = free_port()
    m = _member(tmp_path, port)
    bus = Bus(settings_for(hz_port=port, hz_connect_timeout_s=1.0), "t_listen", backoff_s=(0.1, 0.5)).start()
    seen: list[int] = []
    reconnects: list[int] = []
    try:
        assert bus.wait_connected(20)
        bus.listen(maps.EIGEN_SCAN, lambda k, p: seen.append(p.scan_number))
        bus.on_connect(lambda b: reconnects.append(b.connects))
        bus.publish(maps.EIGEN_SCAN, _scan(1))
        bus.map(maps.FEATURES).set(maps.KEY_EIGEN_SCAN, "{garbage").result()
        bus.map(maps.FEATURES).set(maps.KEY_EIGEN_SCAN, json.dumps({**_scan(2), "scan_number": "two"})).result()
        bus.publish(maps.EIGEN_SCAN, _scan(3))
        wait_until(lambda: seen == [1, 3], 10, what="the two good scans")
        assert bus.bad_payloads == {"DOLPHIN_FEATURES['latest_eigen_scan']": 2}
        assert bus.get(maps.EIGEN_SCAN).scan_number == 3

        m.kill()                                    # the member dies; a new one comes up on the same port
        m = _member(tmp_path, port, "hz2")
        wait_until(lambda: bus.connected and bus.connects >= 2 or (bus.connected and _publish_ok(bus)),
                   60, what="the bus to reconnect")
        wait_until(lambda: _publish_ok(bus, 4) and 4 in seen, 30, what="the listener to hear scan 4")
    finally:
        bus.close()
        m.stop()


def _publish_ok(bus: Bus, n: int = 99) -> bool:
    try:
        bus.publish(maps.EIGEN_SCAN, _scan(n), timeout=2.0)
        return True
    except Exception:  # noqa: BLE001 - still reconnecting
        return False


def test_publish_refuses_an_invalid_payload_and_writes_nothing(hz_member, settings_for):
    _, port = hz_member
    bus = Bus(settings_for(hz_port=port), "t_pub").start()
    try:
        assert bus.wait_connected(20)
        with pytest.raises(maps.PayloadError, match="beta"):
            bus.publish(maps.ACB_BOOST, {"boost": 1.1, "computed_at": 1.0})
        assert bus.get(maps.ACB_BOOST) is None
        fut = bus.heartbeat(scans=3)
        fut.result()
        hb = bus.get(maps.HEARTBEATS, "t_pub")
        assert hb.service == "t_pub" and hb.extra == {"scans": 3} and hb.pid is not None
    finally:
        bus.close()


def test_service_main_stops_on_sigterm_while_no_member_answers(tmp_path):
    """SIGTERM is installed before connecting: a process with no cluster still stops at once, exit 0."""
    port = free_port()
    code = ("import sys, threading\n"
            "from dataclasses import dataclass\n"
            "from prod.runtime import Service\n"
            "from prod.settings import Settings\n"
            "@dataclass(frozen=True)\n"
            "class C:\n"
            "    settings: Settings\n"
            "def run(cfg, bus, clock, stop):\n"
            "    print('running', flush=True)\n"
            "    stop.wait()\n"
            "    return 0\n"
            "sys.exit(Service.main('demo_svc', C, run))\n")
    log = tmp_path / "svc.log"
    with open(log, "wb") as fh:
        p = subprocess.Popen([sys.executable, "-c", code, "--hz-members", f"127.0.0.1:{port}"], cwd=REPO_ROOT,
                             stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "cannot reach Hazelcast" in log.read_text(), 30, what="a connect attempt to fail")
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
    text = log.read_text()
    assert "demo_svc starting" in text and "SIGTERM received" in text and "Traceback" not in text


def test_service_main_prints_one_line_for_a_bad_setting(tmp_path):
    code = ("import sys\nfrom dataclasses import dataclass\nfrom prod.runtime import Service\n"
            "from prod.settings import Settings\n@dataclass(frozen=True)\nclass C:\n    settings: Settings\n"
            "    n: int = 1\nsys.exit(Service.main('demo_svc', C, lambda *a: 0))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                       env={"DOLPHIN_SCAN_INTERVAL_S": "abc", "DOLPHIN_DEMO_SVC_N": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert r.stderr.strip() == ("demo_svc: configuration error: DOLPHIN_SCAN_INTERVAL_S='abc': "
                                "could not convert string to float: 'abc'")
