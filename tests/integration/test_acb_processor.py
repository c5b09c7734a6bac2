"""acb_processor against the real embedded member: same numbers as prod.alpha.acb, CP-lock serialised writes."""
from __future__ import annotations

import re
import signal
import time

import pytest

from prod.alpha import acb
from prod.bus import maps
from prod.runtime import Bus
from tests.helpers import Proc, free_port, port_open, wait_until


def _bus(settings, name="t_acb") -> Bus:
    bus = Bus(settings, name, backoff_s=(0.1, 0.5)).start()
    assert bus.wait_connected(30), "test bus did not connect"
    return bus


def _exf(pushed_at, funding, dvol, fng, taker):
    return {"_pushed_at": pushed_at, "funding_btc": funding, "dvol_btc": dvol, "fng": fng, "taker": taker,
            "indicators": {}}


def _scan(n, w750):
    return {"scan_number": n, "timestamp_ns": n * 5_000_000_000, "timestamp": "2026-01-01T00:00:00Z",
            "bridge_ts": float(n), "vel_div": 0.0, "w50_velocity": 0.0, "w150_velocity": 0.0,
            "w300_velocity": 0.0, "w750_velocity": w750, "instability_50": 0.0, "instability_150": 0.0,
            "assets": [], "asset_prices": []}


def _start(tmp_path, port, name, *extra):
    return Proc("services.acb_processor", ["--hz-members", f"127.0.0.1:{port}", "--data-dir",
                                           str(tmp_path / "data"), "--min-scans", "5", *extra],
                tmp_path / f"{name}.log").start()


def test_acb_boost_and_beta_equal_prod_alpha_acb_for_the_same_inputs(hz_member, tmp_path, settings_for):
    _, port = hz_member
    bus = _bus(settings_for(hz_port=port))
    proc = _start(tmp_path, port, "acb")
    try:
        wait_until(lambda: "lock released" in proc.log_text(), 30, what="processor up (first write)")
        w750 = [0.001 * i for i in range(20)]
        for i, v in enumerate(w750):
            bus.publish(maps.EIGEN_SCAN, _scan(i + 1, v))
        exfs = [_exf(100.0 + i, -0.0002, 85.0 + i, 20.0, 0.85) for i in range(3)]
        for e in exfs:
            bus.publish(maps.EXF, e)
        bus.publish(maps.OBF_UNIVERSE, {"_snapshot_utc": 1.0, "_n_assets": 0, "assets": {},
                                        "_stats": {"regime_signal": 1}})
        expected = acb.compute_acb(acb.daily_factors(exfs), acb.daily_w750(w750[-10:]),
                                   acb.w750_threshold(w750), acb.ob_stress_from_regime(1))

        def done():
            p = bus.get(maps.ACB_BOOST)
            return p if p and p.inputs["n_exf"] == 3 and p.inputs["n_scans"] == 20 \
                and p.inputs["regime_signal"] == 1 else None
        p = wait_until(done, 30, what="acb_boost with all inputs")
        assert p.boost == expected.boost and p.beta == expected.beta
        assert p.signals == expected.signals == 3.5
        assert expected.beta == pytest.approx(0.8 * 1.25)
        assert p.writer_pid == proc.p.pid and p.fence and maps.ACB_BOOST.written_at(p) == p.computed_at
        st = bus.get(maps.ACB_STATE)
        assert (st.boost, st.beta, st.fence) == (p.boost, p.beta, p.fence)
        hb = wait_until(lambda: bus.get(maps.HEARTBEATS, "acb_processor"), 10, what="the processor's heartbeat")
        assert hb.pid == proc.p.pid and hb.extra["writes"] >= 1
        # same inputs again → no new write (the skip path)
        writes = proc.log_text().count("ACB write ")
        skips = proc.log_text().count("ACB unchanged")
        bus.publish(maps.EXF, _exf(200.0, -0.0002, 86.0, 20.0, 0.85))
        wait_until(lambda: proc.log_text().count("ACB unchanged") > skips, 10, what="the skip of an unchanged result")
        assert proc.log_text().count("ACB write ") == writes
    finally:
        proc.stop()
        bus.close()
    assert "stopped cleanly" in proc.log_text()


def _held(log: str):
    acq = {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"lock acquired fence=(\d+) t=([\d.]+)", log)}
    rel = {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"lock released fence=(\d+) t=([\d.]+)", log)}
    return [(f, acq[f], rel[f]) for f in acq if f in rel]


def test_two_processors_are_serialised_by_the_fenced_lock(hz_member, tmp_path, settings_for):
    _, port = hz_member
    bus = _bus(settings_for(hz_port=port))
    a = _start(tmp_path, port, "acb_a", "--hold-s", "0.15", "--exf-window", "1")
    b = _start(tmp_path, port, "acb_b", "--hold-s", "0.15", "--exf-window", "1")
    try:
        wait_until(lambda: "lock released" in a.log_text() and "lock released" in b.log_text(), 30,
                   what="both processors started and took the lock once")
        for i in range(8):   # alternate between bearish and neutral factors: every change is a new result
            bear = i % 2 == 0
            e = _exf(1000.0 + i, -0.0002 if bear else 0.0005, 90.0 if bear else 40.0, 50.0, 1.0)
            bus.publish(maps.EXF, e)
            wait_until(lambda i=i: len(_held(a.log_text())) + len(_held(b.log_text())) >= 2 + 2 * (i + 1), 30,
                       what=f"both processors handled change {i}")
    finally:
        a.stop()
        b.stop()
        bus.close()
    ha, hb = _held(a.log_text()), _held(b.log_text())
    assert len(ha) >= 5 and len(hb) >= 5
    allh = sorted(ha + hb)                       # by fencing token
    fences = [f for f, _, _ in allh]
    assert len(set(fences)) == len(fences)       # every acquisition has its own token
    for (f1, a1, r1), (f2, a2, _r2) in zip(allh, allh[1:]):
        assert a1 < a2, "fencing tokens must increase in acquisition order"
        assert r1 <= a2, f"critical sections overlap: fence {f1} released at {r1} after {f2} acquired at {a2}"
    assert "ACB write" in a.log_text() and "ACB write" in b.log_text() or \
        (a.log_text() + b.log_text()).count("ACB write") >= 8


def test_processor_recovers_when_a_member_returns_on_the_same_port(tmp_path, settings_for):
    port = free_port()
    args = ["--host", "127.0.0.1", "--port", str(port), "--cluster-name", "dolphin"]
    m1 = Proc("standins.hz_member", args, tmp_path / "hz1.log").start()
    wait_until(lambda: port_open(port), 30, what="member 1")
    proc = _start(tmp_path, port, "acb", "--heartbeat-s", "1")
    m2 = None
    try:
        wait_until(lambda: "lock released" in proc.log_text(), 30, what="processor up")
        m1.kill()
        m2 = Proc("standins.hz_member", args, tmp_path / "hz2.log").start()
        wait_until(lambda: port_open(port), 30, what="member 2")
        bus = _bus(settings_for(hz_port=port))
        try:
            # the fresh member is empty: the processor notices and rewrites its last result unprompted
            p = wait_until(lambda: bus.get(maps.ACB_BOOST), 30, what="acb_boost restored on the new member")
            assert (p.boost, p.beta) == (1.0, acb.DEFAULT_PARAMS.beta_low)
            assert "acb_boost vanished" in proc.log_text()

            def boosted():   # rewrite until the re-registered listener has seen it
                bus.publish(maps.EXF, _exf(time.time(), -0.0003, 90.0, 50.0, 0.7))
                p = bus.get(maps.ACB_BOOST)
                return p and p.signals == 3.0
            wait_until(boosted, 60, interval=0.5, what="acb_boost written to the new member")
        finally:
            bus.close()
        assert proc.p.poll() is None
    finally:
        proc.stop()
        m1.stop()
        if m2:
            m2.stop()


def test_unreachable_member_logs_one_line_per_attempt_and_sigterm_stops_at_once(tmp_path):
    """No member at DOLPHIN_HZ_MEMBERS: one line per connection attempt, no traceback, SIGTERM → exit 0.

    The SIGTERM arrives while a 3-s connection attempt is in progress: the process must not wait for it.
    """
    port = free_port()                                    # nothing listens here
    proc = Proc("services.acb_processor", ["--data-dir", str(tmp_path / "data")], tmp_path / "acb.log",
                env={"DOLPHIN_HZ_MEMBERS": f"127.0.0.1:{port}", "DOLPHIN_HZ_CONNECT_TIMEOUT_S": "3"}).start()
    try:
        wait_until(lambda: proc.log_text().count("cannot reach Hazelcast") >= 2, 30,
                   what="two failed connection attempts")
        wait_until(lambda: "Unable to get live cluster connection, retry" in proc.log_text().split("attempt 2,")[-1],
                   10, what="the third attempt under way")
        assert proc.p.poll() is None
        t0 = time.monotonic()
        proc.p.send_signal(signal.SIGTERM)
        assert proc.p.wait(10) == 0
        took = time.monotonic() - t0
    finally:
        proc.kill()
    text = proc.log_text()
    assert took < 2.0, f"SIGTERM took {took:.2f}s"
    assert "Traceback" not in text and "Error during initial connection" not in text
    assert "SIGTERM received" in text and "stopped cleanly" in text
    attempts = [int(m) for m in re.findall(r"cannot reach Hazelcast .*; attempt (\d+), retry in", text)]
    assert attempts == [1, 2]                             # each finished attempt logged once; not the third
    for line in text.splitlines():                        # every line is a log line: no stack frames
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|WARNING|ERROR) ", line), line
