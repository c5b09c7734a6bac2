"""The NG8 scanner as a process against the venue simulator and the embedded Hazelcast member."""
from __future__ import annotations

import json
import sys
import threading
import urllib.request

import numpy as np
import pytest

from prod.bus import maps
from prod.bus.client import make_client
from prod.scans import arrow_io
from tests.helpers import Proc, running_venue, wait_until


@pytest.fixture
def fast_venue(tmp_path):
    """Venue simulator at 50x market speed (~2 s of market time per 40 ms scan)."""
    with running_venue(tmp_path, "--speed", "50", name="venue_fast") as pv:
        yield pv


def _scanner(tmp_path, venue_port, hz_port=None, *extra, name="scanner"):
    args = ["--venue-ws", f"ws://127.0.0.1:{venue_port}", "--venue-rest", f"http://127.0.0.1:{venue_port}",
            "--data-dir", str(tmp_path / "data"), *extra]
    if hz_port:
        args += ["--hz-members", f"127.0.0.1:{hz_port}"]
    else:
        args += ["--no-bus"]
    return Proc("scanner.ng8_scanner", args, tmp_path / f"{name}.log").start()


def _numbers(arrow_dir):
    return sorted(arrow_io.scan_number_of(p) for p in arrow_io.iter_scan_files(arrow_dir))


def test_n_scans_give_n_files_and_n_map_writes_and_restart_resumes_numbering(tmp_path, hz_member, fast_venue,
                                                                                settings_for):
    _, hz_port = hz_member
    _, v_port = fast_venue
    settings = settings_for(hz_port=hz_port)
    client = make_client(settings, name="test-scanner-listener")
    seen: list[int] = []
    lock = threading.Lock()

    def on_event(ev):
        payload = maps.decode(maps.FEATURES, ev.key, ev.value)
        with lock:
            seen.append(payload.scan_number)

    fmap = client.get_map(maps.FEATURES).blocking()
    fmap.add_entry_listener(include_value=True, key=maps.KEY_EIGEN_SCAN, added_func=on_event,
                            updated_func=on_event)
    arrow_dir = tmp_path / "data" / "arrow_scans"
    try:
        p1 = _scanner(tmp_path, v_port, hz_port, "--interval", "0.1", "--max-scans", "12", "--no-venue-backfill",
                     name="scan1")
        assert p1.p.wait(60) == 0, p1.log_text()
        assert _numbers(arrow_dir) == list(range(1, 13))
        wait_until(lambda: len(seen) >= 12, 10, what="12 map writes")
        last = maps.decode(maps.FEATURES, maps.KEY_EIGEN_SCAN, fmap.get(maps.KEY_EIGEN_SCAN))
        assert last.scan_number == 12 and len(last.asset_prices) == 50
        assert last.warm_windows == [] and last.vel_div is None   # cold: nulls, never invented
        hb = maps.decode(maps.HEARTBEAT, "scanner", client.get_map(maps.HEARTBEAT).blocking().get("scanner"))
        assert hb.service == "scanner" and hb.extra["scan_number"] >= 1

        p2 = _scanner(tmp_path, v_port, hz_port, "--interval", "0.1", "--max-scans", "5", "--no-venue-backfill",
                     name="scan2")
        assert p2.p.wait(60) == 0, p2.log_text()
        assert "backfill: 12 archived scans" in p2.log_text()
        assert _numbers(arrow_dir) == list(range(1, 18))
        wait_until(lambda: len(seen) >= 17, 10, what="17 map writes")
        with lock:
            assert seen == list(range(1, 18)), "one map write per scan number, consecutive"
    finally:
        client.shutdown()

    # daily build parity on the real archive the scanner wrote
    days = sorted(p.name for p in arrow_dir.iterdir())
    rows = 0
    for d in days:
        b = Proc("prod.scans.daily", ["--date", d, "--allow-partial", "--data-dir", str(tmp_path / "data")],
                 tmp_path / f"build_{d}.log").start()
        assert b.p.wait(60) == 0, b.log_text()
        import pyarrow.parquet as pq
        t = pq.read_table(tmp_path / "data" / "vbt_cache_klines" / f"{d}.parquet")
        rows += t.num_rows
        assert "BTCUSDT" in t.column_names
    assert rows == 17


def _regime(port, regime):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/sim/admin/regime", method="POST",
                                 data=json.dumps({"regime": regime}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = json.loads(r.read())
    assert body["current"] == regime


def _last_record(arrow_dir):
    files = list(arrow_io.iter_scan_files(arrow_dir))
    if not files:
        return None
    return arrow_io.read_scan(max(files, key=lambda p: arrow_io.scan_number_of(p)))


def _crossings(vd):
    v = np.array(vd)
    return int(np.sum((v[1:] < -0.02) & (v[:-1] >= -0.02)))


def test_stress_regime_drives_lambda_up_and_vel_div_below_threshold_while_calm_does_not(tmp_path, fast_venue):
    _, v_port = fast_venue
    _regime(v_port, "calm")
    arrow_dir = tmp_path / "data" / "arrow_scans"
    # cold start from the simulator's 1s klines (772 scan steps of 2 market seconds): warm at the first scan
    p = _scanner(tmp_path, v_port, None, "--interval", "0.04", "--precision", "float64", name="regimes")
    try:
        first_warm = wait_until(lambda: (r := _last_record(arrow_dir)) and r["vel_div"] is not None and r,
                                120, interval=0.5, what="vel_div warm (venue backfill)")
        s0 = first_warm["scan_number"]
        wait_until(lambda: _last_record(arrow_dir)["scan_number"] >= s0 + 120, 60, interval=0.2,
                   what="120 calm scans")
        _regime(v_port, "stress")
        s1 = _last_record(arrow_dir)["scan_number"]
        wait_until(lambda: _last_record(arrow_dir)["scan_number"] >= s1 + 300, 90, interval=0.2,
                   what="300 stress scans")
    finally:
        p.stop()
        _regime(v_port, "calm")
    assert p.p.returncode == 0 and "scanner stopped after" in p.log_text(), "SIGTERM: clean exit"
    recs = sorted((arrow_io.read_scan(f) for f in arrow_io.iter_scan_files(arrow_dir)),
                  key=lambda r: r["scan_number"])
    calm = [r for r in recs if s0 <= r["scan_number"] <= s1 and r["vel_div"] is not None]
    stress = [r for r in recs if r["scan_number"] > s1 and r["vel_div"] is not None]
    c_cross, s_cross = _crossings([r["vel_div"] for r in calm]), _crossings([r["vel_div"] for r in stress])
    lam_calm = float(np.mean([r["w50_lambda_max"] for r in calm]))
    lam_stress = float(np.mean([r["w50_lambda_max"] for r in stress[-100:]]))
    summary = {"calm_scans": len(calm), "calm_crossings": c_cross,
               "calm_rate_per_100": 100 * c_cross / len(calm),
               "stress_scans": len(stress), "stress_crossings": s_cross,
               "stress_rate_per_100": 100 * s_cross / len(stress),
               "lambda50_calm_mean": lam_calm, "lambda50_stress_mean_last100": lam_stress,
               "min_vel_div_calm": min(r["vel_div"] for r in calm),
               "min_vel_div_stress": min(r["vel_div"] for r in stress)}
    print("scanner regime crossings:", json.dumps(summary), file=sys.stderr)
    (tmp_path / "crossings.json").write_text(json.dumps(summary))
    assert len(calm) >= 110 and len(stress) >= 290
    assert "backfilled 772 scans from venue 1s klines" in p.log_text()
    assert recs[0]["scan_number"] == 1 and recs[0]["vel_div"] is not None, "warm from the first scan"
    assert lam_stress > lam_calm + 0.2, summary
    # observed over seven runs: calm 0-2 crossings per ~120-155 scans (0-1.6 per 100; calm λ_50 with
    # W = N = 50 is noisy), stress 5-15 per ~200-300 scans (1.7-5.1 per 100)
    assert c_cross <= 3, summary
    assert s_cross >= 3, summary
    assert summary["stress_rate_per_100"] > summary["calm_rate_per_100"], summary


def test_an_unwritable_archive_still_publishes_every_scan_and_reports_the_fault(tmp_path, hz_member, fast_venue,
                                                                               settings_for):
    """Regression (issue 20): a failed Arrow write used to drop the scan from the bus as well."""
    from prod.runtime import Bus

    _, hz_port = hz_member
    _, v_port = fast_venue
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "arrow_scans").write_text("not a directory")   # every archive write fails
    bus = Bus(settings_for(hz_port=hz_port), "test-archive-fault").start()
    seen: list[int] = []
    try:
        assert bus.wait_connected(30)
        bus.listen(maps.EIGEN_SCAN, lambda k, p: seen.append(p.scan_number))
        p = _scanner(tmp_path, v_port, hz_port, "--interval", "0.1", "--max-scans", "6", "--no-venue-backfill",
                     "--precision", "float64", name="scan_nodisk")
        assert p.p.wait(90) == 0, p.log_text()
        wait_until(lambda: len(seen) == 6, 10, what="six scans on the bus")
        assert seen == list(range(1, 7))
        hb = bus.get(maps.HEARTBEATS, "scanner")
        assert hb.extra["archive_faults"] >= 1 and "NotADirectoryError" in hb.extra["archive_error"]
        assert "published to the bus only" in p.log_text()
    finally:
        bus.close()


def test_the_scanner_serves_its_scans_on_metrics(tmp_path, fast_venue):
    """Service.main serves /metrics on metrics_port_base + the service's offset (scanner: 0)."""
    import urllib.request as ur

    from tests.helpers import free_port

    _, v_port = fast_venue
    base = free_port()
    p = Proc("scanner.ng8_scanner", ["--venue-ws", f"ws://127.0.0.1:{v_port}", "--venue-rest",
                                     f"http://127.0.0.1:{v_port}", "--data-dir", str(tmp_path / "data"), "--no-bus",
                                     "--interval", "0.1", "--no-venue-backfill", "--precision", "float64"],
             tmp_path / "scanner_metrics.log", env={"DOLPHIN_METRICS_PORT_BASE": str(base)}).start()

    def scans() -> float:
        text = ur.urlopen(f"http://127.0.0.1:{base}/metrics", timeout=2).read().decode()
        line = next(x for x in text.splitlines() if x.startswith("dolphin_scans_total "))
        return float(line.split()[1])
    try:
        wait_until(lambda: scans() >= 3, 60, what="three scans counted on /metrics")
        text = ur.urlopen(f"http://127.0.0.1:{base}/metrics", timeout=2).read().decode()
        assert 'dolphin_service_info{profile="embedded",service="scanner"} 1.0' in text
        assert "dolphin_scan_number " in text
    finally:
        p.stop()
