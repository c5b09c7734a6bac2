"""Maintenance holds against a real supervisord: a held program stays stopped across MHS cycles and is
revived once released; the CLI refuses names it cannot hold."""
from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from prod.runtime import Bus
from prod.settings import load_settings
from services.meta_health import main as mh
from tests.helpers import REPO_ROOT, free_port, wait_until
from tests.integration.tiny_supervisor import TinySupervisor

EXF = "dolphin_data:exf_fetcher"


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.meta_health", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60, env=env)


@pytest.fixture
def sv(tmp_path):
    s = TinySupervisor(tmp_path / "sv").start()
    yield s
    s.shutdown()


def test_a_held_program_stays_stopped_across_cycles_and_is_revived_once_released(sv, tmp_path, caplog):
    run_logs = tmp_path / "run_logs"
    run_logs.mkdir()
    s = load_settings(env={}, run_logs=str(run_logs), hz_members=(f"127.0.0.1:{free_port()}",))
    cfg = mh.MHSConfig(settings=s, supervisor_conf=str(sv.conf), prefect_port=0)
    svc = mh.MetaHealthService(cfg, Bus(s, "meta_health"))     # bus never started: no member in this test
    caplog.set_level(logging.INFO, logger="meta_health")

    sv.ctl("stop", EXF)
    assert sv.states()[EXF] == "STOPPED"
    r = _cli("hold", "exf_fetcher", "--reason", "swap the DVOL key", "--run-logs", str(run_logs))
    assert r.returncode == 0, r.stderr
    assert EXF in r.stdout and (run_logs / "meta_health_holds.json").exists()

    for _ in range(3):
        rep = svc.check()
        assert rep["services"][EXF] == "STOPPED"
        assert rep["holds"][EXF]["reason"] == "swap the DVOL key"
    assert svc.recovery.fired == []                      # no restart was even attempted
    assert sv.states()[EXF] == "STOPPED"
    on_disk = json.loads((run_logs / "meta_health.json").read_text())
    assert list(on_disk["holds"]) == [EXF]
    assert sum("MAINTENANCE" in m and "will not restart" in m for m in caplog.messages) == 1   # logged once

    r = _cli("release", "dolphin_data:exf_fetcher", "--run-logs", str(run_logs))
    assert r.returncode == 0 and "released" in r.stdout, r.stderr
    rep = svc.check()
    assert rep["holds"] == {} and [p for p, _ in svc.recovery.fired] == [EXF]
    wait_until(lambda: sv.states()[EXF] == "RUNNING", 20, 0.1, what="released program revived by MHS")
    assert sum("hold released" in m for m in caplog.messages) == 1


def test_an_expired_hold_no_longer_protects_the_program(sv, tmp_path):
    run_logs = tmp_path / "run_logs"
    run_logs.mkdir()
    (run_logs / "meta_health_holds.json").write_text(json.dumps(
        {"holds": {EXF: {"since": 1.0, "until": 2.0, "reason": "long over", "by": "t"}}}))
    s = load_settings(env={}, run_logs=str(run_logs), hz_members=(f"127.0.0.1:{free_port()}",))
    svc = mh.MetaHealthService(mh.MHSConfig(settings=s, supervisor_conf=str(sv.conf), prefect_port=0),
                               Bus(s, "meta_health"))
    sv.ctl("stop", EXF)
    rep = svc.check()
    assert rep["holds"] == {}
    wait_until(lambda: sv.states()[EXF] == "RUNNING", 20, 0.1, what="revived despite the expired hold")


def test_hold_cli_refuses_unknown_and_never_restarted_programs(tmp_path):
    bad = _cli("hold", "exf_fetchr", "--run-logs", str(tmp_path))
    assert bad.returncode == 2
    assert bad.stderr.startswith("meta_health hold: unknown program 'exf_fetchr'") and EXF in bad.stderr
    trader = _cli("hold", "event_trader", "--run-logs", str(tmp_path))
    assert trader.returncode == 2 and "never auto-restarted" in trader.stderr
    assert not (tmp_path / "meta_health_holds.json").exists()
    r = _cli("hold", "scanner", "--minutes", "5", "--run-logs", str(tmp_path))
    assert r.returncode == 0, r.stderr
    listed = _cli("holds", "--json", "--run-logs", str(tmp_path))
    hold = json.loads(listed.stdout)["holds"]["dolphin_data:scanner"]
    assert 299 <= hold["until"] - hold["since"] <= 301


def test_a_malformed_holds_file_is_logged_with_its_path_and_recovery_goes_on(sv, tmp_path, caplog):
    run_logs = tmp_path / "run_logs"
    run_logs.mkdir()
    (run_logs / "meta_health_holds.json").write_text('{"holds": {"dolphin_data:exf_fetcher": "please"}}')
    s = load_settings(env={}, run_logs=str(run_logs), hz_members=(f"127.0.0.1:{free_port()}",))
    svc = mh.MetaHealthService(mh.MHSConfig(settings=s, supervisor_conf=str(sv.conf), prefect_port=0),
                               Bus(s, "meta_health"))
    sv.ctl("stop", EXF)
    rep = svc.check()
    assert rep["holds"] == {}
    assert any(str(run_logs / "meta_health_holds.json") in m and "malformed" in m for m in caplog.messages)
    wait_until(lambda: sv.states()[EXF] == "RUNNING", 20, 0.1, what="revived despite the broken holds file")
