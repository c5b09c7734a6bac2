"""MHS v3 unit tests (bible §26.3.4): sensors, weighted formula, recovery gating, races."""
from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from prod.bus import maps
from prod.bus.payloads import AcbBoost, ObfUniverse
from prod.runtime import Bus
from prod.settings import load_settings
from prod.timeparse import parse_timestamp
from services.meta_health import main as mh
from tests.helpers import free_port, wait_until

SAMPLE_STATES = {  # what supervisord answers (getAllProcessInfo statename) for a mesh in trouble
    "dolphin:event_trader": "STOPPED",
    "dolphin:scan_bridge": "STOPPED",
    "dolphin_core:hz_member": "RUNNING",
    "dolphin_core:venue_sim": "RUNNING",
    "dolphin_data:acb_processor": "RUNNING",
    "dolphin_data:exf_fetcher": "FATAL",
    "dolphin_data:meta_health": "RUNNING",
    "dolphin_data:obf_universe": "BACKOFF",
    "dolphin_data:safety_watchdog": "STARTING",
    "dolphin_data:scanner": "EXITED",
}

ALL_RUNNING = {p: "RUNNING" for p in mh.CRITICAL_DATA_PROGRAMS + mh.INFORMATIONAL_PROGRAMS}


class Recorder:
    """A restarter that records the programs (the real supervisord XML-RPC is exercised in
    tests/integration/test_meta_health_restart_outcome.py)."""

    def __init__(self, block: threading.Event | None = None):
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()
        self.block = block

    def __call__(self, program):
        with self.lock:
            self.calls.append(program)
        if self.block is not None:
            self.block.wait(10)
        return True, "restarted"


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


# ── TestM1ProcessIntegrity ────────────────────────────────────────────────────────────────────
class TestM1ProcessIntegrity:
    def test_all_running_scores_one(self):
        assert mh.score_m1_data(ALL_RUNNING) == 1.0

    def test_fraction_of_critical_running(self):
        states = dict(SAMPLE_STATES)
        # acb_processor only of the 5 critical → 1/5
        assert mh.score_m1_data(states) == pytest.approx(0.2)

    def test_trader_not_in_data_score(self):
        states = dict(ALL_RUNNING, **{mh.TRADER_PROGRAM: "STOPPED"})
        assert mh.score_m1_data(states) == 1.0
        assert mh.score_m1_trader(states) == 0.0

    def test_missing_programs_count_as_down(self):
        assert mh.score_m1_data({}) == 0.0

    def test_starting_is_not_running(self):
        states = dict(ALL_RUNNING, **{"dolphin_data:scanner": "STARTING"})
        assert mh.score_m1_data(states) == pytest.approx(0.8)

    def test_empty_critical_list(self):
        assert mh.score_m1_data(ALL_RUNNING, critical=()) == 0.0

    def test_psutil_fallback_sees_a_real_process(self):
        p = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            got = wait_until(lambda: mh.psutil_states(["x:server"])["x:server"] == "RUNNING", 10,
                             what="psutil sees the process")
            assert got
            assert mh.psutil_states(["x:definitely_not_running_zz"])["x:definitely_not_running_zz"] == "STOPPED"
        finally:
            p.terminate()
            p.wait(10)


# ── TestM3DataFreshnessScoring ────────────────────────────────────────────────────────────────
class TestM3DataFreshnessScoring:
    NOW = 1_800_000_000.0

    @pytest.mark.parametrize("age,score", [(0, 1.0), (30, 1.0), (30.01, 0.5), (120, 0.5), (120.5, 0.0), (1e6, 0.0)])
    def test_thresholds(self, age, score):
        assert mh.freshness_score(age) == score

    def _exf(self, at):
        return maps.EXF.build(_pushed_at=at)

    def test_iso_timestamp(self):
        iso = datetime.fromtimestamp(self.NOW - 45, timezone.utc).isoformat()
        assert parse_timestamp(iso) == pytest.approx(self.NOW - 45, abs=1e-3)

    def test_naive_iso_is_utc(self):
        iso = datetime.fromtimestamp(self.NOW - 5, timezone.utc).replace(tzinfo=None).isoformat()
        assert parse_timestamp(iso) == pytest.approx(self.NOW - 5, abs=1e-3)

    def test_unix_float_and_ms_and_ns(self):
        assert mh.score_source(maps.EXF, self._exf(self.NOW - 10), self.NOW)[0] == 1.0
        assert mh.score_source(maps.EXF, self._exf((self.NOW - 45) * 1e3), self.NOW) == (0.5, pytest.approx(45))
        assert parse_timestamp((self.NOW - 10) * 1e3) == pytest.approx(self.NOW - 10)
        assert parse_timestamp(int((self.NOW - 10) * 1e9)) == pytest.approx(self.NOW - 10)

    def test_absent_and_presence_only(self):
        assert mh.score_source(maps.EXF, None, self.NOW) == (0.0, None)
        old = maps.ACB_BOOST.build(boost=1.2, beta=0.1, computed_at=1.0)
        assert mh.score_source(maps.ACB_BOOST, old, self.NOW, presence_only=True) == (1.0, None)
        assert mh.score_source(maps.ACB_BOOST, old, self.NOW) == (0.0, pytest.approx(self.NOW - 1.0))

    def test_garbage_timestamp_scores_zero(self):
        for bad in ("yesterday", "", None, float("nan"), True, [1], -5):
            assert parse_timestamp(bad) is None
        assert mh.score_source(maps.EXF, self._exf(-5.0), self.NOW)[0] == 0.0
        assert mh.score_source(maps.EXF, self._exf(0), self.NOW)[0] == 0.0

    def test_future_timestamps(self):
        assert mh.score_source(maps.EXF, self._exf(self.NOW + 10), self.NOW)[0] == 1.0   # clock skew
        assert mh.score_source(maps.EXF, self._exf(self.NOW + 3600), self.NOW)[0] == 0.5  # suspect clock

    def test_the_scan_is_aged_from_its_topic_timestamp_bridge_ts(self):
        assert maps.EIGEN_SCAN in mh.FRESHNESS_TOPICS and maps.EIGEN_SCAN.ts_field == "bridge_ts"
        scan = maps.EIGEN_SCAN.build(
            scan_number=1, timestamp_ns=int((self.NOW - 3600) * 1e9), timestamp="2027-01-15T07:00:00+00:00",
            bridge_ts=self.NOW - 3, vel_div=None, w50_velocity=None, w150_velocity=None, w300_velocity=None,
            w750_velocity=None, instability_50=None, instability_150=None, assets=[], asset_prices=[])
        assert mh.score_source(maps.EIGEN_SCAN, scan, self.NOW) == (1.0, pytest.approx(3.0))

    def test_mean(self):
        assert mh.score_m3([1.0, 0.5, 0.0, 0.5]) == 0.5
        assert mh.score_m3([]) == 0.0


# ── TestRmMetaFormula ─────────────────────────────────────────────────────────────────────────
class TestRmMetaFormula:
    def test_weights_sum_to_one_and_match_bible(self):
        assert mh.SENSOR_WEIGHTS == {"m4_control_plane": 0.35, "m1_data_infra": 0.35,
                                     "m3_data_freshness": 0.20, "m5_coherence": 0.10}
        assert sum(mh.SENSOR_WEIGHTS.values()) == pytest.approx(1.0)

    def test_all_ones_is_one(self):
        assert mh.compute_rm_meta({k: 1.0 for k in mh.SENSOR_WEIGHTS}) == pytest.approx(1.0)

    def test_weighted_sum_example(self):
        s = {"m4_control_plane": 0.8, "m1_data_infra": 1.0, "m3_data_freshness": 0.875, "m5_coherence": 0.75}
        assert mh.compute_rm_meta(s) == pytest.approx(0.35 * 0.8 + 0.35 + 0.2 * 0.875 + 0.1 * 0.75)

    def test_product_formula_regression_one_zero_sensor_does_not_zero_rm(self):
        s = {"m4_control_plane": 1.0, "m1_data_infra": 1.0, "m3_data_freshness": 1.0, "m5_coherence": 0.0}
        assert mh.compute_rm_meta(s) == pytest.approx(0.9)
        assert mh.status_for(mh.compute_rm_meta(s)) == "GREEN"

    def test_informational_sensors_do_not_move_rm(self):
        base = {k: 1.0 for k in mh.SENSOR_WEIGHTS}
        assert mh.compute_rm_meta({**base, "m1_trader": 0.0, "m2_heartbeat": 0.0}) == pytest.approx(1.0)

    def test_nan_and_out_of_range_sensors_are_clamped(self):
        s = {"m4_control_plane": float("nan"), "m1_data_infra": 7.0, "m3_data_freshness": -3, "m5_coherence": "x"}
        assert mh.compute_rm_meta(s) == pytest.approx(0.35)

    @pytest.mark.parametrize("rm,status", [(1.0, "GREEN"), (0.851, "GREEN"), (0.85, "DEGRADED"), (0.61, "DEGRADED"),
                                           (0.60, "CRITICAL"), (0.31, "CRITICAL"), (0.30, "DEAD"), (0.0, "DEAD")])
    def test_status_thresholds(self, rm, status):
        assert mh.status_for(rm) == status

    def test_status_of_nan_is_dead(self):
        assert mh.status_for(float("nan")) == "DEAD"

    def test_prefect_down_alone_stays_green(self):
        s = {"m4_control_plane": mh.score_m4(True, False), "m1_data_infra": 1.0, "m3_data_freshness": 1.0,
             "m5_coherence": 1.0}
        assert mh.status_for(mh.compute_rm_meta(s)) == "GREEN"

    def test_hz_down_is_degraded_not_green(self):
        s = {"m4_control_plane": mh.score_m4(False, False), "m1_data_infra": 1.0, "m3_data_freshness": 0.0,
             "m5_coherence": 0.0}
        assert mh.status_for(mh.compute_rm_meta(s)) == "CRITICAL"


# ── TestM4ControlPlane ────────────────────────────────────────────────────────────────────────
class TestM4ControlPlane:
    def test_weights(self):
        assert mh.score_m4(True, True) == pytest.approx(1.0)
        assert mh.score_m4(True, False) == pytest.approx(0.8)
        assert mh.score_m4(False, True) == pytest.approx(0.2)
        assert mh.score_m4(False, False) == 0.0

    def test_port_probe_against_a_real_listener(self):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        try:
            assert mh.port_open("127.0.0.1", srv.getsockname()[1])
        finally:
            srv.close()

    def test_closed_port(self):
        assert not mh.port_open("127.0.0.1", free_port(), timeout=0.2)


# ── TestM5Coherence ───────────────────────────────────────────────────────────────────────────
def _acb(boost: float, beta: float) -> AcbBoost:
    return maps.ACB_BOOST.build(boost=boost, beta=beta, computed_at=1.0)


def _obf(n: int) -> ObfUniverse:
    return maps.OBF_UNIVERSE.build(_snapshot_utc=1.0, _n_assets=n, assets={})


class TestM5Coherence:
    def test_valid_boost(self):
        assert mh.score_acb(_acb(1.347, 0.8)) == 1.0

    @pytest.mark.parametrize("boost, beta", [(0.5, 0.2), (3.0, 0.2), (1.2, 1.5)])
    def test_out_of_band_boost(self, boost, beta):
        assert mh.score_acb(_acb(boost, beta)) == 0.0

    def test_a_non_finite_boost_never_reaches_the_score(self):
        # NaN or a string is refused by the topic (the reader then sees the key as invalid), and a
        # payload built in code without validation still scores 0
        for raw in ('{"boost": NaN, "beta": 0.2, "computed_at": 1}', '{"boost": "x", "beta": 0.2, "computed_at": 1}'):
            with pytest.raises(maps.PayloadError):
                maps.ACB_BOOST.decode(raw)
        bad = object.__new__(AcbBoost)
        object.__setattr__(bad, "boost", float("nan"))
        object.__setattr__(bad, "beta", 0.2)
        assert mh.score_acb(bad) == 0.0

    def test_absent_boost_is_half(self):
        assert mh.score_acb(None) == 0.5

    def test_obf_coverage(self):
        assert mh.score_obf(_obf(540)) == 1.0
        assert mh.score_obf(_obf(199)) == 0.5
        assert mh.score_obf(_obf(0)) == 0.0
        assert mh.score_obf(None) == 0.0
        assert mh.score_obf(_obf(50), min_assets=40) == 1.0

    def test_m5_mean(self):
        assert mh.score_m5(_acb(1.0, 0.2), _obf(100)) == pytest.approx(0.75)


# ── TestRecoveryGating / TestRecoveryNeverKillsRunning / TestRaceConditions ───────────────────
class TestRecovery:
    def test_only_stopped_or_fatal_critical_selected(self):
        states = dict(SAMPLE_STATES)
        assert mh.programs_to_restart(states) == ["dolphin_data:exf_fetcher"]  # FATAL; BACKOFF/EXITED left to supervisord
        states["dolphin_data:scanner"] = "STOPPED"
        assert mh.programs_to_restart(states) == ["dolphin_data:exf_fetcher", "dolphin_data:scanner"]

    def test_running_services_never_restarted(self):
        assert mh.programs_to_restart(ALL_RUNNING) == []

    def test_trader_and_bridge_never_restarted_even_when_stopped(self):
        rec = Recorder()
        r = mh.Recovery("/x.conf", restarter=rec)
        states = dict(ALL_RUNNING, **{p: "STOPPED" for p in mh.INFORMATIONAL_PROGRAMS})
        assert mh.programs_to_restart(states) == []
        assert not r.restart(mh.TRADER_PROGRAM)
        assert not r.restart("dolphin:scan_bridge")
        assert not r.restart("dolphin_core:hz_member")
        assert rec.calls == []

    def test_restarts_the_program_by_its_supervisord_name(self):
        rec = Recorder()
        r = mh.Recovery("/etc/dolphin.conf", restarter=rec)
        assert r.restart("dolphin_data:exf_fetcher")
        for t in r.threads:
            t.join(5)
        assert rec.calls == ["dolphin_data:exf_fetcher"]
        assert r.outcomes()["dolphin_data:exf_fetcher"]["detail"] == "restarted"

    def test_module_never_invokes_systemctl(self):
        src = Path(mh.__file__).read_text()
        code_lines = [l for l in src.splitlines() if "systemctl" in l]
        # the word appears only in prose (docstring/comments/log text), never in an argv
        assert all('"systemctl"' not in l and "'systemctl'" not in l for l in code_lines)

    def test_cooldown_per_service(self):
        rec, clock = Recorder(), FakeClock()
        r = mh.Recovery("/c", restarter=rec, clock=clock)
        assert r.restart("dolphin_data:exf_fetcher")
        assert not r.restart("dolphin_data:exf_fetcher")           # within 10 s
        assert r.restart("dolphin_data:acb_processor")             # independent bucket
        clock.t += mh.RECOVERY_COOLDOWN_CRITICAL_S - 0.01
        assert not r.restart("dolphin_data:exf_fetcher")
        clock.t += 0.02
        assert r.restart("dolphin_data:exf_fetcher")
        assert [p for p, _ in r.fired] == ["dolphin_data:exf_fetcher", "dolphin_data:acb_processor",
                                            "dolphin_data:exf_fetcher"]

    def test_hung_supervisorctl_does_not_block_caller(self):
        gate = threading.Event()
        rec = Recorder(block=gate)
        r = mh.Recovery("/c", restarter=rec)
        t0 = time.monotonic()
        assert r.restart("dolphin_data:scanner")
        assert time.monotonic() - t0 < 5        # a blocking call would wait for the gate, set only below
        assert r.threads[0].daemon
        gate.set()
        r.threads[0].join(5)

    def test_ten_concurrent_restarts_fire_once(self):
        gate = threading.Event()
        rec = Recorder(block=gate)
        r = mh.Recovery("/c", restarter=rec)
        barrier = threading.Barrier(10)
        results: list[bool] = []
        lock = threading.Lock()

        def go():
            barrier.wait()
            ok = r.restart("dolphin_data:obf_universe")
            with lock:
                results.append(ok)

        ts = [threading.Thread(target=go) for _ in range(10)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(5)
        gate.set()
        for t in r.threads:
            t.join(5)
        assert sorted(results) == [False] * 9 + [True]
        assert len(rec.calls) == 1

    def test_concurrent_restarts_of_different_services_each_fire_once(self):
        rec = Recorder()
        r = mh.Recovery("/c", restarter=rec)
        ts = [threading.Thread(target=r.restart, args=(p,)) for p in mh.CRITICAL_DATA_PROGRAMS for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(5)
        for t in r.threads:
            t.join(5)
        assert sorted(rec.calls) == sorted(mh.CRITICAL_DATA_PROGRAMS)

    def test_runner_exception_is_contained(self):
        def boom(program):
            raise OSError("supervisord gone")
        r = mh.Recovery("/c", restarter=boom)
        assert r.restart("dolphin_data:scanner")
        r.threads[0].join(5)
        assert not r.threads[0].is_alive()


# ── TestServiceRegistry ───────────────────────────────────────────────────────────────────────
class TestServiceRegistry:
    def test_constants(self):
        assert mh.CHECK_INTERVAL_S == 10.0 and mh.CHECK_INTERVAL_S <= 15
        assert mh.DATA_STALE_S == 30.0 and mh.DATA_DEAD_S == 120.0
        assert mh.RECOVERY_COOLDOWN_CRITICAL_S == 10.0 and mh.RECOVERY_COOLDOWN_CRITICAL_S <= 10
        assert mh.RECOVERY_COOLDOWN_DEFAULT_S == 300.0

    def test_registry_disjoint(self):
        assert not set(mh.CRITICAL_DATA_PROGRAMS) & set(mh.INFORMATIONAL_PROGRAMS)
        assert mh.TRADER_PROGRAM in mh.INFORMATIONAL_PROGRAMS

    def test_programs_exist_in_supervisor_conf(self):
        conf = Path(mh.REPO_ROOT) / "supervisor" / "dolphin-supervisord.conf"
        text = conf.read_text()
        for prog in mh.CRITICAL_DATA_PROGRAMS + mh.INFORMATIONAL_PROGRAMS:
            assert f"[program:{prog.split(':')[1]}]" in text
            group = prog.split(":")[0]
            assert f"[group:{group}]" in text

    def test_check_interval_config_bounds(self, tmp_path):
        s = load_settings(env={}, run_logs=str(tmp_path))
        with pytest.raises(ValueError):
            mh.MHSConfig(settings=s, check_interval_s=60)


# ── TestHypothesisProperties ──────────────────────────────────────────────────────────────────
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
anyf = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.none(), st.text(max_size=3))


class TestHypothesisProperties:
    @hsettings(max_examples=300, deadline=None)
    @given(st.fixed_dictionaries({k: anyf for k in mh.SENSOR_WEIGHTS}))
    def test_rm_always_in_unit_interval(self, sensors):
        rm = mh.compute_rm_meta(sensors)
        assert 0.0 <= rm <= 1.0 and not math.isnan(rm)
        assert mh.status_for(rm) in mh.STATUSES

    @hsettings(max_examples=300, deadline=None)
    @given(st.fixed_dictionaries({k: unit for k in mh.SENSOR_WEIGHTS}), st.sampled_from(list(mh.SENSOR_WEIGHTS)), unit)
    def test_rm_monotone_in_every_sensor(self, sensors, key, bump):
        hi = dict(sensors, **{key: max(sensors[key], bump)})
        assert mh.compute_rm_meta(hi) >= mh.compute_rm_meta(sensors) - 1e-12

    @hsettings(max_examples=300, deadline=None)
    @given(st.fixed_dictionaries({k: unit for k in mh.SENSOR_WEIGHTS}), st.sampled_from(list(mh.SENSOR_WEIGHTS)))
    def test_single_zero_sensor_never_zeroes_rm(self, sensors, key):
        s = dict({k: 1.0 for k in sensors}, **{key: 0.0})
        assert mh.compute_rm_meta(s) >= 1.0 - max(mh.SENSOR_WEIGHTS.values()) - 1e-12

    @hsettings(max_examples=300, deadline=None)
    @given(unit, unit)
    def test_status_monotone(self, a, b):
        order = {s: i for i, s in enumerate(mh.STATUSES)}
        lo, hi = min(a, b), max(a, b)
        assert order[mh.status_for(hi)] <= order[mh.status_for(lo)]

    @hsettings(max_examples=300, deadline=None)
    @given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.floats(min_value=0, max_value=1e6, allow_nan=False))
    def test_freshness_non_increasing_with_age(self, a, d):
        if a >= -mh.DATA_STALE_S:
            assert mh.freshness_score(a + d) <= mh.freshness_score(a)
        assert mh.freshness_score(a) in (0.0, 0.5, 1.0)

    @hsettings(max_examples=300, deadline=None)
    @given(st.dictionaries(st.sampled_from(mh.CRITICAL_DATA_PROGRAMS + mh.INFORMATIONAL_PROGRAMS),
                           st.sampled_from(sorted(mh.SUPERVISOR_STATES))))
    def test_restart_selection_properties(self, states):
        chosen = mh.programs_to_restart(states)
        assert all(p in mh.CRITICAL_DATA_PROGRAMS for p in chosen)
        assert all(states[p] in ("STOPPED", "FATAL") for p in chosen)
        assert 0.0 <= mh.score_m1_data(states) <= 1.0

    @hsettings(max_examples=200, deadline=None)
    @given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=1, max_size=30))
    def test_cooldown_fires_at_most_once_per_window(self, gaps):
        rec, clock = Recorder(), FakeClock(0.0)
        r = mh.Recovery("/c", restarter=rec, clock=clock)
        for g in gaps:
            clock.t += g
            r.restart("dolphin_data:scanner")
        times = [t for _, t in r.fired]
        assert all(b - a >= mh.RECOVERY_COOLDOWN_CRITICAL_S for a, b in zip(times, times[1:]))
        for t in r.threads:
            t.join(5)


# ── TestEdgeCases: a whole cycle with no supervisord and no Hazelcast ─────────────────────────
class TestEdgeCases:
    def test_cycle_without_supervisord_or_hz_reports_and_writes_json(self, tmp_path):
        s = load_settings(env={}, run_logs=str(tmp_path / "rl"), hz_members=(f"127.0.0.1:{free_port()}",))
        rec = Recorder()
        cfg = mh.MHSConfig(settings=s, supervisor_conf=str(tmp_path / "missing.conf"), prefect_port=free_port())
        bus = Bus(s, "meta_health")          # never started: every bus read gives nothing, every write is skipped
        svc = mh.MetaHealthService(cfg, bus, recovery=mh.Recovery(cfg.supervisor_conf, restarter=rec))
        rep = svc.check()
        on_disk = json.loads((tmp_path / "rl" / "meta_health.json").read_text())
        assert on_disk["status"] == rep["status"]
        assert rep["status_source"] == "psutil"
        assert rep["sensors"]["m4_control_plane"] == 0.0
        assert rep["status"] in ("CRITICAL", "DEAD")
        assert 0.0 <= rep["rm_meta"] <= 1.0
        assert not list((tmp_path / "rl").glob(".meta_health.json.*"))  # no temp left behind
        assert svc.skipped_writes == 1 and maps.META_HEALTH_LATEST.decode(json.dumps(on_disk)).status == rep["status"]
