"""The scan bridge as a process against the embedded Hazelcast member: mtime watching, schema
validation, dedup beside a map-writing scanner, restarted-scanner numbering, replay speed."""
from __future__ import annotations

import datetime as dt
import os
import threading
import time

import numpy as np
import pytest

from prod.bus import maps
from prod.bus.client import make_client
from prod.scans import arrow_io
from scanner.engine import EigenEngine
from scanner.records import build_record
from tests.helpers import Proc, free_port, start_listening, wait_until

ASSETS = [f"A{i}USDT" for i in range(12)]


def _records(n, start_ns, step_s=5.0, first=1, seed=0):
    rng = np.random.default_rng(seed)
    eng = EigenEngine(ASSETS, precision_mode="float64")
    p = np.full(len(ASSETS), 20.0)
    out = []
    for k in range(n):
        p = p * np.exp(rng.standard_normal(len(ASSETS)) * 1e-3)
        out.append(build_record(first + k, eng.enhance(p.tolist(), start_ns + int(k * step_s * 1e9))))
    return out


class _Listener:
    def __init__(self, settings):
        self.client = make_client(settings, name="test-bridge-listener")
        self.map = self.client.get_map(maps.FEATURES).blocking()
        self.events: list[tuple[float, int, int]] = []
        self.lock = threading.Lock()
        self.map.add_entry_listener(include_value=True, key=maps.KEY_EIGEN_SCAN, added_func=self._on,
                                    updated_func=self._on)

    def _on(self, ev):
        p = maps.EIGEN_SCAN.decode(ev.value)
        with self.lock:
            self.events.append((time.monotonic(), p.scan_number, p.timestamp_ns))

    def numbers(self):
        with self.lock:
            return [e[1] for e in self.events]


@pytest.fixture
def listener(hz_member, settings_for):
    _, port = hz_member
    lst = _Listener(settings_for(hz_port=port))
    try:
        yield lst, port
    finally:
        lst.client.shutdown()


def _bridge(tmp_path, port, *args, name="bridge"):
    return Proc("services.scan_bridge", [*args, "--hz-members", f"127.0.0.1:{port}", "--poll-s", "0.05"],
                tmp_path / f"{name}.log").start()


def test_bridge_pushes_new_files_once_skips_scans_already_on_the_map_and_rejects_malformed(tmp_path, listener):
    lst, port = listener
    arrow_dir = tmp_path / "arrow_scans"
    now_ns = time.time_ns()
    old = _records(3, now_ns - 600 * 10**9, first=1)
    for r in old:
        arrow_io.write_scan(arrow_dir, r)
    b = _bridge(tmp_path, port, "--arrow-dir", str(arrow_dir))
    try:
        wait_until(lambda: "watching" in b.log_text(), 30, what="bridge watching")
        recs = _records(6, now_ns, first=10, seed=1)
        # a scanner that writes the map itself got scan 12 there first
        lst.map.set(maps.KEY_EIGEN_SCAN, maps.EIGEN_SCAN.encode(arrow_io.payload_from_record(recs[2], time.time())))
        wait_until(lambda: lst.numbers() == [12], 10, what="direct write seen")
        for r in recs:
            arrow_io.write_scan(arrow_dir, r)
        bad = arrow_dir / recs[0]["timestamp_iso"][:10] / "scan_000099_000000.arrow"
        bad.write_bytes(b"not arrow at all")
        wait_until(lambda: len(lst.numbers()) >= 4, 15, what="bridge pushes")
        wait_until(lambda: "rejected scan file" in b.log_text(), 10, what="malformed file log line")
        # scanner restarted with a reset counter: lower numbers, newer files -> still pushed
        restarted = _records(2, now_ns + 60 * 10**9, first=1, seed=2)
        for r in restarted:
            arrow_io.write_scan(arrow_dir, r)
        wait_until(lambda: len(lst.numbers()) >= 6, 15, what="restarted scanner scans pushed")
        # a sentinel file written last: once it is out, any re-push of older files would have come first
        sentinel = _records(1, now_ns + 120 * 10**9, first=3, seed=3)[0]
        arrow_io.write_scan(arrow_dir, sentinel)
        wait_until(lambda: len(lst.numbers()) >= 7, 15, what="sentinel pushed")
    finally:
        b.stop()
    # pre-existing files are not pushed; 10 and 11 are older than the 12 already on the map, 12 is
    # not pushed a second time; the restarted scanner's 1 and 2 are newer, so they go out
    assert lst.numbers() == [12, 13, 14, 15, 1, 2, 3]
    assert str(bad) in b.log_text()
    cur = maps.EIGEN_SCAN.decode(lst.map.get(maps.KEY_EIGEN_SCAN))
    assert cur.scan_number == 3 and cur.timestamp_ns == sentinel["timestamp_ns"]


def test_bridge_orders_by_mtime_not_scan_number(tmp_path, listener):
    lst, port = listener
    arrow_dir = tmp_path / "arrow_scans"
    b = _bridge(tmp_path, port, "--arrow-dir", str(arrow_dir))
    try:
        wait_until(lambda: "watching" in b.log_text(), 30, what="bridge watching")
        now_ns = time.time_ns()
        high = _records(1, now_ns, first=500)[0]
        low = _records(1, now_ns + 10**9, first=3, seed=4)[0]
        p_low = arrow_io.write_scan(tmp_path / "staging", low)
        p_high = arrow_io.write_scan(tmp_path / "staging", high)
        day = arrow_dir / p_low.parent.name
        day.mkdir(parents=True)
        t = time.time()
        os.utime(p_high, (t - 1, t - 1))
        os.utime(p_low, (t, t))
        os.rename(p_high, day / p_high.name)
        os.rename(p_low, day / p_low.name)
        wait_until(lambda: len(lst.numbers()) >= 2, 15, what="two pushes")
    finally:
        b.stop()
    assert lst.numbers() == [500, 3]


def test_replay_pushes_an_archive_at_the_requested_speed(tmp_path, listener):
    lst, port = listener
    arrow_dir = tmp_path / "archive"
    t0 = int(dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc).timestamp() * 1e9)
    recs = _records(11, t0, step_s=1.0, first=100)
    for r in recs:
        arrow_io.write_scan(arrow_dir, r)
    b = _bridge(tmp_path, port, "--replay", str(arrow_dir), "--speed", "5", name="replay")
    try:
        wait_until(lambda: len(lst.numbers()) >= 11, 30, what="11 replayed scans")
        assert b.p.wait(20) == 0, b.log_text()
    finally:
        b.stop()
    assert lst.numbers() == list(range(100, 111))
    span = lst.events[-1][0] - lst.events[0][0]
    assert 1.7 <= span <= 3.0, f"10 s of scans at 5x should take ~2 s, took {span:.2f}s"


def test_a_file_written_while_no_member_answers_is_pushed_once_the_member_is_up(tmp_path, settings_for):
    """The bridge starts without a cluster (connecting in the background) and pushes once it is there."""
    port = free_port()
    arrow_dir = tmp_path / "arrow_scans"
    b = _bridge(tmp_path, port, "--arrow-dir", str(arrow_dir), "--from-start")
    member = None
    try:
        rec = _records(1, time.time_ns(), first=42)[0]
        arrow_io.write_scan(arrow_dir, rec)
        wait_until(lambda: "scan_bridge starting" in b.log_text(), 30, what="bridge started")
        assert b.p.poll() is None
        member = start_listening("standins.hz_member", ["--host", "127.0.0.1", "--port", str(port),
                                                        "--cluster-name", "dolphin"], tmp_path / "hz.log", port, 30)
        lst = _Listener(settings_for(hz_port=port))
        try:
            wait_until(lambda: lst.map.get(maps.KEY_EIGEN_SCAN) is not None, 60, what="scan on the map")
            assert maps.EIGEN_SCAN.decode(lst.map.get(maps.KEY_EIGEN_SCAN)).scan_number == 42
        finally:
            lst.client.shutdown()
    finally:
        b.stop()
        if member is not None:
            member.stop()
    assert b.p.returncode == 0 and "Traceback" not in b.log_text()


def test_bridge_sigterm_without_a_member_is_a_clean_exit_and_a_bad_setting_exits_2(tmp_path):
    b = _bridge(tmp_path, free_port(), "--arrow-dir", str(tmp_path / "a"))
    try:
        wait_until(lambda: "scan_bridge starting" in b.log_text(), 30, what="bridge started")
        b.p.terminate()
        assert b.p.wait(15) == 0, b.log_text()
    finally:
        b.stop()
    assert "SIGTERM received" in b.log_text()
    bad = Proc("services.scan_bridge", ["--speed", "0"], tmp_path / "bad.log",
               env={"DOLPHIN_SCAN_BRIDGE_POLL_S": "fast"}).start()
    assert bad.p.wait(30) == 2
    lines = bad.log_text().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scan_bridge: configuration error:")
    assert "DOLPHIN_SCAN_BRIDGE_POLL_S" in lines[0]


def test_watch_keeps_files_the_bus_refused_and_pushes_them_in_order_when_it_answers(tmp_path, listener, settings_for):
    from prod.runtime import Bus, SystemClock
    from services.scan_bridge.main import BridgeConfig, Pusher, watch
    lst, port = listener
    settings = settings_for(hz_port=port)
    arrow_dir = tmp_path / "arrow_scans"
    for r in _records(2, time.time_ns(), first=70):
        arrow_io.write_scan(arrow_dir, r)
    dead = Bus(settings, "test-bridge-dead")            # never started: every call raises BusUnavailable
    live = Bus(settings, "test-bridge-live").start()
    stop = threading.Event()
    pusher = Pusher(dead, time.time)
    cfg = BridgeConfig(settings=settings, arrow_dir=arrow_dir, from_start=True, poll_s=0.05, grace_s=0.0)
    t = threading.Thread(target=watch, args=(cfg, pusher, SystemClock(), stop), daemon=True)
    t.start()
    try:
        wait_until(lambda: pusher.failures >= 3, 10, what="refused pushes")
        assert lst.numbers() == [] and pusher.pushed == 0
        assert live.wait_connected(30)
        pusher.bus = live
        wait_until(lambda: len(lst.numbers()) >= 2, 15, what="retried pushes")
    finally:
        stop.set()
        t.join(5)
        live.close()
    assert lst.numbers() == [70, 71] and pusher.pushed == 2
